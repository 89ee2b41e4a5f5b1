"""Commands of the randomisation service: ``randomization-server``, ``randomization-admin``, ``audit-verify``.

The server migrates the database (Alembic) before it binds its port, then runs uvicorn; with
``--workers N`` each worker process builds the app from ``$TRIAL_RANDOMIZATION_CONFIG``. There is no
default account: ``randomization-admin create-admin NAME`` reads the first administrator's password
from a prompt (or ``--password-stdin``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError, MissingInputError

DB_HELP = "SQLite file (created if missing) or PostgreSQL URL postgresql://user@host:port/dbname"


def add_server_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register ``randomization-server``."""
    p = subparsers.add_parser(name, help="serve central web randomisation (SQLite file or PostgreSQL URL)")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8100, help="TCP port (default 8100)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument(
        "--outbox",
        type=Path,
        default=None,
        help="directory for notification files (default: <db file>.outbox for SQLite, none otherwise)",
    )
    p.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (serve behind HTTPS)")
    p.add_argument(
        "--trusted-proxy",
        default=None,
        help="address of a reverse proxy whose X-Forwarded-For is trusted for the audit log's IP",
    )
    p.add_argument("--no-access-log", action="store_true", help="do not log method/path/status lines")
    p.set_defaults(func=run_server)


def _outbox(args: argparse.Namespace) -> str | None:
    if args.outbox is not None:
        return str(args.outbox.resolve())
    if "://" not in args.db:
        return str(Path(args.db).resolve().with_name(Path(args.db).name + ".outbox"))
    return None


def log_config(access_log: bool) -> dict:
    """Uvicorn's logging configuration plus the service's access logger."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["TrialAnalysisLib.randomization_server"] = {
        "handlers": ["default"],
        "level": "INFO" if access_log else "WARNING",
        "propagate": False,
    }
    return cfg


def open_database(url: str) -> None:
    """Migrate the database; a database that cannot be opened is a user error naming it (exit 2)."""
    from sqlalchemy.exc import OperationalError

    from TrialAnalysisLib.randomization_server.db import migrate

    try:
        migrate(url)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise BadInputError(f"--db {url}: cannot open the database ({reason})") from None


def run_server(args: argparse.Namespace) -> int:
    """Migrate, then serve until interrupted."""
    import uvicorn

    from TrialAnalysisLib.randomization_server.app import CONFIG_ENV, create_app

    if args.workers < 1:
        raise BadInputError(f"--workers must be >= 1, got {args.workers}")
    open_database(args.db)
    cfg = {"url": args.db, "outbox": _outbox(args), "secure_cookies": args.secure_cookies}
    common = dict(
        host=args.host,
        port=args.port,
        access_log=False,
        server_header=False,
        proxy_headers=args.trusted_proxy is not None,
        forwarded_allow_ips=args.trusted_proxy,
        log_config=log_config(not args.no_access_log),
    )
    print(
        f"Serving METNLBP randomisation on http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr
    )
    if args.workers == 1:
        uvicorn.run(create_app(cfg["url"], cfg["outbox"], cfg["secure_cookies"]), **common)
    else:
        os.environ[CONFIG_ENV] = json.dumps(cfg)
        uvicorn.run(
            "TrialAnalysisLib.randomization_server.app:app_from_env",
            factory=True,
            workers=args.workers,
            **common,
        )
    return 0


def add_admin_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register ``randomization-admin`` (migrate, create-admin)."""
    p = subparsers.add_parser(name, help="randomisation database: migrate, create the first administrator")
    p.add_argument("--db", required=True, help=DB_HELP)
    sub = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    c = sub.add_parser("create-admin", help="create an administrator (password from a prompt or stdin)")
    c.add_argument("username")
    c.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    p.set_defaults(func=run_admin)


def run_admin(args: argparse.Namespace) -> int:
    """Run one admin action."""
    open_database(args.db)
    if args.admin_command == "migrate":
        print(f"database schema up to date: {args.db}")
        return 0
    from TrialAnalysisLib.randomization_server.accounts import bootstrap_admin

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password for the new administrator: ")
        if getpass.getpass("repeat it: ") != password:
            raise BadInputError("the two passwords differ")
    bootstrap_admin(args.db, args.username, password)
    print(f"administrator {args.username} created")
    return 0


def add_verify_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register ``audit-verify``."""
    p = subparsers.add_parser(name, help="verify the randomisation audit log (exit 1 when tampered)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--db", help=DB_HELP)
    src.add_argument("--file", type=Path, help="an exported audit log (audit.jsonl)")
    p.add_argument(
        "--expect-head", default=None, help="head hash recorded earlier: the log must still contain it"
    )
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify and print the result: 0 intact, 1 tampered."""
    from TrialAnalysisLib.randomization_server import audit

    if args.db is not None:
        if "://" not in args.db and not Path(args.db).exists():
            raise MissingInputError(f"--db {args.db}: no such database file")
        open_database(args.db)  # also refuses a database that cannot be opened, naming it
        res = audit.verify_database(args.db)
        rows = None
    else:
        if not args.file.exists():
            raise MissingInputError(f"audit export not found: {args.file}")
        rows, head = audit.read_jsonl(args.file)
        res = audit.verify_chain(rows, head)
    if args.expect_head and res.ok:
        hashes = {r["hash"] for r in rows} if rows is not None else _db_hashes(args.db)
        if args.expect_head not in hashes:
            res.problems.append(
                f"recorded head {args.expect_head[:16]}… is not in the log (history rewritten)"
            )
    print(res.summary())
    return 0 if res.ok else 1


def _db_hashes(url: str) -> set[str]:
    from TrialAnalysisLib.randomization_server import audit, db

    database = db.Database(url)
    try:
        with database.read() as conn:
            return {r["hash"] for r in audit.entries(conn)}
    finally:
        database.dispose()
