"""UI strings in English and Simplified Chinese (``locales/*.json``); language from ``?lang=``, then the
``lang`` cookie, then Accept-Language; English by default."""

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
    """All UI strings of ``lang``; KeyError naming an unknown language."""
    if lang not in LANGUAGES:
        raise MissingKeyError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")
    return json.loads((LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def normalise_language(value: str | None) -> str | None:
    """'zh-CN', 'zh_Hans', 'en-GB' … -> 'zh'/'en'; None when unsupported."""
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


def translate(lang: str, key: str, default: str | None = None) -> str:
    """String ``key`` in ``lang``, else English, else ``default`` (else the key)."""
    return strings(lang).get(key) or strings(DEFAULT_LANGUAGE).get(key) or default or key
