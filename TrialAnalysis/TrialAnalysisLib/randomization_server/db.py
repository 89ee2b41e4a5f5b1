"""Database layer of the randomisation service: tables (SQLAlchemy Core), engines, serialised writes.

One schema for SQLite (default, one file) and PostgreSQL (``postgresql+psycopg://…``); Alembic
migrations (``migrations/``) create and upgrade it. Every writing transaction is serialised: on
SQLite it starts with ``BEGIN IMMEDIATE`` (the database write lock), on PostgreSQL its first
statement locks the single ``audit_head`` row (``SELECT … FOR UPDATE``). So slot assignment, the
participant number and the audit chain's next hash are taken by one transaction at a time, while
unique constraints (slot, screening ID, participant ID, list position) make a double allocation
impossible even if that serialisation were bypassed. Timestamps are UTC ISO-8601 strings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)

from ParaspinalLBPCore.errors import BadInputError

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
TS = 32  # length of an ISO timestamp column

sites = Table(
    "sites",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", String(TS), nullable=False),
)
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("site_code", String(16), ForeignKey("sites.code"), nullable=True),
    Column("password_hash", String(255), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", String(TS), nullable=False),
)
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("created_at", String(TS), nullable=False),
    Column("last_seen", String(TS), nullable=False),
)
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("at", String(TS), nullable=False),
    Column("success", Boolean, nullable=False),
    Index("ix_login_attempts_username_at", "username", "at"),
    Index("ix_login_attempts_ip_at", "ip", "at"),
)
allocation_lists = Table(
    "allocation_lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("filename", String(255), nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    Column("uploaded_at", String(TS), nullable=False),
    Column("arms", Text, nullable=False),  # JSON list in the list's order
    Column("arm_codes", Text, nullable=False),  # JSON {arm: "A"|"B"…}, drawn at random at upload
    Column("code_salt", String(64), nullable=False),  # secret of the offline list's check codes
    Column("n_slots", Integer, nullable=False),
    Column("csv", Text, nullable=False),  # the uploaded bytes, so the export reproduces the checksum
)
strata = Table(
    "strata",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("allocation_lists.id"), nullable=False),
    Column("code", String(32), nullable=False),
    Column("centre", String(16), nullable=False),
    Column("sex", String(8), nullable=False),
    Column("n_slots", Integer, nullable=False),
    Column("n_used", Integer, nullable=False, default=0),
    UniqueConstraint("list_id", "code", name="uq_strata_list_code"),
)
slots = Table(
    "slots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("allocation_lists.id"), nullable=False),
    Column("stratum", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("block_id", String(64), nullable=False),
    Column("block_size", Integer, nullable=False),
    Column("arm", String(32), nullable=False),
    UniqueConstraint("list_id", "stratum", "seq", name="uq_slots_list_stratum_seq"),
)
randomizations = Table(
    "randomizations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("participant_id", String(16), nullable=False, unique=True),
    Column("slot_id", Integer, ForeignKey("slots.id"), nullable=False, unique=True),
    Column("screening_id", String(32), nullable=False, unique=True),
    Column("centre", String(16), nullable=False),
    Column("sex", String(8), nullable=False),
    Column("stratum", String(32), nullable=False),
    Column("randomized_at", String(TS), nullable=False),
    Column("randomized_by", String(64), nullable=False),
    Column("eligibility", Text, nullable=False),  # JSON of the answered checklist
)
unblindings = Table(
    "unblindings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("participant_id", String(16), ForeignKey("randomizations.participant_id"), nullable=False),
    Column("kind", String(16), nullable=False),  # emergency | offline
    Column("by_user", String(64), nullable=False),
    Column("at", String(TS), nullable=False),
    Column("reason", Text, nullable=False),
)
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(TS), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list of usernames
    Column("subject", String(255), nullable=False),
    Column("body", Text, nullable=False),
)
trial_state = Table(
    "trial_state",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", Text, nullable=False),
)
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(TS), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

GENESIS_HASH = "0" * 64


def utcnow() -> str:
    """Current UTC time as an ISO-8601 string with microseconds (sortable as text)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_url(url: str) -> str:
    """Accept a plain file path for SQLite and ``postgresql://`` for psycopg 3; return an SQLAlchemy URL."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise BadInputError(
            f"database URL {url.split('://')[0]}://…: only SQLite and PostgreSQL are supported"
        )
    return url


def make_engine(url: str) -> Engine:
    """Engine with the service's settings: SQLite in WAL mode with a busy timeout and explicit BEGINs."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=8, max_overflow=32, pool_timeout=60)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the answer leaves
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_size=8, max_overflow=32, pool_timeout=60, pool_pre_ping=True)


class Database:
    """The service's database: ``read()`` and ``write()`` transactions on one engine."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # Writers of one process queue on this lock before the database's: SQLite's busy handler polls
        # with growing sleeps, so threads waiting there wake late and out of order (seconds of tail
        # latency with 20 clients); on PostgreSQL it keeps the row lock's holder from competing with
        # its queue for the interpreter. Other processes (``--workers N``) still meet the database lock.
        self._writer = threading.Lock()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (consistent snapshot on PostgreSQL, shared lock on SQLite)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised writing transaction: commits on success, rolls back on any exception."""
        if self.is_sqlite:
            with (
                self._writer,
                self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
                conn.begin(),
            ):
                yield conn
            return
        with self._writer, self.engine.connect() as conn, conn.begin():
            conn.execute(select(audit_head.c.last_seq).where(audit_head.c.id == 1).with_for_update())
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def migrate(url: str) -> None:
    """Create or upgrade the schema to the newest Alembic revision (idempotent)."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # before the import, which logs its plugins
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.attributes["url"] = normalise_url(url)
    command.upgrade(cfg, "head")


def schema_revision(url: str) -> str | None:
    """The database's Alembic revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
