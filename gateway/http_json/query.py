"""Query parameters → request message, by grpc-gateway's rules.

Every field that is neither bound by the path nor covered by ``body`` may be set from the
query string: dotted names (JSON or proto name per segment) reach into nested messages,
repeated fields take repeated keys, maps take ``field[key]=value``, enums accept a name or
a number, Timestamp is RFC 3339 and Duration ``1.5s``. Values are read as the JSON body
reads them (fields.py), and errors name the field as the body's do (its proto path, with
``[i]`` for the i-th value of a repeated field), so a query gets the same answer as the
same request in a body. An unknown name, or one field set twice (under one name or its two),
is a 400. All accepted names are enumerated at build time, so a request does one dict
lookup per parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tradewire.core.audit.events import redacted
from tradewire.core.errors import TradewireError, invalid, shortened
from tradewire.core.validation import map_key_subscript

from .fields import SPECIAL_WKT, BindError, assign_leaf, is_leaf, is_map, parse_scalar

MAX_PARAMS = 256
_MAX_DEPTH = 6
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\[[^\]]*\])?")


@dataclass(frozen=True)
class QueryField:
    chain: tuple[FieldDescriptor, ...]
    path: str  # canonical proto path, e.g. "mev_protection.strategy"

    @property
    def leaf(self) -> FieldDescriptor:
        return self.chain[-1]


def _walk(desc: Descriptor, prefix_names: list[tuple[str, ...]], chain: tuple, depth: int, out: dict, seen: frozenset):
    for fd in desc.fields:
        names = (fd.name,) if fd.json_name == fd.name else (fd.json_name, fd.name)
        full_chain = (*chain, fd)
        combos = [(*p, n) for p in prefix_names for n in names]
        if is_map(fd) or is_leaf(fd):
            qf = QueryField(full_chain, ".".join(f.name for f in full_chain))
            for combo in combos:
                out.setdefault(".".join(combo), qf)
        elif (
            not fd.is_repeated
            and fd.message_type.full_name not in SPECIAL_WKT
            and fd.message_type.full_name not in seen
            and depth < _MAX_DEPTH
        ):
            _walk(fd.message_type, combos, full_chain, depth + 1, out, seen | {fd.message_type.full_name})


def _alias_of(first: str, name: str) -> str:
    return "" if first == name else f" (the same field as {first!r})"


class QueryBinder:
    """Applies a query string to a request message for one binding."""

    def __init__(self, desc: Descriptor, path_fields: set[str], body: str) -> None:
        """``path_fields``: field paths bound by the template; ``body``: the rule's body."""
        every: dict[str, QueryField] = {}
        _walk(desc, [()], (), 0, every, frozenset({desc.full_name}))
        owners = {p: "the URL path" for p in path_fields}
        if body and body != "*":
            owners[body] = "the request body"
        self.fields: dict[str, QueryField] = {}
        self.bound_elsewhere: dict[str, tuple[str, str]] = {}  # name → (owner, field path)
        for name, qf in every.items():
            owner = "the request body" if body == "*" else None
            for path, who in owners.items():
                if qf.path == path or qf.path.startswith(path + "."):
                    owner = who
            if owner:
                self.bound_elsewhere[name] = (owner, qf.path)
            else:
                self.fields[name] = qf

    def apply(self, message, query_string: bytes) -> set[str]:
        """Sets fields from ``query_string``; returns the canonical paths it set."""
        if not query_string:
            return set()
        try:
            pairs = parse_qsl(
                query_string.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_PARAMS
            )
        except UnicodeDecodeError:
            raise TradewireError("MALFORMED_REQUEST", "query string is not valid UTF-8") from None
        except ValueError:
            raise TradewireError("MALFORMED_REQUEST", f"too many query parameters (at most {MAX_PARAMS})") from None
        seen: dict[str, str] = {}  # field (or map entry) → the name it was first sent under
        for name, value in pairs:
            key, map_key = name, None
            if name.endswith("]") and "[" in name:
                key, _, rest = name.partition("[")
                map_key = rest[:-1]
            qf = self._field(name, key)
            leaf = qf.leaf
            if (map_key is None) == is_map(leaf):
                hint = f"use {key}[KEY]=VALUE" if map_key is None else f"{key} is not a map"
                where = qf.path if map_key is None else f"{qf.path}[{map_key}]"
                raise invalid(where, f"bad query parameter {name!r}: {hint}", reason="MALFORMED_REQUEST")
            entry = qf.path if map_key is None else qf.path + map_key_subscript(map_key)
            first = seen.get(entry)
            if first is None:
                seen[entry] = name
            elif first != name or not (leaf.is_repeated and map_key is None):  # a list takes one key per value
                raise invalid(entry, f"duplicate query parameter {name!r}{_alias_of(first, name)}; "
                              "send each field once", reason="MALFORMED_REQUEST")
            self._set(message, qf, name, value, map_key)
        return set(seen)

    def _field(self, name: str, key: str) -> QueryField:
        """The field a parameter names; a 400 when it names none this binding takes."""
        qf = self.fields.get(key)
        if qf is not None:
            return qf
        elsewhere = self.bound_elsewhere.get(key)
        if elsewhere:
            owner, path = elsewhere
            raise invalid(path, f"query parameter {name!r} is not allowed: the field is set by {owner}",
                          reason="MALFORMED_REQUEST")
        short = shortened(name)
        shown = short if _PLAIN_NAME.fullmatch(short) else json.dumps(short)  # an empty name must show
        raise invalid(shown, f"unknown query parameter {short!r}", reason="MALFORMED_REQUEST")

    def _set(self, message, qf: QueryField, name: str, value: str, map_key: str | None) -> None:
        """Writes one value; a bad one is a 400 naming the field as the JSON body would."""
        leaf = qf.leaf
        path = qf.path
        container = message
        try:
            for fd in qf.chain:
                oneof = fd.containing_oneof
                if oneof is not None and len(oneof.fields) > 1:
                    current = container.WhichOneof(oneof.name)
                    if current is not None and current != fd.name:
                        raise BindError(f"{fd.name} and {current} are alternatives (oneof {oneof.name}); set one")
                if fd is not leaf:
                    container = getattr(container, fd.name)
            if map_key is not None:
                path = qf.path + map_key_subscript(map_key)
                entry = leaf.message_type
                k = parse_scalar(entry.fields_by_name["key"], map_key)
                value_fd = entry.fields_by_name["value"]
                if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                    raise BindError("map values of message type cannot be set from the query string")
                getattr(container, leaf.name)[k] = parse_scalar(value_fd, value)
                return
            if leaf.is_repeated:
                path = f"{qf.path}[{len(getattr(container, leaf.name))}]"
            assign_leaf(container, leaf, value)
        except BindError as exc:
            raise invalid(path, f"query parameter {name!r}: {redacted(str(exc))}", reason="MALFORMED_REQUEST") from None
