"""HTML pages of the randomisation service (English/Chinese), on the same session and services as the API.

Forms carry the session's CSRF token in a hidden field; the login form carries a pre-session token
that must equal its ``pre_csrf`` cookie (double submit). Refusals render ``refused.html`` with the
translated reason, after the app has logged them.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from TrialAnalysisLib.randomization_server import accounts, exports, lists, service
from TrialAnalysisLib.randomization_server import api_models as m
from TrialAnalysisLib.randomization_server.audit import verify_database
from TrialAnalysisLib.randomization_server.eligibility import CRITERIA
from TrialAnalysisLib.randomization_server.i18n import (
    DEFAULT_LANGUAGE,
    normalise_language,
    strings,
    translate,
)
from TrialAnalysisLib.randomization_server.policy import RefusedError, require

HERE = Path(__file__).resolve().parent
ENV = Environment(
    loader=FileSystemLoader(str(HERE / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
CHECKS = [c[1] for c in CRITERIA]
BOOL_FIELDS = ("nsaid_contraindication", "prior_spine_surgery", "specific_pathology", "consent")


def language(request: Request) -> str:
    """Page language: ?lang=, the lang cookie, Accept-Language, English."""
    for value in (request.query_params.get("lang"), request.cookies.get("lang")):
        if normalise_language(value):
            return normalise_language(value)  # type: ignore[return-value]
    accept = request.headers.get("accept-language", "")
    return normalise_language(accept.split(",")[0].split(";")[0]) or DEFAULT_LANGUAGE


def render(request: Request, ctx: Any, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with the common context; keeps a ``?lang=`` choice in the cookie."""
    lang = language(request)
    s = ctx.session(request)
    html = ENV.get_template(template).render(
        t=strings(lang),
        lang=lang,
        other="zh" if lang == "en" else "en",
        path=request.url.path,
        user=s.actor if s else None,
        csrf=s.csrf if s else "",
        tr=lambda k, d=None: translate(lang, k, d),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if normalise_language(request.query_params.get("lang")):
        response.set_cookie("lang", lang, max_age=365 * 24 * 3600, httponly=True, samesite="strict")
    return response


def refusal_page(request: Request, ctx: Any, exc: RefusedError) -> HTMLResponse:
    """The refusal as a page: translated reason, failed criteria listed."""
    lang = language(request)
    failed = [translate(lang, f"crit_{f['code']}", f["criterion"]) for f in exc.extra.get("failed", [])]
    reason = translate(lang, f"refused_{exc.code}", exc.message)
    return render(
        request,
        ctx,
        "refused.html",
        exc.status,
        reason=reason,
        code=exc.code,
        failed=failed,
        detail=exc.message,
    )


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def register_pages(app: FastAPI, ctx: Any) -> None:
    """The HTML routes: session (login, logout, home), randomisation and participants, administration."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    async def form_of(request: Request, action: str, target: str = "", files: int = 0) -> tuple[Any, dict]:
        """(session, form fields) of a POSTed form whose CSRF field is the session's token."""
        form = await request.form(max_files=files, max_fields=40)
        s = await run_in_threadpool(ctx.need, request, action, target, str(form.get("csrf_token", "")))
        return s, form

    _register_session_pages(app, ctx, form_of)
    _register_randomization_pages(app, ctx, form_of)
    _register_admin_pages(app, ctx, form_of)


def _register_session_pages(app: FastAPI, ctx: Any, form_of: Any) -> None:
    """Log in (double-submit pre-session CSRF token), log out, and the home page with the dashboard."""
    database = ctx.database

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = render(request, ctx, "login.html", pre_csrf=token)
        response.set_cookie("pre_csrf", token, httponly=True, samesite="strict", secure=ctx.secure_cookies)
        return response

    @app.post("/login", include_in_schema=False)
    async def login_post(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        if not request.cookies.get("pre_csrf") or form.get("pre_csrf") != request.cookies.get("pre_csrf"):
            raise RefusedError("csrf", "login form expired: reload the page", 403, "login")
        user, pw = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
        token, _ = await run_in_threadpool(accounts.login, database, user, pw, ctx.ip(request))
        response = _see_other("/")
        response.set_cookie(
            "rsid", token, httponly=True, samesite="strict", secure=ctx.secure_cookies, path="/"
        )
        response.delete_cookie("pre_csrf")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout_post(request: Request) -> Response:
        s, _ = await form_of(request, "logout")
        await run_in_threadpool(accounts.logout, database, request.cookies["rsid"], s.actor)
        response = _see_other("/login")
        response.delete_cookie("rsid", path="/")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> Response:
        s = ctx.session(request)
        if s is None:
            return _see_other("/login")
        board = (
            service.dashboard(database, s.actor)
            if s.actor.role in ("admin", "statistician", "monitor")
            else None
        )
        return render(request, ctx, "home.html", board=board)


def _register_randomization_pages(app: FastAPI, ctx: Any, form_of: Any) -> None:
    """The randomisation form and its result, the participant list and page, emergency unblinding."""
    database = ctx.database

    @app.get("/randomize", response_class=HTMLResponse, include_in_schema=False)
    def randomize_page(request: Request) -> HTMLResponse:
        s = ctx.need(request, "randomize_form")
        require(s.actor, "randomize", "randomize_form")
        return render(request, ctx, "randomize.html", checks=CHECKS, bools=BOOL_FIELDS)

    @app.post("/randomize", response_class=HTMLResponse, include_in_schema=False)
    async def randomize_post(request: Request) -> HTMLResponse:
        s, form = await form_of(request, "randomize", str(request.query_params.get("sid", "")))
        raw = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        raw.update({k: raw.get(k) in ("yes", "true", "on") for k in BOOL_FIELDS})
        try:
            body = m.RandomizeRequest(**{k: raw.get(k) for k in m.RandomizeRequest.model_fields})
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
            return render(
                request,
                ctx,
                "randomize.html",
                422,
                checks=CHECKS,
                bools=BOOL_FIELDS,
                values=raw,
                errors=fields,
            )
        result = await run_in_threadpool(service.randomize, database, s.actor, body.model_dump())
        return render(request, ctx, "result.html", r=result)

    @app.get("/participants", response_class=HTMLResponse, include_in_schema=False)
    def participants_page(request: Request) -> HTMLResponse:
        s = ctx.need(request, "list_participants")
        return render(request, ctx, "participants.html", rows=service.participants(database, s.actor))

    @app.get("/participants/{pid}", response_class=HTMLResponse, include_in_schema=False)
    def participant_page(pid: str, request: Request) -> HTMLResponse:
        s = ctx.need(request, "view_participant", pid)
        return render(request, ctx, "participant.html", p=service.participant(database, s.actor, pid))

    @app.post("/participants/{pid}/unblind", response_class=HTMLResponse, include_in_schema=False)
    async def unblind_post(pid: str, request: Request) -> HTMLResponse:
        s, form = await form_of(request, "unblind", pid)
        await run_in_threadpool(
            service.unblind, database, s.actor, pid, str(form.get("reason", "")), ctx.outbox
        )
        return render(request, ctx, "participant.html", p=service.participant(database, s.actor, pid))


def _register_admin_pages(app: FastAPI, ctx: Any, form_of: Any) -> None:
    """Admin (sites, users), list upload and audit pages."""
    database = ctx.database

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request) -> HTMLResponse:
        s = ctx.need(request, "admin_page")
        users = accounts.list_users(database, s.actor)
        return render(request, ctx, "admin.html", sites=accounts.list_sites(database), users=users)

    @app.post("/admin/sites", include_in_schema=False)
    async def admin_site(request: Request) -> Response:
        s, form = await form_of(request, "create_site")
        await run_in_threadpool(
            accounts.create_site, database, s.actor, str(form.get("code", "")), str(form.get("name", ""))
        )
        return _see_other("/admin")

    @app.post("/admin/users", include_in_schema=False)
    async def admin_user(request: Request) -> Response:
        s, form = await form_of(request, "create_user")
        f = {k: str(form.get(k, "")) for k in ("username", "password", "role", "site")}
        await run_in_threadpool(
            accounts.create_user,
            database,
            s.actor,
            f["username"],
            f["password"],
            f["role"],
            f["site"] or None,
        )
        return _see_other("/admin")

    @app.get("/list", response_class=HTMLResponse, include_in_schema=False)
    def list_page(request: Request) -> HTMLResponse:
        s = ctx.need(request, "list_page")
        require(s.actor, "upload_list", "list_page")
        return render(request, ctx, "list.html", board=service.dashboard(database, s.actor))

    @app.post("/list", include_in_schema=False)
    async def list_post(request: Request) -> Response:
        s, form = await form_of(request, "upload_list", files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RefusedError("bad_list", "choose the list file", 422, "upload_list")
        data = await upload.read()
        await run_in_threadpool(
            lists.upload_list,
            database,
            s.actor,
            data,
            str(form.get("sha256", "")),
            upload.filename or "allocation.csv",
        )
        return _see_other("/list")

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request) -> HTMLResponse:
        s = ctx.need(request, "view_audit")
        rows = exports.audit_page(database, s.actor, 0, 1000)[-200:]

        return render(request, ctx, "audit.html", rows=rows[::-1], verification=verify_database(database.url))
