"""Descriptor helpers shared by path binding, query binding, JSON decoding and OpenAPI.

Everything here is computed from descriptors once (cached per message type) so the
per-request work is dictionary lookups and one conversion per value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from decimal import Decimal
from functools import lru_cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tradewire.core.errors import shortened

F = FieldDescriptor

INT32_TYPES = frozenset({F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32})
UINT32_TYPES = frozenset({F.TYPE_UINT32, F.TYPE_FIXED32})
INT64_TYPES = frozenset({F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64})
UINT64_TYPES = frozenset({F.TYPE_UINT64, F.TYPE_FIXED64})
INTEGER_TYPES = INT32_TYPES | UINT32_TYPES | INT64_TYPES | UINT64_TYPES
FLOAT_TYPES = frozenset({F.TYPE_FLOAT, F.TYPE_DOUBLE})

RANGES = {
    **{t: (-(2**31), 2**31 - 1) for t in INT32_TYPES},
    **{t: (0, 2**32 - 1) for t in UINT32_TYPES},
    **{t: (-(2**63), 2**63 - 1) for t in INT64_TYPES},
    **{t: (0, 2**64 - 1) for t in UINT64_TYPES},
}

TYPE_NAMES = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}

# Well-known types whose JSON form is a scalar: they are leaves for path/query binding.
WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
SCALAR_WKT = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}) | WRAPPERS
# Well-known types with a special JSON mapping (never walked field by field).
SPECIAL_WKT = SCALAR_WKT | frozenset(
    {"google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
     "google.protobuf.Empty"}
)


class BindError(ValueError):
    """A value that cannot be converted for a field; the message says why (no field name)."""


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_in_path(name: str) -> str:
    """A name the client sent that is no field, as it appears in a field path: as sent when it
    looks like a field name, else quoted as JSON (an empty or odd name must stay visible); a long
    one shortened."""
    name = shortened(name)
    return name if _PLAIN_NAME.fullmatch(name) else json.dumps(name)


def is_map(fd: FieldDescriptor) -> bool:
    return fd.type == F.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def is_message(fd: FieldDescriptor) -> bool:
    return fd.type == F.TYPE_MESSAGE


def is_leaf(fd: FieldDescriptor) -> bool:
    """A field whose value can be written as text (path variable or query value)."""
    return fd.type != F.TYPE_MESSAGE or fd.message_type.full_name in SCALAR_WKT


@lru_cache(maxsize=None)
def field_lookup(desc: Descriptor) -> dict[str, FieldDescriptor]:
    """Field by JSON name and by proto name (both are accepted everywhere)."""
    out: dict[str, FieldDescriptor] = {}
    for fd in desc.fields:
        out[fd.name] = fd
        out.setdefault(fd.json_name, fd)
    return out


def resolve_field_path(desc: Descriptor, dotted: str) -> tuple[FieldDescriptor, ...]:
    """``a.b.c`` (proto names, as in path templates and ``body``) → the field chain."""
    chain: list[FieldDescriptor] = []
    current: Descriptor | None = desc
    for part in dotted.split("."):
        if current is None:
            raise ValueError(f"{dotted!r}: {chain[-1].name} is not a message")
        fd = current.fields_by_name.get(part)
        if fd is None:
            raise ValueError(f"{dotted!r}: {current.full_name} has no field {part!r}")
        if chain and (chain[-1].is_repeated):
            raise ValueError(f"{dotted!r}: {chain[-1].name} is repeated")
        chain.append(fd)
        current = fd.message_type if fd.type == F.TYPE_MESSAGE and fd.message_type.full_name not in SPECIAL_WKT else None
    return tuple(chain)


# An integer written as text (a JSON string, a query value, a path segment): proto3 JSON's
# form, a JSON number whose fraction or exponent leaves a whole value ("10", "1e2", "1.0").
# Python's int() and float() would also take "+5", " 5", "1_0" and "inf": the JSON body
# must not, so neither may the query string.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DECIMAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def check_int_range(fd_type: int, value: int) -> int:
    lo, hi = RANGES[fd_type]
    if not lo <= value <= hi:
        raise BindError(f"{value} is out of range for {TYPE_NAMES[fd_type]}")
    return value


def parse_int_text(fd_type: int, text: str) -> int:
    """An integer field's value from text, as the proto3 JSON mapping reads a string."""
    expected = f"expected an integer ({TYPE_NAMES[fd_type]}), got {text!r}"
    if not _JSON_NUMBER.fullmatch(text):
        raise BindError(expected)
    if _DECIMAL_INT.fullmatch(text):
        if len(text) > 21:  # past every 64-bit value (and int()'s digit limit)
            raise BindError(f"{text[:24]}... is out of range for {TYPE_NAMES[fd_type]}")
        return check_int_range(fd_type, int(text))
    number = float(text)  # "1e2", "1.0": whole values only, as protobuf's parsers read them
    if not number.is_integer() or not _whole(text):
        raise BindError(expected)
    check_exactly_read(fd_type, number)
    return check_int_range(fd_type, int(number))


def _whole(text: str) -> bool:
    """The number written is whole: a double would read "5.0000000000000000001" as 5 and "1e-400"
    as 0 (Decimal reads the text exactly)."""
    number = Decimal(text)
    return number == number.to_integral_value()


class RoundedToWhole(float):
    """A JSON number a double reads as whole though it is not ("5.0000000000000000001",
    "1e-400"): fine for a double field, refused by an integer field (``text``: as written)."""

    __slots__ = ("text",)


def read_json_float(text: str) -> float:
    """A JSON number with a fraction or an exponent, as the body's parser reads it."""
    number = float(text)
    if number.is_integer() and not _whole(text):
        number = RoundedToWhole(number)
        number.text = text
    return number


# From 2^53 on, a number with a fraction or an exponent is read as a double, which rounds it
# (9007199254740993.0 would be 9007199254740992): refused rather than changed. Plain digits
# are read exactly at any size.
EXACT_DOUBLE_LIMIT = 2**53


def check_exactly_read(fd_type: int, number: float) -> None:
    if not -EXACT_DOUBLE_LIMIT < number < EXACT_DOUBLE_LIMIT:
        raise BindError(f"{TYPE_NAMES[fd_type]} beyond 2^53 written with a fraction or an exponent cannot be "
                        f"read exactly; write it as plain digits (a number or a string)")


def check_enum_number(fd: FieldDescriptor, number: int) -> int:
    """A number for an enum field. One the enum does not define is kept when the enum is open
    (proto3): validation refuses it then, with the same words as on every other protocol."""
    if not -(2**31) <= number < 2**31:
        raise BindError(f"{number} is out of range for an enum")
    if fd.enum_type.is_closed and number not in fd.enum_type.values_by_number:
        raise BindError(f"{number} is not a value of {fd.enum_type.full_name}")
    return number


def parse_enum_text(fd: FieldDescriptor, text: str) -> int:
    """An enum value's number from its name or a decimal integer."""
    value = fd.enum_type.values_by_name.get(text)
    if value is not None:
        return value.number
    if not _DECIMAL_INT.fullmatch(text):
        raise BindError(f"{text!r} is not a value of {fd.enum_type.full_name}")
    if len(text) > 12:
        raise BindError(f"{text[:24]} is out of range for an enum")
    return check_enum_number(fd, int(text))


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise BindError(f"expected true or false, got {text!r}")


def parse_float_text(text: str) -> float:
    """A float field's value from text: a JSON number, or NaN / Infinity / -Infinity."""
    if text in _FLOAT_WORDS:
        return float(text)
    if not _JSON_NUMBER.fullmatch(text):
        raise BindError(f"expected a number, got {text!r}")
    return float(text)


def decode_base64(text: str) -> bytes:
    """A bytes value as proto3 JSON writes it: standard or URL-safe base64 (one alphabet, as
    Go's protojson reads it), padded or not. Anything else is a BindError: a lenient decoder
    would drop what it does not know ("YWJj!" → b"abc", "!!!!" → b"")."""
    urlsafe = "-" in text or "_" in text
    if urlsafe and ("+" in text or "/" in text):
        raise BindError("expected base64 in one alphabet, standard (+/) or URL-safe (-_)")
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BindError("expected base64") from None


def parse_scalar(fd: FieldDescriptor, text: str):
    """Text (a path segment or query value) → the Python value for a non-message field."""
    t = fd.type
    if t == F.TYPE_STRING:
        return text
    if t in INTEGER_TYPES:
        return parse_int_text(t, text)
    if t == F.TYPE_BOOL:
        return _parse_bool(text)
    if t == F.TYPE_ENUM:
        return parse_enum_text(fd, text)
    if t in FLOAT_TYPES:
        return parse_float_text(text)
    if t == F.TYPE_BYTES:
        return decode_base64(text)
    raise BindError(f"cannot bind a {fd.type} field from text")  # pragma: no cover - guarded at build


# What a well-known type's JSON string must look like, as errors say it.
EXPECTED_FORMS = {"google.protobuf.Timestamp": "an RFC 3339 timestamp like '2026-01-01T00:00:00Z'",
                  "google.protobuf.Duration": "a duration like '1.5s'"}


# RFC 3339 as proto3 JSON takes it: zero-padded ASCII digits, upper-case T and Z, 0-9
# fractional digits, an offset of at most 23:59. protobuf's FromJsonString is looser
# ("2026-1-1", full-width digits, "+24:00", "00.Z"); it still checks the ranges after this.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)", re.ASCII)


def set_timestamp(target, text: str) -> None:
    """``target`` (a Timestamp) from RFC 3339 text; ValueError for anything else."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError("not an RFC 3339 timestamp")
    target.FromJsonString(text)


def set_wkt_from_text(target, full_name: str, text: str) -> None:
    """Timestamp (RFC 3339), Duration (``1.5s``), FieldMask (``a,b.c``) and wrappers."""
    if full_name == "google.protobuf.Timestamp":
        try:
            set_timestamp(target, text)
        except ValueError:
            # '+' in a query string arrives as a space: "…T10:00:00 02:00".
            fixed = text.replace(" ", "+")
            try:
                set_timestamp(target, fixed)
            except ValueError:
                raise BindError(f"expected {EXPECTED_FORMS[full_name]}, got {text!r}") from None
        return
    if full_name == "google.protobuf.Duration":
        try:
            target.FromJsonString(text)
        except ValueError:
            raise BindError(f"expected {EXPECTED_FORMS[full_name]}, got {text!r}") from None
        return
    if full_name == "google.protobuf.FieldMask":
        try:
            target.FromJsonString(text)
        except ValueError:
            raise BindError(f"expected field paths like 'a,b.c', got {text!r}") from None
        return
    value_fd = target.DESCRIPTOR.fields_by_name["value"]
    target.value = parse_scalar(value_fd, text)


def assign_leaf(container, fd: FieldDescriptor, text: str) -> None:
    """Sets (or appends, for repeated fields) ``text`` converted for ``fd`` on ``container``."""
    if fd.type == F.TYPE_MESSAGE:
        full_name = fd.message_type.full_name
        if fd.is_repeated:
            set_wkt_from_text(getattr(container, fd.name).add(), full_name, text)
        else:
            set_wkt_from_text(getattr(container, fd.name), full_name, text)
        return
    value = parse_scalar(fd, text)
    if fd.is_repeated:
        getattr(container, fd.name).append(value)
    else:
        setattr(container, fd.name, value)


__all__ = [
    "BindError", "field_lookup", "resolve_field_path", "parse_scalar", "assign_leaf", "is_leaf", "is_map",
    "decode_base64", "parse_int_text", "check_exactly_read", "parse_enum_text", "check_enum_number",
    "parse_float_text", "check_int_range",
    "name_in_path", "is_message", "SPECIAL_WKT", "SCALAR_WKT", "WRAPPERS", "TYPE_NAMES", "INTEGER_TYPES", "INT64_TYPES",
    "UINT64_TYPES", "UINT32_TYPES", "INT32_TYPES", "FLOAT_TYPES", "RANGES",
]
