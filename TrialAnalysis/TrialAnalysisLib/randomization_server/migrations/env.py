"""Alembic environment: the URL comes from ``config.attributes['url']`` (set by ``db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from TrialAnalysisLib.randomization_server.db import metadata

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")


def run_migrations() -> None:
    """Apply the pending revisions in one transaction per revision on a fresh connection."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations()
