"""FastAPI application of the randomisation service: JSON API, HTML pages, security headers, refusal logging.

``create_app(url)`` serves the database at ``url`` (migrated first by the command line). The API is
under ``/api`` (session cookie from ``POST /api/login``; every POST but login carries the session's
CSRF token in ``X-CSRF-Token``); the pages (``/``, ``/login``, ``/randomize`` …) use the same session
with the token in a hidden form field. Each :class:`~policy.RefusedError` — no session, wrong role, another
site's participant, bad CSRF token, rate-limited login, ineligible participant, exhausted list — is
appended to the audit log (outcome ``refused``) before the answer is sent. Endpoints are plain ``def``:
they run in the thread pool because database transactions block.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from TrialAnalysisLib.randomization_server import (
    accounts,
    audit,
    db,
    exports,
    lists,
    service,
)
from TrialAnalysisLib.randomization_server import (
    api_models as m,
)
from TrialAnalysisLib.randomization_server.accounts import Session
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.randomization_server.pages import refusal_page, register_pages
from TrialAnalysisLib.randomization_server.policy import RefusedError, require

LOG = logging.getLogger("TrialAnalysisLib.randomization_server")
ACCESS_LOG = logging.getLogger("TrialAnalysisLib.randomization_server.access")
COOKIE = "rsid"
CONFIG_ENV = "TRIAL_RANDOMIZATION_CONFIG"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityAndAccessLog:
    """ASGI middleware: security headers and ``no-store`` on every response; access log of method,
    path, status and time (never bodies); an unexpected exception becomes a bare 500 logged by type."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 0}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in names
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            LOG.error(
                "internal error on %s %s: %s",
                scope.get("method", ""),
                scope.get("path", ""),
                type(exc).__name__,
            )
            if status["code"] == 0:
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Internal server error"})
        finally:
            ACCESS_LOG.info(
                "%s %s %s %.1fms",
                scope.get("method", ""),
                scope.get("path", ""),
                status["code"],
                1000 * (time.perf_counter() - start),
            )


@dataclass
class Context:
    """What every route needs: the database, the notification outbox and the cookie policy."""

    database: db.Database
    outbox: Path | None
    secure_cookies: bool

    def ip(self, request: Request) -> str:
        """Client address as seen by the server (uvicorn resolves trusted proxies)."""
        return request.client.host if request.client else "-"

    def session(self, request: Request) -> Session | None:
        """The request's live session (also remembered on ``request.state`` for refusal logging)."""
        if not hasattr(request.state, "session"):
            s = accounts.session_of(self.database, request.cookies.get(COOKIE), self.ip(request))
            request.state.session = s
            request.state.actor = s.actor if s else Actor(ip=self.ip(request))
        return request.state.session

    def actor(self, request: Request) -> Actor:
        """The acting user, or an anonymous actor with the client's IP."""
        self.session(request)
        return request.state.actor

    def need(self, request: Request, action: str, target: str = "", csrf: str | None = None) -> Session:
        """The live session or a 401 refusal; POSTs must carry this session's CSRF token."""
        s = self.session(request)
        if s is None:
            raise RefusedError("no_session", "login required", 401, action, target)
        if request.method == "POST":
            accounts.check_csrf(
                s, csrf if csrf is not None else request.headers.get("x-csrf-token"), action, target
            )
        return s

    def log_refusal(self, actor: Actor, exc: RefusedError, path: str) -> None:
        """Append the refusal to the audit log (its own transaction: the refused one rolled back)."""
        detail = {"code": exc.code, "detail": exc.message, "path": path}
        detail.update({k: v for k, v in exc.extra.items() if k in ("centre", "stratum", "participant_id")})
        if exc.code == "ineligible":
            detail["failed"] = [f["code"] for f in exc.extra.get("failed", [])]
        with self.database.write() as conn:
            audit.append(conn, actor, exc.action or "request", exc.target, "refused", after=detail)


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: settings from $TRIAL_RANDOMIZATION_CONFIG (JSON)."""
    cfg = json.loads(os.environ[CONFIG_ENV])
    return create_app(cfg["url"], cfg.get("outbox"), cfg.get("secure_cookies", False))


def create_app(url: str, outbox: str | Path | None = None, secure_cookies: bool = False) -> FastAPI:
    """Build the service for the (already migrated) database at ``url``."""
    ctx = Context(db.Database(url), Path(outbox) if outbox else None, secure_cookies)
    app = FastAPI(
        title="METNLBP central randomisation API",
        version="1",
        description="Central stratified block randomisation with allocation concealment and a hash-chained audit log.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.add_middleware(SecurityAndAccessLog)
    app.state.ctx = ctx
    _register_api(app, ctx)

    register_pages(app, ctx)

    @app.exception_handler(RefusedError)
    async def on_refused(request: Request, exc: RefusedError) -> Response:
        actor = await run_in_threadpool(ctx.actor, request)
        if not exc.audited:
            await run_in_threadpool(ctx.log_refusal, actor, exc, request.url.path)
        if not request.url.path.startswith("/api/"):
            return refusal_page(request, ctx, exc)
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": str(e.get("msg"))}
            for e in exc.errors()
        ]
        return JSONResponse(
            {"detail": "invalid request", "code": "invalid", "errors": errors}, status_code=422
        )

    return app


R401 = {401: {"model": m.RefusalBody}, 403: {"model": m.RefusalBody}}


def _register_api(app: FastAPI, ctx: Context) -> None:
    """The JSON API routes: health and session here, the rest by group."""
    _register_admin_api(app, ctx)
    _register_trial_api(app, ctx)
    _register_export_api(app, ctx)
    database = ctx.database

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness (no database access)."""
        return {"status": "ok"}

    @app.post(
        "/api/login",
        response_model=m.LoginResponse,
        tags=["session"],
        responses={401: {"model": m.RefusalBody}, 429: {"model": m.RefusalBody}},
    )
    def api_login(body: m.LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        """Open a session (cookie ``rsid``); the answer carries the session's CSRF token."""
        token, s = accounts.login(database, body.username, body.password, ctx.ip(request))
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=ctx.secure_cookies, path="/"
        )
        return {
            "username": s.actor.username,
            "role": s.actor.role,
            "site": s.actor.site,
            "csrf_token": s.csrf,
        }

    @app.post("/api/logout", tags=["session"], responses=R401)
    def api_logout(request: Request, response: Response) -> dict[str, str]:
        """End the session."""
        s = ctx.need(request, "logout")
        accounts.logout(database, request.cookies[COOKIE], s.actor)
        response.delete_cookie(COOKIE, path="/")
        return {"status": "logged out"}

    @app.get("/api/me", response_model=m.LoginResponse, tags=["session"], responses=R401)
    def api_me(request: Request) -> dict[str, Any]:
        """The session's user and CSRF token."""
        s = ctx.need(request, "me")
        return {
            "username": s.actor.username,
            "role": s.actor.role,
            "site": s.actor.site,
            "csrf_token": s.csrf,
        }

    @app.post("/api/password", tags=["session"], responses=R401)
    def api_password(body: m.PasswordChange, request: Request) -> dict[str, str]:
        """Change one's own password (other sessions of the user end)."""
        s = ctx.need(request, "change_password")
        accounts.change_password(database, s, body.old_password, body.new_password)
        return {"status": "changed"}


def _register_admin_api(app: FastAPI, ctx: Context) -> None:
    """Sites and users (admin)."""
    database = ctx.database

    @app.get("/api/sites", tags=["admin"], responses=R401)
    def api_sites(request: Request) -> list[dict[str, Any]]:
        """Registered sites."""
        ctx.need(request, "list_sites")
        return accounts.list_sites(database)

    @app.post("/api/sites", tags=["admin"], status_code=201, responses=R401)
    def api_create_site(body: m.SiteCreate, request: Request) -> dict[str, Any]:
        """Register a site (admin)."""
        s = ctx.need(request, "create_site", body.code)
        return accounts.create_site(database, s.actor, body.code, body.name)

    @app.get("/api/users", tags=["admin"], responses=R401)
    def api_users(request: Request) -> list[dict[str, Any]]:
        """Users (admin)."""
        return accounts.list_users(database, ctx.need(request, "list_users").actor)

    @app.post("/api/users", tags=["admin"], status_code=201, responses=R401)
    def api_create_user(body: m.UserCreate, request: Request) -> dict[str, Any]:
        """Create a user (admin); investigators belong to one site."""
        s = ctx.need(request, "create_user", body.username)
        return accounts.create_user(database, s.actor, body.username, body.password, body.role, body.site)

    @app.post("/api/users/{username}/active", tags=["admin"], responses=R401)
    def api_user_active(username: str, body: m.UserActive, request: Request) -> dict[str, Any]:
        """Deactivate or reactivate a user (admin)."""
        s = ctx.need(request, "set_user_active", username)
        accounts.set_active(database, s.actor, username, body.active)
        return {"username": username, "active": body.active}


def _register_trial_api(app: FastAPI, ctx: Context) -> None:
    """List upload, dashboard, randomising, participants, unblinding."""
    database = ctx.database

    @app.post("/api/list", tags=["list"], status_code=201, responses=R401)
    def api_upload_list(body: m.ListUpload, request: Request) -> dict[str, Any]:
        """Upload the allocation list with its checksum (unblinded statistician)."""
        s = ctx.need(request, "upload_list", body.filename)
        return lists.upload_list(database, s.actor, body.csv.encode("utf-8"), body.sha256, body.filename)

    @app.get("/api/dashboard", tags=["list"], responses=R401)
    def api_dashboard(request: Request) -> dict[str, Any]:
        """Use of the list by stratum and counts by arm (coded for blinded roles)."""
        return service.dashboard(database, ctx.need(request, "view_dashboard").actor)

    @app.post(
        "/api/randomize",
        response_model=m.Randomization,
        tags=["randomisation"],
        status_code=201,
        responses={**R401, 409: {"model": m.RefusalBody}},
    )
    def api_randomize(body: m.RandomizeRequest, request: Request) -> dict[str, Any]:
        """Randomise an eligible participant of the investigator's own site: number and arm."""
        s = ctx.need(request, "randomize", body.screening_id)
        return service.randomize(database, s.actor, body.model_dump())

    @app.get(
        "/api/participants", response_model=list[m.ParticipantView], tags=["randomisation"], responses=R401
    )
    def api_participants(request: Request) -> list[dict[str, Any]]:
        """Randomised participants the caller may see."""
        return service.participants(database, ctx.need(request, "list_participants").actor)

    @app.get(
        "/api/participants/{pid}", response_model=m.ParticipantView, tags=["randomisation"], responses=R401
    )
    def api_participant(pid: str, request: Request) -> dict[str, Any]:
        """One participant (another site's is refused to an investigator)."""
        return service.participant(database, ctx.need(request, "view_participant", pid).actor, pid)

    @app.post("/api/participants/{pid}/unblind", tags=["unblinding"], responses=R401)
    def api_unblind(pid: str, body: m.UnblindRequest, request: Request) -> dict[str, Any]:
        """Emergency unblinding of one participant with a reason (logged and notified)."""
        s = ctx.need(request, "unblind", pid)
        return service.unblind(database, s.actor, pid, body.reason, ctx.outbox)

    @app.post("/api/participants/{pid}/offline-unblinding", tags=["unblinding"], responses=R401)
    def api_offline(pid: str, body: m.OfflineUnblinding, request: Request) -> dict[str, Any]:
        """Record that a sealed envelope of the offline list was opened (its check code must match)."""
        s = ctx.need(request, "offline_unblinding", pid)
        return service.unblind(database, s.actor, pid, body.reason, ctx.outbox, code=body.check_code)

    @app.post("/api/trial/unblind", tags=["unblinding"], responses=R401)
    def api_unblind_trial(body: m.TrialUnblind, request: Request) -> dict[str, Any]:
        """Unblind the whole trial (statistician, after database lock)."""
        return service.unblind_trial(database, ctx.need(request, "unblind_trial").actor, body.confirm)

    @app.get("/api/notifications", tags=["unblinding"], responses=R401)
    def api_notifications(request: Request) -> list[dict[str, Any]]:
        """Notifications addressed to the caller."""
        return service.notifications(database, ctx.need(request, "notifications").actor)


def _register_export_api(app: FastAPI, ctx: Context) -> None:
    """Exports and the audit log."""
    database = ctx.database

    @app.get("/api/export/allocation", tags=["export"], responses=R401, response_class=Response)
    def api_export(request: Request) -> Response:
        """Zip of allocation.csv/.sha256 (trial schema), randomized.csv and export.json."""
        data, manifest = exports.allocation_export(database, ctx.need(request, "export_allocation").actor)
        name = f"allocation-{manifest['mode']}.zip"
        return Response(
            data,
            media_type="application/zip",
            headers={"content-disposition": f"attachment; filename={name}"},
        )

    @app.get("/api/emergency-list", tags=["export"], responses=R401, response_class=Response)
    def api_emergency_list(request: Request) -> Response:
        """Printable sealed code-break list for outages (statistician)."""
        page = exports.emergency_list(database, ctx.need(request, "emergency_list").actor)
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={
                "content-disposition": "attachment; filename=emergency-list.html",
                "content-security-policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'",
            },
        )

    @app.get("/api/audit", tags=["audit"], responses=R401)
    def api_audit(request: Request, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Audit entries after sequence number ``after``."""
        return exports.audit_page(database, ctx.need(request, "view_audit").actor, after, limit)

    @app.get("/api/audit/export", tags=["audit"], responses=R401, response_class=Response)
    def api_audit_export(request: Request) -> Response:
        """The whole audit log as JSON lines (verify with ``trial-analysis audit-verify --file``)."""
        text = exports.audit_export(database, ctx.need(request, "export_audit").actor)
        return Response(
            text,
            media_type="application/x-ndjson",
            headers={"content-disposition": "attachment; filename=audit.jsonl"},
        )

    @app.get("/api/audit/verify", tags=["audit"], responses=R401)
    def api_audit_verify(request: Request) -> dict[str, Any]:
        """Verify the chain and the randomisation tables now."""
        require(ctx.need(request, "verify_audit").actor, "view_audit", "verify_audit")
        res = audit.verify_database(database.url)
        return {
            "ok": res.ok,
            "n_entries": res.n_entries,
            "head_hash": res.head_hash,
            "problems": res.problems,
        }
