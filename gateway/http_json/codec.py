"""JSON in and out: content type, bounded body reading, decoding with named errors, encoding.

Decoding uses google.protobuf.json_format (camelCase and snake_case names, proto3 JSON
rules). Its error texts do not name nested fields reliably, so on failure a small walker
re-checks the JSON against the descriptor to name the offending field path (proto names,
e.g. ``trades[1].slippage_bps``) — valid requests never pay for it. Responses are
MessageToDict with unpopulated fields emitted (grpc-gateway's EmitUnpopulated), camelCase,
dumped compactly by orjson.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tradewire.core.errors import TradewireError, invalid
from tradewire.core.validation import map_key_subscript

from .fields import EXPECTED_FORMS, FLOAT_TYPES, INTEGER_TYPES, RANGES, SPECIAL_WKT, TYPE_NAMES, field_lookup, is_map

F = FieldDescriptor
JSON_CONTENT_TYPE = b"application/json"

# --- content type and body ---------------------------------------------------------------


def check_json_content_type(content_type: str | None) -> None:
    """``application/json`` with optional parameters (a charset must be UTF-8), else 415."""
    if content_type is None:
        raise TradewireError("UNSUPPORTED_MEDIA_TYPE", "missing Content-Type: send application/json")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        raise TradewireError(
            "UNSUPPORTED_MEDIA_TYPE", f"unsupported Content-Type {media.strip()!r}: send application/json"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise TradewireError("UNSUPPORTED_MEDIA_TYPE", f"unsupported charset {value.strip()!r}: send UTF-8")


def _too_large(limit: int) -> TradewireError:
    return TradewireError("PAYLOAD_TOO_LARGE", f"request body exceeds the limit of {limit} bytes")


async def read_body(receive: Callable[[], Awaitable[dict]], content_length: str | None, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed ``limit``:
    from Content-Length before reading anything, else while counting the chunks."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise TradewireError("MALFORMED_REQUEST", "invalid Content-Length header") from None
        if declared > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise TradewireError("CANCELLED", "client disconnected while sending the request")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TradewireError("MALFORMED_REQUEST", f"request body is not valid JSON: {exc}") from None
    if isinstance(doc, dict | list):
        # orjson keeps the last of repeated keys without a word; the standard library's
        # parser shows them (a second pass of a few µs, on a body orjson found valid).
        json.loads(body, object_pairs_hook=_refuse_repeated_keys)
    return doc


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise invalid(repeated, "appears more than once in one JSON object; send each field once",
                      reason="MALFORMED_REQUEST")
    return obj


# --- decoding ------------------------------------------------------------------------------


def merge_json(obj: Any, message, field: FieldDescriptor | None = None) -> None:
    """Parses decoded JSON into a fresh ``message`` (the whole message, or one top-level
    field of it for ``body: "field"``); raises a 400 naming the offending field."""
    desc = message.DESCRIPTOR
    if field is None:
        if not isinstance(obj, dict):
            raise TradewireError("MALFORMED_REQUEST", f"request body must be a JSON object, got {_kind(obj)}")
        doc = obj
    else:
        doc = {field.name: obj}
    try:
        json_format.ParseDict(doc, message)
    except Exception as exc:  # ParseError, and the odd TypeError/RecursionError on hostile input
        found = diagnose(doc, desc)
        if found is None:
            found = ("", _clean_parse_error(str(exc)))
        path, description = found
        if path:
            raise invalid(path, description, reason="MALFORMED_REQUEST") from None
        raise TradewireError("MALFORMED_REQUEST", description) from None


def _clean_parse_error(text: str) -> str:
    text = text.split("\n", 1)[0]
    return re.sub(r"\s+", " ", text).strip().rstrip(".") or "invalid request body"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def diagnose(obj: Any, desc: Descriptor, path: str = "") -> tuple[str, str] | None:
    """The first (field path, problem) in ``obj`` as JSON for ``desc``; None if none found."""
    if desc.full_name in SPECIAL_WKT:
        try:
            json_format.ParseDict(obj, message_factory.GetMessageClass(desc)())
        except Exception as exc:
            expected = EXPECTED_FORMS.get(desc.full_name)
            if expected is not None:
                return path, f"expected {expected}, got {json.dumps(obj)}"
            return path, f"invalid {desc.full_name}: {_clean_parse_error(str(exc))}"
        return None
    if not isinstance(obj, dict):
        return path, f"expected an object ({desc.full_name}), got {_kind(obj)}"
    lookup = field_lookup(desc)
    oneofs: dict[str, str] = {}
    for key, value in obj.items():
        fd = lookup.get(key)
        if fd is None:
            return _join(path, str(key)), f"unknown field {key!r} in {desc.full_name}"
        fpath = _join(path, fd.name)
        if value is None:
            continue
        oneof = fd.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            other = oneofs.setdefault(oneof.name, fd.name)
            if other != fd.name:
                return fpath, f"{fd.name} and {other} are alternatives (oneof {oneof.name}); set one"
        if is_map(fd):
            if not isinstance(value, dict):
                return fpath, f"expected an object (map), got {_kind(value)}"
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                problem = _check_map_key(key_fd, k)
                if problem:
                    return fpath + map_key_subscript(k), problem
                found = _check_value(v, value_fd, fpath + map_key_subscript(k))
                if found:
                    return found
        elif fd.is_repeated:
            if not isinstance(value, list):
                return fpath, f"expected an array, got {_kind(value)}"
            for i, item in enumerate(value):
                found = _check_value(item, fd, f"{fpath}[{i}]")
                if found:
                    return found
        else:
            found = _check_value(value, fd, fpath)
            if found:
                return found
    return None


def _check_map_key(key_fd: FieldDescriptor, key: str) -> str | None:
    if key_fd.type == F.TYPE_BOOL:
        return None if key in ("true", "false") else f"map key must be true or false, got {key!r}"
    if key_fd.type in INTEGER_TYPES:
        return _check_int(key_fd.type, key)
    return None


def _check_int(fd_type: int, value: Any) -> str | None:
    if isinstance(value, bool):
        return f"expected an integer ({TYPE_NAMES[fd_type]}), got a boolean"
    if isinstance(value, float):
        if not value.is_integer():
            return f"expected an integer ({TYPE_NAMES[fd_type]}), got {value!r}"
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value, 10)
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                return f"expected an integer ({TYPE_NAMES[fd_type]}), got {value!r}"
            if not f.is_integer():
                return f"expected an integer ({TYPE_NAMES[fd_type]}), got {value!r}"
            value = int(f)
    elif not isinstance(value, int):
        return f"expected an integer ({TYPE_NAMES[fd_type]}), got {_kind(value)}"
    lo, hi = RANGES[fd_type]
    if not lo <= value <= hi:
        return f"{value} is out of range for {TYPE_NAMES[fd_type]}"
    return None


def _check_value(value: Any, fd: FieldDescriptor, path: str) -> tuple[str, str] | None:
    t = fd.type
    if t == F.TYPE_MESSAGE:
        if value is None and fd.message_type.full_name != "google.protobuf.Value":
            return None
        return diagnose(value, fd.message_type, path)
    if value is None:
        return path, "null is not allowed here"
    if t == F.TYPE_STRING:
        return None if isinstance(value, str) else (path, f"expected a string, got {_kind(value)}")
    if t == F.TYPE_BOOL:
        return None if isinstance(value, bool) else (path, f"expected true or false, got {_kind(value)}")
    if t in INTEGER_TYPES:
        problem = _check_int(t, value)
        return (path, problem) if problem else None
    if t in FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return path, f"expected a number, got {_kind(value)}"
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                return path, f"expected a number, got {value!r}"
            if math.isnan(f) and value != "NaN":
                return path, f"expected a number, got {value!r}"
        return None
    if t == F.TYPE_ENUM:
        if isinstance(value, str):
            if value in fd.enum_type.values_by_name:
                return None
            return path, f"{value!r} is not a value of {fd.enum_type.full_name}"
        if isinstance(value, int) and not isinstance(value, bool):
            return None if -(2**31) <= value < 2**31 else (path, f"{value} is out of range for an enum")
        return path, f"expected an enum name or number ({fd.enum_type.full_name}), got {_kind(value)}"
    if t == F.TYPE_BYTES:
        if not isinstance(value, str):
            return path, f"expected a base64 string, got {_kind(value)}"
        try:
            base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return path, "expected a base64 string"
        return None
    return None


# --- encoding ------------------------------------------------------------------------------


def to_dict(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def encode_message(message) -> bytes:
    return orjson.dumps(to_dict(message))
