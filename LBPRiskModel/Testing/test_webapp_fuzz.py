"""Schemathesis fuzzing of the calculator's OpenAPI spec against a real server: zero server errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_webapp_support import calculator_bundle, running_server


def test_openapi_fuzzing_finds_no_server_error(tmp_path: Path) -> None:
    """Every operation (coverage + fuzzing phases, 50 examples each, fixed seed) answers without a 5xx."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with running_server(calculator_bundle()) as server:
        proc = subprocess.run(
            [
                str(schemathesis),
                "run",
                server.url + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "50",
                "--seed",
                "1",
                "--no-color",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        log = server.log_text()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout
    assert "Selected: 3/3" in proc.stdout  # /api/predict, /api/schema, /healthz
    assert "Traceback" not in log and " 500 " not in log
    assert log.count("POST /api/predict 422") > 10 and log.count("POST /api/predict 200") > 0
