"""Protobuf JSON → message, with errors that name the offending field (400, never 500)."""

from __future__ import annotations

import json
import re

from google.protobuf import json_format

from tradewire.core.errors import FieldViolation, TradewireError

_UNKNOWN_FIELD = re.compile(r'no field named "([^"]+)"')
_AT_FIELD = re.compile(r'Failed to parse (\w+) field')


def decode_json(body: bytes, message_cls, prefix: str = ""):
    """Parse ``body`` into a new ``message_cls``; MALFORMED_REQUEST / VALIDATION_FAILED naming the field."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise TradewireError("MALFORMED_REQUEST", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TradewireError("MALFORMED_REQUEST", "request body must be a JSON object")
    message = message_cls()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        text = str(exc)
        match = _UNKNOWN_FIELD.search(text) or _AT_FIELD.search(text)
        field = prefix + (match.group(1) if match else "")
        description = "unknown field" if _UNKNOWN_FIELD.search(text) else text.split(": ", 1)[-1][:200]
        raise TradewireError("VALIDATION_FAILED", f"{field or 'body'}: {description}",
                             field_violations=(FieldViolation(field or "body", description),)) from None
    return message
