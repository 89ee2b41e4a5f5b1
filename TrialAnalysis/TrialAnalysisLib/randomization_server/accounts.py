"""Accounts: argon2id password hashes, rate-limited login, server-side sessions with a CSRF token, sites, users.

A session is a random 256-bit token in an HttpOnly SameSite=Strict cookie; the database keeps only
its SHA-256, with the session's own CSRF token (every state-changing request must echo it, so a
token of another or an ended session is refused). Sessions end after 30 idle minutes or 12 hours.
Login is refused for 15 minutes after 5 failures for a username or 20 from an IP address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from ParaspinalLBPCore.errors import BadInputError
from TrialAnalysisLib.randomization_server import audit, db
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.randomization_server.policy import ROLES, RefusedError, require

# OWASP's argon2id recommendation (m = 19 MiB, t = 2, p = 1); parameters are stored in each hash.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_HASH_SLOTS = threading.BoundedSemaphore(2)  # bound the memory of concurrent hashing
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))  # equal work for unknown usernames

MIN_PASSWORD = 12
IDLE_MINUTES, MAX_HOURS = 30, 12
WINDOW_MINUTES, MAX_USER_FAILURES, MAX_IP_FAILURES = 15, 5, 20
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
SITE_RE = re.compile(r"^[A-Za-z0-9_]{1,16}$")


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (ValueError when shorter than 12 characters)."""
    if len(password) < MIN_PASSWORD:
        raise BadInputError(f"password: at least {MIN_PASSWORD} characters")
    with _HASH_SLOTS:
        return HASHER.hash(password)


def check_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches the stored argon2 hash."""
    with _HASH_SLOTS:
        try:
            return HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _ago(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def token_hash(token: str) -> str:
    """SHA-256 of a session token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live session: who, and the CSRF token its state-changing requests must carry."""

    actor: Actor
    csrf: str
    user_id: int


def _failures(conn: Connection, column: str, value: str) -> int:
    t = db.login_attempts
    since = _ago(WINDOW_MINUTES)
    last_ok = conn.execute(
        select(func.max(t.c.at)).where(t.c[column] == value, t.c.success.is_(True))
    ).scalar_one()
    since = max(since, last_ok or since)
    q = select(func.count()).where(t.c[column] == value, t.c.success.is_(False), t.c.at > since)
    return int(conn.execute(q).scalar_one())


def login(database: db.Database, username: str, password: str, ip: str) -> tuple[str, Session]:
    """Check the password (rate-limited) and open a session: returns (cookie token, session)."""
    who = Actor(username=username[:64] or "anonymous", ip=ip)
    with database.read() as conn:
        if (
            _failures(conn, "username", username) >= MAX_USER_FAILURES
            or _failures(conn, "ip", ip) >= MAX_IP_FAILURES
        ):
            raise RefusedError(
                "rate_limited",
                f"too many failed logins; try again in {WINDOW_MINUTES} minutes",
                429,
                "login",
                username[:64],
            )
        user = conn.execute(select(db.users).where(db.users.c.username == username)).one_or_none()
    ok = check_password(user.password_hash if user else _DUMMY_HASH, password) and bool(user and user.active)
    with database.write() as conn:
        conn.execute(
            insert(db.login_attempts).values(username=username[:64], ip=ip, at=db.utcnow(), success=ok)
        )
        if not ok:
            audit.append(conn, who, "login", username[:64], "refused", after={"code": "invalid_credentials"})
    if not ok:
        raise RefusedError(
            "invalid_credentials", "unknown user or wrong password", 401, "login", audited=True
        )
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    actor = Actor(user.username, user.role, user.site_code, ip)
    with database.write() as conn:
        now = db.utcnow()
        conn.execute(
            insert(db.sessions).values(
                token_hash=token_hash(token),
                user_id=user.id,
                csrf_token=csrf,
                ip=ip,
                created_at=now,
                last_seen=now,
            )
        )
        conn.execute(delete(db.sessions).where(db.sessions.c.last_seen < _ago(IDLE_MINUTES)))
        audit.append(conn, actor, "login", user.username)
    return token, Session(actor, csrf, user.id)


def session_of(database: db.Database, token: str | None, ip: str) -> Session | None:
    """The live session of a cookie token (None when absent, unknown or expired)."""
    if not token or len(token) > 128:
        return None
    t, u = db.sessions, db.users
    with database.read() as conn:
        row = conn.execute(
            select(t, u.c.username, u.c.role, u.c.site_code, u.c.active)
            .join(u, u.c.id == t.c.user_id)
            .where(t.c.token_hash == token_hash(token))
        ).one_or_none()
    if (
        row is None
        or not row.active
        or row.last_seen < _ago(IDLE_MINUTES)
        or row.created_at < _ago(60 * MAX_HOURS)
    ):
        return None
    if row.last_seen < _ago(1):  # refresh the idle timer at most once a minute (a write)
        with database.write() as conn:
            conn.execute(update(t).where(t.c.token_hash == row.token_hash).values(last_seen=db.utcnow()))
    return Session(Actor(row.username, row.role, row.site_code, ip), row.csrf_token, row.user_id)


def check_csrf(session: Session, supplied: str | None, action: str, target: str = "") -> None:
    """Refuse (403) a state-changing request whose CSRF token is not this session's own."""
    if not supplied or not hmac.compare_digest(supplied.encode(), session.csrf.encode()):
        raise RefusedError("csrf", "missing or invalid CSRF token for this session", 403, action, target)


def logout(database: db.Database, token: str, actor: Actor) -> None:
    """End the session (its CSRF token dies with it)."""
    with database.write() as conn:
        conn.execute(delete(db.sessions).where(db.sessions.c.token_hash == token_hash(token)))
        audit.append(conn, actor, "logout", actor.username)


def create_site(database: db.Database, actor: Actor, code: str, name: str) -> dict:
    """Register a site (admin); its code is the centre code of the list's strata (e.g. C1)."""
    require(actor, "manage_users", "create_site", code)
    if not SITE_RE.match(code) or not name.strip():
        raise RefusedError(
            "bad_site", "site code: 1-16 letters, digits or _; name required", 422, "create_site", code
        )
    with database.write() as conn:
        if conn.execute(select(db.sites.c.code).where(db.sites.c.code == code)).first():
            raise RefusedError("exists", f"site {code} already exists", 409, "create_site", code)
        row = {"code": code, "name": name.strip()[:200], "created_at": db.utcnow()}
        conn.execute(insert(db.sites).values(**row))
        audit.append(conn, actor, "create_site", code, after=row)
    return row


def create_user(
    database: db.Database, actor: Actor, username: str, password: str, role: str, site: str | None
) -> dict:
    """Create a user (admin, or the bootstrap actor for the first admin); investigators need a site."""
    require(actor, "manage_users", "create_user", username)
    if not USERNAME_RE.match(username) or role not in ROLES or len(password) < MIN_PASSWORD:
        raise RefusedError(
            "bad_user",
            f"username 2-64 of [A-Za-z0-9_.@-], role one of {', '.join(ROLES)}, "
            f"password at least {MIN_PASSWORD} characters",
            422,
            "create_user",
            username,
        )
    if (role == "investigator") != bool(site):
        raise RefusedError(
            "bad_user", "an investigator needs a site; other roles have none", 422, "create_user", username
        )
    pw_hash = hash_password(password)
    with database.write() as conn:
        if site and not conn.execute(select(db.sites.c.code).where(db.sites.c.code == site)).first():
            raise RefusedError("no_site", f"site {site} does not exist", 422, "create_user", username)
        if conn.execute(select(db.users.c.id).where(db.users.c.username == username)).first():
            raise RefusedError("exists", f"user {username} already exists", 409, "create_user", username)
        row = {
            "username": username,
            "role": role,
            "site_code": site or None,
            "active": True,
            "created_at": db.utcnow(),
        }
        conn.execute(insert(db.users).values(password_hash=pw_hash, **row))
        audit.append(conn, actor, "create_user", username, after=row)
    return row


def set_active(database: db.Database, actor: Actor, username: str, active: bool) -> None:
    """Deactivate (or reactivate) a user; their sessions end at once."""
    require(actor, "manage_users", "set_user_active", username)
    with database.write() as conn:
        user = conn.execute(select(db.users).where(db.users.c.username == username)).one_or_none()
        if user is None:
            raise RefusedError("not_found", f"no user {username}", 404, "set_user_active", username)
        conn.execute(update(db.users).where(db.users.c.id == user.id).values(active=active))
        conn.execute(delete(db.sessions).where(db.sessions.c.user_id == user.id))
        audit.append(
            conn, actor, "set_user_active", username, before={"active": user.active}, after={"active": active}
        )


def change_password(database: db.Database, session: Session, old: str, new: str) -> None:
    """A user changes their own password (the old one is checked; other sessions end)."""
    with database.read() as conn:
        stored = conn.execute(
            select(db.users.c.password_hash).where(db.users.c.id == session.user_id)
        ).scalar_one()
    if not check_password(stored, old):
        raise RefusedError(
            "invalid_credentials", "current password is wrong", 403, "change_password", session.actor.username
        )
    if len(new) < MIN_PASSWORD:
        raise RefusedError(
            "bad_password", f"new password: at least {MIN_PASSWORD} characters", 422, "change_password"
        )
    new_hash = hash_password(new)
    with database.write() as conn:
        conn.execute(update(db.users).where(db.users.c.id == session.user_id).values(password_hash=new_hash))
        conn.execute(
            delete(db.sessions).where(
                and_(db.sessions.c.user_id == session.user_id, db.sessions.c.csrf_token != session.csrf)
            )
        )
        audit.append(conn, session.actor, "change_password", session.actor.username)


def list_users(database: db.Database, actor: Actor) -> list[dict]:
    """Users without their hashes (admin)."""
    require(actor, "manage_users", "list_users")
    cols = [
        db.users.c.username,
        db.users.c.role,
        db.users.c.site_code,
        db.users.c.active,
        db.users.c.created_at,
    ]
    with database.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(*cols).order_by(db.users.c.username))]


def list_sites(database: db.Database) -> list[dict]:
    """Registered sites."""
    with database.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(db.sites).order_by(db.sites.c.code))]


BOOTSTRAP = Actor("bootstrap", "admin", None, "local")


def bootstrap_admin(url: str, username: str, password: str) -> None:
    """Create an admin from the command line (``randomization-admin create-admin``); audited as 'bootstrap'."""
    database = db.Database(url)
    try:
        create_user(database, BOOTSTRAP, username, password, "admin", None)
    except RefusedError as exc:
        raise BadInputError(f"create-admin {username}: {exc.message}") from None
    finally:
        database.dispose()
