"""Alembic migrations of the randomisation service's database (run by ``db.migrate``)."""
