"""core/protojson.py against google.protobuf.json_format: the same JSON for every contract
message, both ways, populated to the edges of each field's type and left empty."""

import itertools

import orjson
import pytest
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor as F
from google.rpc import status_pb2

from tradewire.core import protojson
from tradewire.v1 import service_pb2, trade_pb2

def _contract_messages():
    for module in (trade_pb2, service_pb2):
        for desc in module.DESCRIPTOR.message_types_by_name.values():
            yield getattr(module, desc.name)


# Per scalar type, values at the edges of what proto3 JSON prints differently.
_SAMPLES = {
    F.TYPE_STRING: ["", "réservé ✓ \u2028 \"quoted\" \\ \n", "x" * 300],
    F.TYPE_BYTES: [b"", b"\x00\xff binary"],
    F.TYPE_BOOL: [False, True],
    F.TYPE_INT32: [0, -1, 2**31 - 1, -(2**31)],
    F.TYPE_SINT32: [0, -(2**31)],
    F.TYPE_SFIXED32: [0, -5],
    F.TYPE_UINT32: [0, 2**32 - 1],
    F.TYPE_FIXED32: [0, 2**32 - 1],
    F.TYPE_INT64: [0, -(2**63), 2**63 - 1],  # strings in JSON
    F.TYPE_SINT64: [0, -(2**63)],
    F.TYPE_SFIXED64: [0, -7],
    F.TYPE_UINT64: [0, 2**64 - 1, 10**9],
    F.TYPE_FIXED64: [0, 2**64 - 1],
    F.TYPE_DOUBLE: [0.0, -1.5, 1e300, float("inf")],
    F.TYPE_FLOAT: [0.0, 0.25, float("-inf")],
}


def _timestamp(variant: int) -> timestamp_pb2.Timestamp:
    # Whole seconds, millis, micros and nanos each print with a different number of digits.
    seconds, nanos = [(0, 0), (1_764_000_000, 120_000_000), (253_402_300_799, 999_999_999), (1, 1_000)][variant % 4]
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _fill(message, variant: int, depth: int = 0):
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            entries = getattr(message, name)
            for i in range(variant % 3):
                key = _sample(key_field, variant + i) or f"k{i}"
                if value_field.message_type is not None:
                    _fill(entries[key], variant + i, depth + 1)
                else:
                    entries[key] = _sample(value_field, variant + i)
        elif field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                targets = ([getattr(message, name).add() for _ in range(2)] if field.is_repeated
                           else [getattr(message, name)])
                for i, target in enumerate(targets):
                    target.CopyFrom(_timestamp(variant + i))
            elif depth < 3 and (variant + depth) % 4 != 3:  # some submessages left unset
                if field.is_repeated:
                    for i in range(1 + variant % 3):
                        _fill(getattr(message, name).add(), variant + i, depth + 1)
                else:
                    _fill(getattr(message, name), variant, depth + 1)
        elif field.is_repeated:
            getattr(message, name).extend(_sample(field, variant + i) for i in range(variant % 3))
        elif field.containing_oneof is None or variant % 2:
            setattr(message, name, _sample(field, variant))
    return message


def _sample(field, variant: int):
    if field.enum_type is not None:
        numbers = [v.number for v in field.enum_type.values]
        return numbers[variant % len(numbers)]
    samples = _SAMPLES[field.type]
    return samples[variant % len(samples)]


CASES = [
    pytest.param(cls, variant, id=f"{cls.DESCRIPTOR.name}-{variant}")
    for cls, variant in itertools.product(_contract_messages(), range(6))
]


@pytest.mark.parametrize(("cls", "variant"), CASES)
def test_prints_what_json_format_prints(cls, variant):
    message = _fill(cls(), variant) if variant else cls()
    expected = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    assert orjson.loads(protojson.to_json(message)) == expected
    sparse = json_format.MessageToDict(message)
    assert orjson.loads(protojson.to_json(message, emit_unpopulated=False)) == sparse


@pytest.mark.parametrize(("cls", "variant"), CASES)
def test_reads_what_json_format_prints(cls, variant):
    message = _fill(cls(), variant) if variant else cls()
    for printed in (json_format.MessageToDict(message, always_print_fields_with_no_presence=True),
                    json_format.MessageToDict(message, preserving_proto_field_name=True)):
        parsed = cls()
        protojson.merge_json_value(printed, parsed)
        assert parsed == message


def test_every_contract_message_is_covered_natively():
    missing = [cls.DESCRIPTOR.full_name for cls in _contract_messages()
               if cls.DESCRIPTOR.full_name not in protojson._CLASSES]
    assert not missing


def test_a_message_outside_the_contract_still_converts():
    status = status_pb2.Status(code=3, message="bad")
    assert orjson.loads(protojson.to_json(status)) == {"code": 3, "message": "bad", "details": []}
    parsed = status_pb2.Status()
    protojson.merge_json_value({"code": 5}, parsed)
    assert parsed.code == 5


def test_refuses_what_proto3_json_does_not_allow():
    for bad in ({"slippageBps": "abc"}, {"mode": "NOT_A_MODE"}, {"noSuchField": 1}, {"deadline": "yesterday"}):
        with pytest.raises(json_format.ParseError):
            protojson.merge_json_value(bad, trade_pb2.TradeRequest())
        with pytest.raises(json_format.ParseError):
            protojson.merge_json(orjson.dumps(bad), trade_pb2.TradeRequest())


def test_reads_what_json_format_read_where_protobuf_py_is_stricter():
    # An enum's number as a string: json_format takes it, protobuf-py does not.
    for merge, body in ((protojson.merge_json_value, {"mode": "1"}), (protojson.merge_json, b'{"mode": "1"}')):
        message = trade_pb2.TradeRequest()
        merge(body, message)
        assert message.mode == trade_pb2.TRADING_MODE_PAPER
