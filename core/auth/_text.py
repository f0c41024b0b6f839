"""Make attacker-controlled strings (a token's ``kid``, an auth scheme) safe to echo.

They end up in error messages, ErrorInfo metadata and audit rows, so they are cut short
and reduced to a plain character set: no control characters, no log injection.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")


def safe_label(value: object, limit: int = 64) -> str:
    """A short printable rendering of ``value``; never longer than ``limit`` + 1 characters."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= limit else text[:limit] + "…"
