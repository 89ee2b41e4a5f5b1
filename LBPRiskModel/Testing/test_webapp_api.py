"""Web calculator against a real server on loopback: JSON API and HTML form validation paths,
security headers, language switch, safe model card, no patient values in the server's output,
and refusal to start on a tampered bundle."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_webapp_support import (
    SERVE_CMD,
    SERVE_STANDALONE_CMD,
    Server,
    calculator_bundle,
    running_server,
    trained_bundle,
)

from LBPRiskModelLib.bundle import load_bundle

VALID = {"age": 70, "sex": "M", "odi_baseline": 40, "bmi": 26.5, "mean_ff_pct": 20}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(calculator_bundle()) as srv:
        yield srv


def post(server: Server, body: object, lang: str = "") -> httpx.Response:
    return httpx.post(server.url + "/api/predict" + (f"?lang={lang}" if lang else ""), json=body, timeout=10)


def test_api_predict_matches_bundle_in_process(server: Server) -> None:
    """The served risk, interval, group and contributions equal the bundle's own predict_one."""
    bundle = load_bundle(calculator_bundle())
    ref = bundle.predict_one(VALID)
    r = post(server, VALID)
    assert r.status_code == 200
    body = r.json()
    assert body["risk"] == pytest.approx(ref.risk, abs=1e-12)
    assert body["ci_low"] == pytest.approx(ref.ci_low) and body["ci_high"] == pytest.approx(ref.ci_high)
    assert body["ci_low"] <= body["risk"] <= body["ci_high"]
    assert body["risk_group"] == ref.risk_group == bundle.risk_group(body["risk"])
    assert body["risk_percent"] == round(100 * ref.risk, 1)
    assert {c["feature"]: c["contribution"] for c in body["contributions"]} == pytest.approx(
        {f: c for f, _, c in ref.contributions}
    )
    hash_file = (calculator_bundle() / "bundle_hash").read_text().strip()
    assert body["bundle_hash"] == hash_file and body["model_version"] == "0.1.0-test"
    assert body["warnings"] == {}


@pytest.mark.parametrize(
    ("change", "field", "pattern"),
    [
        ({"odi_baseline": None}, "odi_baseline", "required"),  # missing required (null)
        ({"sex": "X"}, "sex", "one of: F, M"),  # unknown category
        ({"age": "abc"}, "age", "Enter a number"),  # wrong type
        ({"age": [70]}, "age", "Enter a number"),  # wrong type (array)
        ({"odi_baseline": 80}, "odi_baseline", "between 11 and 70"),  # out of training range, policy error
        ({"age": 150}, "age", "between 18 and 110"),  # outside the physically valid range
        ({"smoker": "yes"}, "smoker", "Unknown field"),  # extra field
    ],
)
def test_api_validation_errors(server: Server, change: dict, field: str, pattern: str) -> None:
    """Every validation path answers 422 with a message for the offending field."""
    r = post(server, {**VALID, **change})
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert set(errors) == {field}
    assert pattern in errors[field]


def test_api_missing_required_key_and_bad_bodies(server: Server) -> None:
    body = {k: v for k, v in VALID.items() if k != "sex"}
    r = post(server, body)
    assert r.status_code == 422 and set(r.json()["errors"]) == {"sex"}
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        r = httpx.post(server.url + "/api/predict", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and set(r.json()["errors"]) == {"__body__"}


def test_api_warn_policy_and_imputation(server: Server) -> None:
    """Out of the training range with policy "warn" predicts with a warning; empty optional → imputed."""
    r = post(server, {**VALID, "age": 95, "bmi": None})
    assert r.status_code == 200
    warnings = r.json()["warnings"]
    assert set(warnings) == {"age", "bmi"}
    assert "60 to 85" in warnings["age"] and "median" in warnings["bmi"]


def test_api_messages_in_chinese(server: Server) -> None:
    r = post(server, {**VALID, "odi_baseline": 80, "sex": "X"}, lang="zh")
    assert r.status_code == 422
    assert r.json()["errors"] == {
        "odi_baseline": "数值必须在 11 至 70 之间。",
        "sex": "请选择以下之一：F, M。",
    }


def test_schema_health_and_openapi(server: Server) -> None:
    schema = httpx.get(server.url + "/api/schema").json()
    assert [f["name"] for f in schema["fields"]] == ["age", "sex", "odi_baseline", "bmi", "mean_ff_pct"]
    assert schema["metadata"]["risk_groups"]["cutoffs"] == [0.2, 0.5]
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["bundle_hash"] == schema["bundle_hash"]
    spec = httpx.get(server.url + "/openapi.json").json()
    props = spec["components"]["schemas"]["PredictRequest"]["properties"]
    assert props["odi_baseline"]["minimum"] == 11 and props["odi_baseline"]["maximum"] == 70  # error policy
    assert props["age"]["minimum"] == 18 and props["age"]["x-training-range"] == [60, 85]  # warn policy
    assert props["sex"]["enum"] == ["F", "M"]
    assert set(spec["components"]["schemas"]["PredictRequest"]["required"]) == {"age", "sex", "odi_baseline"}
    assert spec["components"]["schemas"]["PredictRequest"]["additionalProperties"] is False
    assert httpx.get(server.url + "/docs").status_code == 404  # Swagger UI would load scripts from a CDN


@pytest.mark.parametrize("path", ["/", "/healthz", "/static/calculator.css", "/model-card", "/nope"])
def test_security_headers(server: Server, path: str) -> None:
    h = httpx.get(server.url + path).headers
    assert "default-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-frame-options"] == "DENY"
    if not path.startswith("/static"):
        assert h["cache-control"] == "no-store"


def test_results_are_not_cached(server: Server) -> None:
    for r in (post(server, VALID), httpx.post(server.url + "/predict", data={**VALID, "lang": "en"})):
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


def test_form_page_is_generated_from_schema(server: Server) -> None:
    html = httpx.get(server.url + "/?lang=en").text
    for name in ("age", "sex", "odi_baseline", "bmi", "mean_ff_pct"):
        assert f'name="{name}"' in html
    assert "Oswestry Disability Index (baseline)" in html and "kg/m²" in html
    assert "Allowed range 11 to 70" in html and "values outside are rejected" in html
    assert "Optional fields left empty are filled in" in html  # missing-value policy stated
    assert '<option value="F"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing external
    assert "<script" not in html


def test_form_errors_next_to_field_and_values_kept(server: Server) -> None:
    r = httpx.post(server.url + "/predict", data={**VALID, "odi_baseline": "95", "age": "", "lang": "en"})
    assert r.status_code == 422
    assert re.search(r'id="err-odi_baseline"[^>]*>Must be between 11 and 70\.', r.text)
    assert re.search(r'id="err-age"[^>]*>This value is required\.', r.text)
    assert 'value="95"' in r.text  # the user's entry is kept for correction


def test_result_page(server: Server) -> None:
    ref = load_bundle(calculator_bundle()).predict_one(VALID)
    r = httpx.post(server.url + "/predict", data={**VALID, "lang": "en"})
    assert r.status_code == 200
    assert f"{100 * ref.risk:.1f} %" in r.text
    assert f"{100 * ref.ci_low:.1f} – {100 * ref.ci_high:.1f} %" in r.text
    assert "<svg" in r.text and r.text.count('class="pos"') + r.text.count('class="neg"') == 5
    assert ref.bundle_hash in r.text and "Testing the web calculator only." in r.text
    assert "not a certified medical device" in r.text and 'href="/model-card"' in r.text
    zh = httpx.post(server.url + "/predict", data={**VALID, "lang": "zh"})
    assert "预测风险" in zh.text and "仅用于测试网页计算器。" in zh.text and "并非经认证的医疗器械" in zh.text


def test_language_cookie_only(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/?lang=zh")
        assert '<html lang="zh-CN">' in r.text and "计算风险" in r.text
        assert [c.name for c in client.cookies.jar] == ["lang"]
        assert '<html lang="zh-CN">' in client.get("/").text  # remembered
        client.post("/predict", data=VALID)
        assert [c.name for c in client.cookies.jar] == ["lang"]  # no other cookie, ever
        assert '<html lang="en">' in client.get("/?lang=en").text


def test_model_card_rendered_safely(server: Server) -> None:
    html = httpx.get(server.url + "/model-card").text
    assert "<table" in html and "<li>Model: logistic regression</li>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_no_patient_values_in_server_output(server: Server) -> None:
    """Distinctive values sent through the form and the API never appear in stdout/stderr."""
    secret = {
        "age": "71.4321",
        "sex": "F",
        "odi_baseline": "47.8765",
        "bmi": "27.1357",
        "mean_ff_pct": "33.9753",
    }
    assert httpx.post(server.url + "/predict", data={**secret, "lang": "zh"}).status_code == 200
    assert httpx.post(server.url + "/predict", data={**secret, "odi_baseline": "99.1234"}).status_code == 422
    assert post(server, {k: (v if k == "sex" else float(v)) for k, v in secret.items()}).status_code == 200
    assert post(server, {**secret, "age": "88.2468x", "note": "patient-zzq"}).status_code == 422
    log = server.log_text()
    assert "POST /predict 200" in log and "POST /api/predict 422" in log  # the sanitised access log works
    for value in [*secret.values(), "99.1234", "88.2468", "patient-zzq", "note"]:
        if value != "F":
            assert value not in log


@pytest.mark.parametrize("command", [SERVE_CMD, SERVE_STANDALONE_CMD], ids=["cli", "standalone"])
def test_tampered_bundle_refused(tmp_path: Path, command: list[str]) -> None:
    """A one-byte change to a bundle file: the server exits non-zero naming the file, never listens."""
    copy = tmp_path / "bundle"
    shutil.copytree(calculator_bundle(), copy)
    schema = copy / "schema.json"
    data = bytearray(schema.read_bytes())
    data[data.index(b"110")] = ord("9")  # hard_max of age 110 -> 910
    schema.write_bytes(bytes(data))
    proc = subprocess.run(
        [*command, "--model", str(copy), "--port", "9"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert (
        "refusing to start" in proc.stderr
        and "schema.json" in proc.stderr
        and "SHA-256 mismatch" in proc.stderr
    )
    assert "Uvicorn running" not in proc.stderr + proc.stdout


@pytest.mark.slow  # spawns two extra interpreters that each import the model stack (~45 s on a busy machine)
def test_multi_worker_server() -> None:
    """``--workers 2``: each worker verifies and serves the bundle; same answers, same sanitised log."""
    ref = load_bundle(calculator_bundle()).predict_one(VALID)
    with running_server(calculator_bundle(), extra_args=("--workers", "2")) as srv:
        risks = {post(srv, {**VALID, "bmi": 26.5001}).json()["risk"] for _ in range(6)}
        assert post(srv, VALID).json()["risk"] == pytest.approx(ref.risk, abs=1e-12)
        time.sleep(0.5)
        log = srv.log_text()
    assert len(risks) == 1
    assert log.count("POST /api/predict 200") == 7 and "26.5001" not in log


def test_bundle_from_training_pipeline_is_served() -> None:
    """A bundle written by the model pipeline (export.train): form, API and model card work on it."""
    bundle = load_bundle(trained_bundle())
    record = {"age": 72, "sex": "F", "odi_baseline": 35, "bmi": 24, "mean_ff_pct": 30}
    ref = bundle.predict_one(record)
    with running_server(trained_bundle()) as srv:
        body = post(srv, record).json()
        form = httpx.get(srv.url + "/?lang=zh").text
        card = httpx.get(srv.url + "/model-card").text
        empty = post(srv, {})
    assert body["risk"] == pytest.approx(ref.risk, abs=1e-12) and body["risk_group"] == ref.risk_group
    assert body["bundle_hash"] == bundle.bundle_hash and body["model_name"] == bundle.family
    for spec in bundle.schema:
        assert spec.label_zh in form
    assert "<table" in card and "<script" not in card
    required = {s.name for s in bundle.schema if s.required or s.missing == "error"}
    assert (empty.status_code == 422) == bool(required)  # all-missing: refused only if something is required
