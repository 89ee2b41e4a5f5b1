"""Open-access web risk calculator serving one verified LBPRiskModel bundle (FastAPI + Jinja2).

``create_app(bundle_dir)`` verifies the bundle with ``load_bundle`` and returns the ASGI app; the
CLI ``python -m LBPRiskModelLib serve --model BUNDLE_DIR`` runs it with uvicorn. Nothing a user
enters is stored or logged: patient values travel only in POST bodies, the access log records
method, path and status only, and results are sent with ``Cache-Control: no-store``.
"""

from LBPRiskModelLib.webapp.app import create_app

__all__ = ["create_app"]
