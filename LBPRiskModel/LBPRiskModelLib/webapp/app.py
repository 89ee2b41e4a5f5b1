"""FastAPI application of the web risk calculator: HTML form/result pages, JSON API, security headers.

``create_app(bundle_dir)`` loads and verifies the bundle first (``load_bundle`` raises
``BundleError`` naming the offending file), so a tampered bundle never gets served. Routes:
``GET /`` form, ``POST /predict`` result page, ``GET /model-card``, ``GET /api/schema``,
``POST /api/predict``, ``GET /healthz``, ``GET /openapi.json``, ``/static/*``. Patient values only
ever travel in POST bodies and are never logged; the only cookie is ``lang``.

The endpoints are ``async def`` and compute on the event loop on purpose: with the bundle's numpy
fast path a prediction with its explanation costs less CPU than a hop to the thread pool would;
throughput scales with ``serve --workers N`` (processes), not threads.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from LBPRiskModelLib.bundle import load_bundle
from LBPRiskModelLib.webapp.api_models import (
    Health,
    PredictResponse,
    ValidationErrorResponse,
    build_request_model,
)
from LBPRiskModelLib.webapp.fields import (
    CONTROL_KEYS,
    check_values,
    field_views,
    fmt_number,
    missing_policy_text,
)
from LBPRiskModelLib.webapp.i18n import (
    DEFAULT_LANGUAGE,
    normalise_language,
    other_language,
    strings,
    translate,
)
from LBPRiskModelLib.webapp.render import contribution_svg, markdown_to_html
from LBPRiskModelLib.webapp.service import Calculator, Evaluation

HERE = Path(__file__).resolve().parent
LOG = logging.getLogger("LBPRiskModelLib.webapp")
ACCESS_LOG = logging.getLogger("LBPRiskModelLib.webapp.access")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]


class SecurityAndAccessLog:
    """ASGI middleware: security headers on every response, ``no-store`` on everything but static
    files, and a sanitised access log (method, path without query string, status, milliseconds)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        status = {"code": 0}
        cacheable = path.startswith("/static/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if not cacheable:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # a traceback could quote submitted values: log the type only
            LOG.error("internal error on %s %s: %s", scope.get("method", ""), path, type(exc).__name__)
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
                path,
                status["code"],
                1000 * (time.perf_counter() - start),
            )


def _page_language(
    request: Request, form_lang: str | None = None, use_cookie: bool = True
) -> tuple[str, bool]:
    """Language from the form, ``?lang=``, the ``lang`` cookie (pages only), then Accept-Language;
    and whether the page should (re)set the cookie."""
    query = normalise_language(request.query_params.get("lang"))
    cookie = normalise_language(request.cookies.get("lang")) if use_cookie else None
    for candidate in (normalise_language(form_lang), query, cookie):
        if candidate:
            return candidate, candidate != normalise_language(request.cookies.get("lang"))
    accept = request.headers.get("accept-language", "")
    first = normalise_language(accept.split(",")[0].split(";")[0]) if accept else None
    return first or DEFAULT_LANGUAGE, False


BUNDLE_ENV = "LBP_CALCULATOR_BUNDLE"


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (``serve --workers N``): bundle dir from $LBP_CALCULATOR_BUNDLE."""
    return create_app(os.environ[BUNDLE_ENV])


def create_app(bundle_dir: str | Path) -> FastAPI:
    """Verify the bundle at ``bundle_dir`` and build the calculator app (raises BundleError if tampered).

    The app is the HTML pages (:func:`pages_router`), the JSON API (:func:`api_router`), the static
    files, the security middleware and error handlers that answer in the calculator's own words.
    """

    calc = Calculator(load_bundle(Path(bundle_dir)))
    identity = calc.identity()
    app = FastAPI(
        title="LBP risk calculator API",
        version=identity["model_version"] or "0",
        description=(
            f"Risk calculator for model {identity['model_name']} (bundle {identity['bundle_hash'][:12]}). "
            "Inputs are validated against the bundle's schema; nothing submitted is stored or logged."
        ),
        docs_url=None,  # Swagger UI/ReDoc load scripts from CDNs: not served (no external resources)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(SecurityAndAccessLog)
    app.state.calculator = calc
    pages = Pages(calc)
    app.include_router(pages_router(calc, pages))
    app.include_router(api_router(calc))
    _add_error_handlers(app, calc, pages)
    return app


class Pages:
    """The calculator's HTML pages: one Jinja environment plus the model identity every page shows."""

    def __init__(self, calc: Calculator) -> None:
        self.calc = calc
        self.identity = calc.identity()
        self.env = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["fmt"] = fmt_number

    def render(
        self,
        request: Request,
        template: str,
        lang: str,
        status: int = 200,
        set_cookie: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        """Render a page with the common context (strings, language switch, model identity)."""
        html = self.env.get_template(template).render(
            t=strings(lang),
            lang=lang,
            other=other_language(lang),
            identity=self.identity,
            has_model_card=self.calc.model_card_path() is not None,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if set_cookie:
            response.set_cookie("lang", lang, max_age=365 * 24 * 3600, httponly=True, samesite="lax")
        return response

    def form(
        self,
        request: Request,
        lang: str,
        set_cookie: bool,
        raw: dict[str, Any] | None = None,
        evaluation: Evaluation | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        """The input form, refilled with ``raw`` and its per-field errors/warnings when given."""
        calc = self.calc
        errors = evaluation.errors if evaluation else {}
        warnings = evaluation.warnings if evaluation else {}
        return self.render(
            request,
            "form.html",
            lang,
            status,
            set_cookie,
            fields=field_views(calc.schema, lang, raw, errors, warnings),
            policy_lines=missing_policy_text(calc.schema, lang),
            other_errors={k: v for k, v in errors.items() if k not in calc.by_name},
            has_errors=bool(errors),
            repost=_repost_items(raw) if raw else None,
        )

    def result(
        self, request: Request, lang: str, set_cookie: bool, raw: dict[str, Any], evaluation: Evaluation
    ) -> HTMLResponse:
        """The result page of an evaluation that gave a prediction: risk, group, contributions, inputs used."""
        calc = self.calc
        pred = evaluation.prediction
        rows = [
            (calc.label(c["feature"], lang), _value_text(c["value"]), c["contribution"])
            for c in evaluation.contributions
        ]
        return self.render(
            request,
            "result.html",
            lang,
            200,
            set_cookie,
            pred=pred,
            group_label=calc.group_label(pred["risk_group"], lang),
            plot=contribution_svg(rows, translate(lang, "increases"), translate(lang, "decreases")),
            contrib_rows=rows,
            used=[
                (v.label, _value_text(evaluation.values.get(v.name)) if v.value else "", v.unit)
                for v in field_views(calc.schema, lang, evaluation.values)
            ],
            warnings=[(calc.label(k, lang), v) for k, v in evaluation.warnings.items()],
            intended_use=calc.meta_text("intended_use", lang),
            disclaimer=calc.meta_text("disclaimer", lang),
            outcome=calc.meta_text("outcome_definition", lang) or calc.meta_text("outcome", lang),
            cutoffs=calc.cutoffs_text(lang),
            repost=_repost_items(raw),
        )


def pages_router(calc: Calculator, pages: Pages) -> APIRouter:
    """HTML routes (not in the OpenAPI schema): ``GET /`` form, ``POST /predict`` result, ``GET /model-card``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        lang, set_cookie = _page_language(request)
        return pages.form(request, lang, set_cookie)

    @router.post("/predict", response_class=HTMLResponse)
    async def predict_page(request: Request) -> HTMLResponse:
        form = await request.form(max_files=0, max_fields=len(calc.schema) + 8)
        raw = {k: v for k, v in form.items() if isinstance(v, str)}
        lang, set_cookie = _page_language(request, raw.get("lang"))
        try:
            evaluation = calc.evaluate({k: v for k, v in raw.items() if k not in CONTROL_KEYS}, lang)
        except Exception as exc:  # never let a traceback (which may quote values) reach the log
            LOG.error("prediction failed: %s", type(exc).__name__)
            return pages.render(request, "error.html", lang, 500, message=translate(lang, "server_error"))
        if evaluation.prediction is None:
            return pages.form(request, lang, set_cookie, raw, evaluation, status=422)
        return pages.result(request, lang, set_cookie, raw, evaluation)

    @router.get("/model-card", response_class=HTMLResponse)
    async def model_card(request: Request) -> Response:
        lang, set_cookie = _page_language(request)
        path = calc.model_card_path()
        if path is None:
            return pages.render(
                request, "error.html", lang, 404, set_cookie, message=translate(lang, "not_found")
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix.lower() in (".html", ".htm"):
            # The bundle's own HTML: served as-is but sandboxed (no scripts, no external loads).
            return HTMLResponse(
                text,
                headers={
                    "content-security-policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                },
            )
        return pages.render(request, "model_card.html", lang, 200, set_cookie, card=markdown_to_html(text))

    return router


def api_router(calc: Calculator) -> APIRouter:
    """JSON routes: ``GET /healthz``, ``GET /api/schema``, ``POST /api/predict`` (body model built from the schema)."""
    router = APIRouter()
    identity = calc.identity()

    @router.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness and the identity of the verified bundle being served."""
        return {"status": "ok", **identity}

    @router.get("/api/schema", tags=["model"])
    async def api_schema() -> dict[str, Any]:
        """The bundle's input schema (labels in English and Chinese, units, ranges, categories,
        policies) and metadata (outcome, intended use, disclaimer, threshold, cut-offs, versions)."""
        return calc.schema_document()

    async def api_predict(request: Request, payload: Any) -> Any:
        """Predict the risk for one patient: same validation as the form; ``?lang=zh`` for Chinese messages."""
        lang, _ = _page_language(request, use_cookie=False)
        raw = payload.model_dump(by_alias=True, exclude_unset=True)  # type: ignore[attr-defined]
        try:
            evaluation = calc.evaluate(raw, lang)
        except Exception as exc:  # no traceback with values in the log
            LOG.error("prediction failed: %s", type(exc).__name__)
            return JSONResponse({"detail": translate(lang, "server_error")}, status_code=500)
        if evaluation.prediction is None:
            return _validation_response(lang, evaluation.errors, evaluation.warnings)
        return evaluation.prediction

    # The body model is built at run time, so it is attached after the fact (not a string annotation).
    api_predict.__annotations__["payload"] = build_request_model(calc.schema)
    router.post(
        "/api/predict",
        response_model=PredictResponse,
        tags=["model"],
        responses={422: {"model": ValidationErrorResponse, "description": "Per-field validation messages"}},
    )(api_predict)
    return router


def _add_error_handlers(app: FastAPI, calc: Calculator, pages: Pages) -> None:
    """422 with the calculator's per-field messages; 404 as JSON for the API, as a page otherwise."""

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Turn pydantic's errors into the calculator's per-field messages (same wording as the form)."""
        lang, _ = _page_language(request, use_cookie=False)
        body = exc.body
        if not isinstance(body, dict):
            return _validation_response(lang, {"__body__": translate(lang, "err_bad_body")}, {})
        checked = check_values(calc.schema, body, lang)
        errors, warnings = dict(checked.errors), dict(checked.warnings)
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ()) if p != "body"]
            errors.setdefault(loc[0] if loc else "__body__", str(error.get("msg", "invalid")))
        return _validation_response(lang, errors, warnings)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(("/api/", "/static/")) or "application/json" in request.headers.get(
            "accept", ""
        ):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        lang, _ = _page_language(request)
        return pages.render(request, "error.html", lang, 404, message=translate(lang, "not_found"))


def _validation_response(lang: str, errors: dict[str, str], warnings: dict[str, str]) -> JSONResponse:
    """422 JSON body with one message per field."""
    body = {"detail": translate(lang, "errors_heading"), "errors": errors, "warnings": warnings}
    return JSONResponse(json.loads(json.dumps(body, ensure_ascii=False)), status_code=422)


def _repost_items(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Submitted values as hidden inputs, so the language switch on a result page can re-POST them."""
    return [(k, str(v)) for k, v in raw.items() if k not in CONTROL_KEYS]


def _value_text(value: Any) -> str:
    """Input value as shown beside its contribution."""
    if value is None:
        return "—"
    return fmt_number(value) if isinstance(value, int | float) else str(value)
