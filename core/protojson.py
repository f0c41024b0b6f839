"""Proto3 JSON for the contract's messages, by protobuf-py's native codec.

google.protobuf's ``json_format`` is pure Python: on this machine ~50 µs to print one
TradeResult, ~50 µs to parse one TradeRequest, 20 ms for a 500-trade history page (a page
that held the event loop long enough to slow every other HTTP caller). protobuf-py (Buf's
runtime, already installed for protovalidate) does the same work in its native extension,
5–10× faster, to the same JSON (tests/unit/test_protojson.py compares the two on every
contract message). A message crosses between the two runtimes in its binary form, which
both read and write natively.

Messages outside the contract are left to ``json_format``, as before.
"""

from __future__ import annotations

from typing import Any

import orjson
import protobuf
from google.protobuf import json_format
from google.protobuf.message import Message

from tradewire.protobuf_py.tradewire.v1 import service_pb, trade_pb


def _contract_classes() -> dict[str, type[protobuf.Message]]:
    classes: dict[str, type[protobuf.Message]] = {}
    for module in (trade_pb, service_pb):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, protobuf.Message) and value is not protobuf.Message:
                classes[value.desc().type_name] = value
    return classes


_CLASSES = _contract_classes()


def to_json(message: Message, *, emit_unpopulated: bool = True) -> bytes:
    """Compact proto3 JSON, camelCase names, enums by name; with ``emit_unpopulated`` every
    field without presence is printed (grpc-gateway's EmitUnpopulated), as ``json_format``
    prints with ``always_print_fields_with_no_presence``."""
    twin_class = _CLASSES.get(message.DESCRIPTOR.full_name)
    if twin_class is None:
        return orjson.dumps(json_format.MessageToDict(message, always_print_fields_with_no_presence=emit_unpopulated))
    return twin_class.from_binary(message.SerializeToString()).to_json(always_emit_implicit=emit_unpopulated).encode()


def merge_json(data: bytes, message: Message) -> None:
    """Merges proto3 JSON text into ``message``; raises on what neither codec reads."""
    twin_class = _CLASSES.get(message.DESCRIPTOR.full_name)
    if twin_class is not None:
        try:
            message.MergeFromString(twin_class.from_json(data).to_binary())
            return
        except (ValueError, TypeError):
            pass  # (see _LENIENT)
    json_format.Parse(data, message)


def merge_json_value(value: dict[str, Any], message: Message) -> None:
    """Merges proto3 JSON, already decoded, into ``message``; raises on what neither codec
    reads — callers check and name fields before this."""
    twin_class = _CLASSES.get(message.DESCRIPTOR.full_name)
    if twin_class is not None:
        try:
            message.MergeFromString(protobuf.message_from_json_value(twin_class, value).to_binary())
            return
        except (ValueError, TypeError):
            pass  # (see _LENIENT)
    json_format.ParseDict(value, message)


# _LENIENT: protobuf-py refuses a few spellings json_format reads (an enum's number as a
# string, "1"): what it refuses is read by json_format as before, so no request the gateway
# took is refused now; what json_format refuses too is the caller's error.
