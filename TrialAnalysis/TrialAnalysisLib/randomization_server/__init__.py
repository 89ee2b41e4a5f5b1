"""Central web randomisation of the METNLBP trial with allocation concealment and a hash-chained audit log.

``trial-analysis randomization-server --db FILE_OR_URL`` serves it (SQLite file by default,
PostgreSQL through a ``postgresql://`` URL); ``randomization-admin create-admin`` makes the first
administrator; ``audit-verify`` checks the audit chain of a database or an exported log. Modules:
``db`` (tables, engines, migrations), ``accounts`` (passwords, sessions, CSRF, users), ``lists``
(list upload), ``service`` (randomising, views, unblinding), ``exports``, ``audit``, ``app``/``pages``
(HTTP), ``server_cli`` (commands). See docs/randomization.md.
"""
