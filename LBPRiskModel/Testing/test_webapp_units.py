"""Unit checks of the calculator's building blocks: locales, input parsing, safe rendering."""

from __future__ import annotations

import re

import pytest

from LBPRiskModelLib.bundle import FieldSpec
from LBPRiskModelLib.webapp.fields import check_values, fmt_number, missing_policy_text
from LBPRiskModelLib.webapp.i18n import LANGUAGES, normalise_language, strings, translate
from LBPRiskModelLib.webapp.render import contribution_svg, markdown_to_html

SCHEMA = [
    FieldSpec("age", "Age", "年龄", "number", "years", 60, 85, 18, 110, required=True, out_of_range="warn"),
    FieldSpec("odi", "ODI", "ODI", "number", "points", 10, 70, 0, 100, out_of_range="error"),
    FieldSpec("sex", "Sex", "性别", "category", categories=["F", "M"]),
]


def test_locales_complete_and_distinct() -> None:
    """Every UI string exists in both languages, is non-empty, and uses the same placeholders."""
    en, zh = strings("en"), strings("zh")
    assert set(en) == set(zh) and LANGUAGES == ("en", "zh")
    for key in en:
        assert en[key].strip() and zh[key].strip(), key
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", zh[key])), key
    different = [k for k in en if en[k] != zh[k] and k not in ("switch_language", "lang_name")]
    assert len(different) >= len(en) - 3  # really translated, not copied
    assert re.search(r"[\u4e00-\u9fff]", zh["submit"])


def test_language_normalisation() -> None:
    assert [normalise_language(x) for x in ("zh-CN", "ZH_hans", "en-GB", "fr", "", None)] == [
        "zh",
        "zh",
        "en",
        None,
        None,
        None,
    ]
    assert translate("zh", "err_out_of_range", min=1, max=2) == "数值必须在 1 至 2 之间。"


@pytest.mark.parametrize(
    ("raw", "errors", "warnings"),
    [
        ({"age": "70", "odi": "40,5", "sex": "F"}, {}, {}),  # decimal comma accepted
        ({"age": " ", "odi": None}, {"age": "err_required"}, {"odi": "warn_imputed", "sex": "warn_imputed"}),
        (
            {"age": "nan", "odi": "inf", "sex": "f"},
            {"age": "err_not_number", "odi": "err_not_number", "sex": "err_unknown_category"},
            {},
        ),
        (
            {"age": True, "odi": [1], "sex": 1},
            {"age": "err_not_number", "odi": "err_not_number", "sex": "err_unknown_category"},
            {},
        ),
        ({"age": 90, "odi": 75, "sex": "M"}, {"odi": "err_out_of_range"}, {"age": "warn_out_of_range"}),
        ({"age": 111, "odi": -1, "sex": "M"}, {"age": "err_invalid_range", "odi": "err_invalid_range"}, {}),
        ({"age": 70, "odi": 40, "sex": "M", "x": 1}, {"x": "err_unknown_field"}, {}),
    ],
)
def test_check_values_paths(raw: dict, errors: dict, warnings: dict) -> None:
    result = check_values(SCHEMA, raw, "en")
    en = strings("en")
    assert set(result.errors) == set(errors) and set(result.warnings) == set(warnings)
    for field, key in {**errors, **warnings}.items():
        message = {**result.errors, **result.warnings}[field]
        assert message.split("{")[0][:12] == en[key].split("{")[0][:12]
    if not errors:
        assert result.values["age"] == float(raw["age"])


def test_missing_policy_stated() -> None:
    lines = missing_policy_text(SCHEMA, "en")
    assert lines[0].startswith("Fields marked * are required") and "impute" in lines[1]


def test_fmt_number() -> None:
    assert [fmt_number(v) for v in (60.0, 3.25, 0.123456, None, "x")] == ["60", "3.25", "0.1235", "", "x"]


def test_svg_escapes_and_scales() -> None:
    svg = str(contribution_svg([("<b>age</b>", "70", 0.5), ("sex & co", "M", -0.25)], "up", "down"))
    assert "<b>" not in svg and "&lt;b&gt;age&lt;/b&gt;" in svg and "sex &amp; co" in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(2 * widths[1])  # bar length proportional to |contribution|
    assert 'class="pos"' in svg and 'class="neg"' in svg


def test_markdown_is_safe() -> None:
    html = str(
        markdown_to_html(
            "# Card\n<img src=x onerror=alert(1)>\n\n- **bold** [link](javascript:alert(1))\n\n```\n<script>\n```\n"
            "| a | b |\n|---|---|\n| <i>1</i> | 2 |\n"
        )
    )
    assert "<h2>Card</h2>" in html and "<strong>bold</strong>" in html
    assert "<img" not in html and "<script>" not in html and "javascript:" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<td>&lt;i&gt;1&lt;/i&gt;</td>" in html


def test_request_model_accepts_any_feature_name() -> None:
    """Radiomics names with dashes or leading underscores work as JSON keys; attribute names don't leak."""
    from LBPRiskModelLib.webapp.api_models import build_request_model

    names = ["wavelet-LLH_glcm_Contrast__multifidus_left__L4", "_p", "model_x", "f1"]
    model = build_request_model(
        [FieldSpec(n, n, n, "number", min=0, max=1, out_of_range="error") for n in names]
    )
    props = model.model_json_schema(by_alias=True)["properties"]
    assert sorted(props) == sorted(names) and props["_p"]["anyOf"][0]["maximum"] == 1
    body = {n: 0.5 for n in names}
    assert model.model_validate(body).model_dump(by_alias=True, exclude_unset=True) == body
    with pytest.raises(ValueError, match="Extra inputs"):
        model.model_validate({**body, "f0": 0.5})


def test_server_connections_have_tcp_nodelay() -> None:
    """The serve protocol turns Nagle off on every accepted connection (with ``--workers N`` a
    keep-alive client otherwise waited ~40 ms per response for the delayed ACK)."""
    import asyncio
    import socket

    import uvicorn

    from LBPRiskModelLib.webapp.serve_cli import HTTP_PROTOCOL

    async def app(scope, receive, send) -> None:  # a real ASGI app: 200 "ok"
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> list[int]:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, http=HTTP_PROTOCOL, log_level="error", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert b"200" in await reader.readline()
        flags = [
            c.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for c in server.server_state.connections
        ]
        writer.close()
        server.should_exit = True
        await task
        return flags

    flags = asyncio.run(scenario())
    assert flags and all(f != 0 for f in flags)
