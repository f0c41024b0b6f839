"""JSON in and out: content type, bounded body reading, decoding with named errors, encoding.

Decoding checks the JSON against the descriptor first (``diagnose``: proto3 JSON rules,
camelCase or snake_case names), so every problem is named by its field path (proto names,
e.g. ``trades[1].slippage_bps``) in our words; then the proto3 JSON codec (core/protojson.py)
converts. The check runs on every body because json_format's ParseDict was lenient where a
client's mistake must not pass (``true`` or ``9.7`` for an enum, ``[]`` for a message,
``"1_0"`` for an integer, one field under both its names), and no parser names the field in
the client's terms. Responses are compact proto3 JSON with unpopulated fields emitted
(grpc-gateway's EmitUnpopulated), camelCase.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tradewire.core import protojson
from tradewire.core.errors import TradewireError, invalid, shortened
from tradewire.core.validation import map_key_subscript

from .fields import (
    EXPECTED_FORMS, FLOAT_TYPES, INTEGER_TYPES, SCALAR_WKT, SPECIAL_WKT, TYPE_NAMES, WRAPPERS, BindError,
    RoundedToWhole, check_enum_number, check_exactly_read, check_int_range, decode_base64, field_lookup, is_map,
    name_in_path, parse_enum_text, parse_float_text, parse_int_text, read_json_float, set_timestamp,
)

log = logging.getLogger("tradewire.gateway")

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


def _too_large(limit: int, when: str = "") -> TradewireError:
    return TradewireError("PAYLOAD_TOO_LARGE", f"request body exceeds the limit of {limit} bytes{when}")


def is_gzipped(content_encoding: str | None) -> bool:
    """True for ``Content-Encoding: gzip``; identity (or none) is False; anything else is 415,
    refused before the body is read."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return False
    if coding in ("gzip", "x-gzip"):
        return True
    raise TradewireError("UNSUPPORTED_MEDIA_TYPE",
                         f"unsupported Content-Encoding {content_encoding.strip()!r}: send gzip or identity")


def gunzip(body: bytes, limit: int, what: str = "the request body") -> bytes:
    """``body`` inflated (gzip, member after member as gzip.decompress reads them), refused as
    MALFORMED_REQUEST when it is not gzip or is cut short, and (413) once it inflates past
    ``limit``, as a plain body is. Shared by HTTP/JSON and Connect/gRPC-Web."""
    parts: list[bytes] = []
    size = 0
    while body:
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(body, limit - size + 1)
        except zlib.error:
            raise _not_gzip(what) from None
        size += len(part)
        if size > limit:
            raise _too_large(limit, " once decompressed")
        if not inflater.eof:
            raise _not_gzip(what, "is cut short")
        parts.append(part)
        body = inflater.unused_data.lstrip(b"\x00")  # (gzip.decompress's padding between members)
    return b"".join(parts)


def _not_gzip(what: str, how: str = "is not valid gzip") -> TradewireError:
    return TradewireError("MALFORMED_REQUEST", f"{what} is declared gzip-compressed but {how}")


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
    """The JSON document; a key repeated in one object is left for ``merge_json`` to refuse
    by its field path (the document then marks each such object)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TradewireError("MALFORMED_REQUEST", f"request body is not valid JSON: {exc}") from None
    if isinstance(doc, dict | list | float):
        # orjson keeps the last of repeated keys without a word, and reads a number as a double
        # only; the standard library's parser shows both (a second pass of a few µs, on a body
        # orjson found valid): its document is used when it shows either.
        repeats: list[_JsonObject] = []
        rounded: list[RoundedToWhole] = []

        def read_float(text: str) -> float:
            number = read_json_float(text)
            if isinstance(number, RoundedToWhole):
                rounded.append(number)
            return number

        try:
            marked = json.loads(body, object_pairs_hook=lambda pairs: _JsonObject.of(pairs, repeats),
                                parse_float=read_float)
        except RecursionError:  # orjson takes 1024 levels, this parser a few less
            raise TradewireError("MALFORMED_REQUEST", "request body is nested too deeply") from None
        if repeats and isinstance(marked, _JsonObject):
            marked.repeats_inside = True
        if repeats or rounded:
            return marked
    return doc


class _JsonObject(dict):
    """A JSON object that had a key more than once (``repeated``: the first such key)."""

    repeated: str | None = None
    repeats_inside = False

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]], repeats: list) -> dict:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            obj.repeated = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
            repeats.append(obj)
        return obj


_APPEARS_TWICE = "appears more than once in one JSON object; send each field once"


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
    found = diagnose(doc, desc)
    if found is not None:
        path, description = found
        raise invalid(path, description, reason="MALFORMED_REQUEST")
    if getattr(obj, "repeats_inside", False):  # inside a free-form value (Struct) the walk does not enter
        raise TradewireError("MALFORMED_REQUEST", f"a key {_APPEARS_TWICE}")
    try:
        protojson.merge_json_value(doc, message)
    except Exception as exc:  # what the check let through and protobuf refused: said in our words
        log.warning("JSON for %s passed the check but not the proto3 JSON parser: %s", desc.full_name, exc)
        raise TradewireError("MALFORMED_REQUEST", f"request body is not a valid {desc.full_name}") from None


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


_STRING_WKT = SCALAR_WKT - WRAPPERS  # Timestamp, Duration, FieldMask: a JSON string each
TIMESTAMP = "google.protobuf.Timestamp"


def diagnose(obj: Any, desc: Descriptor, path: str = "") -> tuple[str, str] | None:
    """The first (field path, problem) in ``obj`` as JSON for ``desc``; None if none found."""
    if desc.full_name in WRAPPERS:  # a wrapper's JSON is its value's
        return _check_value(obj, desc.fields_by_name["value"], path)
    if desc.full_name in _STRING_WKT:  # what ParseDict does for them, without its overhead (per request)
        target = message_factory.GetMessageClass(desc)()
        try:
            if desc.full_name == TIMESTAMP:
                set_timestamp(target, obj)
            else:
                target.FromJsonString(obj)
        except (ValueError, TypeError, AttributeError):
            expected = EXPECTED_FORMS.get(desc.full_name, f"{desc.full_name} in its JSON form")
            return path, f"expected {expected}, got {_shown(obj)}"
        return None
    if desc.full_name in SPECIAL_WKT:
        try:
            json_format.ParseDict(obj, message_factory.GetMessageClass(desc)())
        except Exception:
            expected = EXPECTED_FORMS.get(desc.full_name, f"{desc.full_name} in its JSON form")
            return path, f"expected {expected}, got {_shown(obj)}"
        return None
    if not isinstance(obj, dict):
        return path, f"expected an object ({desc.full_name}), got {_kind(obj)}"
    lookup = field_lookup(desc)
    repeated = getattr(obj, "repeated", None)
    if repeated is not None:
        fd = lookup.get(repeated)
        return _join(path, fd.name if fd else name_in_path(repeated)), f"{repeated!r} {_APPEARS_TWICE}"
    names: dict[str, str] = {}  # field → the name it was sent under
    oneofs: dict[str, str] = {}
    for key, value in obj.items():
        fd = lookup.get(key)
        if fd is None:
            return _join(path, name_in_path(key)), f"unknown field {shortened(key)!r} in {desc.full_name}"
        fpath = _join(path, fd.name)
        first = names.setdefault(fd.name, key)
        if first != key:
            return fpath, f"set twice, as {first!r} and {key!r} (one field); send each field once"
        if value is None:
            continue
        oneof = fd.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            other = oneofs.setdefault(oneof.name, fd.name)
            if other != fd.name:
                return fpath, f"{fd.name} and {other} are alternatives (oneof {oneof.name}); set one"
        found = _check_map(value, fd, fpath) if is_map(fd) else (
            _check_list(value, fd, fpath) if fd.is_repeated else _check_value(value, fd, fpath))
        if found:
            return found
    return None


def _check_map(value: Any, fd: FieldDescriptor, path: str) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return path, f"expected an object (map), got {_kind(value)}"
    repeated = getattr(value, "repeated", None)
    if repeated is not None:
        return path + map_key_subscript(repeated), f"{repeated!r} {_APPEARS_TWICE}"
    key_fd = fd.message_type.fields_by_name["key"]
    value_fd = fd.message_type.fields_by_name["value"]
    for k, v in value.items():
        problem = _check_map_key(key_fd, k)
        if problem:
            return path + map_key_subscript(k), problem
        found = _check_item(v, value_fd, path + map_key_subscript(k), "a map value")
        if found:
            return found
    return None


def _check_list(value: Any, fd: FieldDescriptor, path: str) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return path, f"expected an array, got {_kind(value)}"
    for i, item in enumerate(value):
        found = _check_item(item, fd, f"{path}[{i}]", "an array element")
        if found:
            return found
    return None


def _check_item(value: Any, fd: FieldDescriptor, path: str, what: str) -> tuple[str, str] | None:
    """An array element or map value: null is no value there (but google.protobuf.Value's)."""
    if value is None and not (fd.type == F.TYPE_MESSAGE and fd.message_type.full_name == "google.protobuf.Value"):
        return path, f"null is not allowed as {what}; leave the item out"
    return _check_value(value, fd, path)


def _check_map_key(key_fd: FieldDescriptor, key: str) -> str | None:
    if key_fd.type == F.TYPE_BOOL:
        return None if key in ("true", "false") else f"map key must be true or false, got {key!r}"
    if key_fd.type in INTEGER_TYPES:
        return _check_int(key_fd.type, key)
    return None


def _check_int(fd_type: int, value: Any) -> str | None:
    """Numbers with no fraction (1, 1.0, 1e2) or the same written as a string (proto3 JSON)."""
    try:
        if isinstance(value, str):
            parse_int_text(fd_type, value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected an integer ({TYPE_NAMES[fd_type]}), got {_kind(value)}"
        elif isinstance(value, RoundedToWhole):
            return f"expected an integer ({TYPE_NAMES[fd_type]}), got {value.text}"
        elif isinstance(value, float) and not value.is_integer():
            return f"expected an integer ({TYPE_NAMES[fd_type]}), got {value!r}"
        elif isinstance(value, float) and not -(2**64) < value < 2**64:
            return f"{value!r} is out of range for {TYPE_NAMES[fd_type]}"
        else:
            if isinstance(value, float):
                check_exactly_read(fd_type, value)
            check_int_range(fd_type, int(value))
    except BindError as exc:
        return str(exc)
    return None


def _check_enum(fd: FieldDescriptor, value: Any) -> str | None:
    """A name, an integer, or an integer as a string; never true/false nor a float, which
    protobuf would take as int(value) (true → 1, 9.7 → 9)."""
    if isinstance(value, str):
        try:
            parse_enum_text(fd, value)
        except BindError as exc:
            return str(exc)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            check_enum_number(fd, value)
        except BindError as exc:
            return str(exc)
        return None
    shown = repr(value) if isinstance(value, float) else _kind(value)
    return f"expected an enum name or integer ({fd.enum_type.full_name}), got {shown}"


def _check_value(value: Any, fd: FieldDescriptor, path: str) -> tuple[str, str] | None:
    t = fd.type
    if t == F.TYPE_MESSAGE:
        if value is None and fd.message_type.full_name != "google.protobuf.Value":
            return None
        return diagnose(value, fd.message_type, path)
    if value is None:
        return path, "null is not allowed here"
    problem: str | None = None
    if t == F.TYPE_STRING:
        problem = None if isinstance(value, str) else f"expected a string, got {_kind(value)}"
    elif t == F.TYPE_BOOL:
        problem = None if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"
    elif t in INTEGER_TYPES:
        problem = _check_int(t, value)
    elif t in FLOAT_TYPES:
        problem = _check_float(value)
    elif t == F.TYPE_ENUM:
        problem = _check_enum(fd, value)
    elif t == F.TYPE_BYTES:
        problem = _check_bytes(value)
    return (path, problem) if problem else None


def _check_float(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            parse_float_text(value)
        except BindError as exc:
            return str(exc)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {_kind(value)}"
    return None


def _check_bytes(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a base64 string, got {_kind(value)}"
    try:
        decode_base64(value)
    except BindError:
        return "expected a base64 string (standard or URL-safe alphabet)"
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- encoding ------------------------------------------------------------------------------


def to_dict(message) -> dict[str, Any]:
    return orjson.loads(encode_message(message))


def encode_message(message) -> bytes:
    return protojson.to_json(message)
