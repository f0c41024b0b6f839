"""Query parameters → request message, by grpc-gateway's rules.

Every field that is neither bound by the path nor covered by ``body`` may be set from the
query string: dotted names (JSON or proto name per segment) reach into nested messages,
repeated fields take repeated keys, maps take ``field[key]=value``, enums accept a name or
a number, Timestamp is RFC 3339 and Duration ``1.5s``. An unknown name or a repeated
non-repeated key is a 400 that names the parameter. All accepted names are enumerated at
build time, so a request does one dict lookup per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tradewire.core.errors import TradewireError, invalid

from .fields import SPECIAL_WKT, BindError, assign_leaf, is_leaf, is_map, parse_scalar

MAX_PARAMS = 256
_MAX_DEPTH = 6


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
        self.bound_elsewhere: dict[str, str] = {}
        for name, qf in every.items():
            owner = "the request body" if body == "*" else None
            for path, who in owners.items():
                if qf.path == path or qf.path.startswith(path + "."):
                    owner = who
            if owner:
                self.bound_elsewhere[name] = owner
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
        seen: set[str] = set()
        for name, value in pairs:
            key = name
            map_key = None
            if name.endswith("]") and "[" in name:
                key, _, rest = name.partition("[")
                map_key = rest[:-1]
            qf = self.fields.get(key)
            if qf is None:
                owner = self.bound_elsewhere.get(key)
                if owner:
                    raise invalid(name, f"query parameter {name!r} is not allowed: the field is set by {owner}",
                                  reason="MALFORMED_REQUEST")
                raise invalid(name, f"unknown query parameter {name!r}", reason="MALFORMED_REQUEST")
            leaf = qf.leaf
            if (map_key is None) == is_map(leaf):
                hint = f"use {key}[KEY]=VALUE" if map_key is None else f"{key} is not a map"
                raise invalid(name, f"bad query parameter {name!r}: {hint}", reason="MALFORMED_REQUEST")
            canonical = qf.path if map_key is None else f"{qf.path}[{map_key}]"
            if canonical in seen and not (leaf.is_repeated and map_key is None):
                raise invalid(name, f"duplicate query parameter {name!r}", reason="MALFORMED_REQUEST")
            seen.add(canonical)
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
                if map_key is None:
                    assign_leaf(container, leaf, value)
                else:
                    entry = leaf.message_type
                    k = parse_scalar(entry.fields_by_name["key"], map_key)
                    value_fd = entry.fields_by_name["value"]
                    if not is_leaf(value_fd) or value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                        raise BindError("map values of message type cannot be set from the query string")
                    getattr(container, leaf.name)[k] = parse_scalar(value_fd, value)
            except BindError as exc:
                raise invalid(qf.path, f"query parameter {name!r}: {exc}", reason="MALFORMED_REQUEST") from None
        return seen
