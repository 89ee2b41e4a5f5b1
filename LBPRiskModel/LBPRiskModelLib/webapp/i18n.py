"""UI strings in English and Simplified Chinese, loaded from ``locales/*.json``.

The language comes from the ``lang`` query parameter (then kept in the ``lang`` cookie, the only
cookie the calculator sets) or the form's hidden ``lang`` field; English is the default.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ParaspinalLBPCore.errors import MissingKeyError

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"


@cache
def strings(lang: str) -> dict[str, str]:
    """All UI strings of ``lang`` ("en" or "zh"); raises KeyError naming an unknown language."""
    if lang not in LANGUAGES:
        raise MissingKeyError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")
    return json.loads((LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def normalise_language(value: str | None) -> str | None:
    """Map "zh", "zh-CN", "zh_Hans", "en-GB" … to a supported code, or None if unsupported."""
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


def translate(lang: str, key: str, **params: object) -> str:
    """The string ``key`` in ``lang`` with ``{placeholders}`` filled; falls back to English."""
    table = strings(lang)
    text = table.get(key) or strings(DEFAULT_LANGUAGE)[key]
    return text.format(**params) if params else text


def other_language(lang: str) -> str:
    """The language the switch on every page offers."""
    return "zh" if lang == "en" else "en"
