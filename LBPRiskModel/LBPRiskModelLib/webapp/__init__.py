"""Open-access web risk calculator serving one verified LBPRiskModel bundle (FastAPI + Jinja2).

``create_app(bundle_dir)`` verifies the bundle with ``load_bundle`` and returns the ASGI app; the
CLI ``python -m LBPRiskModelLib serve --model BUNDLE_DIR`` runs it with uvicorn. Nothing a user
enters is stored or logged: patient values travel only in POST bodies, the access log records
method, path and status only, and results are sent with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """``create_app`` is imported on first use, so that ``lbp-riskmodel serve --help`` loads no FastAPI."""
    if name == "create_app":
        from LBPRiskModelLib.webapp.app import create_app

        return create_app
    raise AttributeError(f"module 'LBPRiskModelLib.webapp' has no attribute {name!r}")
