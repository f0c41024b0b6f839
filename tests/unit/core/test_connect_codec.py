"""Connect JSON is served by core/protojson.py once the Connect app is built: compact JSON
connect-python's registry hands to every JSON call (GET, unary and streams alike)."""

import json

import connectrpc._codec as connect_codecs
from google.protobuf import json_format

from tradewire.gateway import connect_codec
from tradewire.v1 import trade_pb2


def test_install_serves_json_calls_from_connect_pythons_registry():
    connect_codec.install()
    for name in ("json", "json; charset=utf-8"):
        assert isinstance(connect_codecs.get_codec(name), connect_codec.ProtoJsonCodec)
    assert connect_codecs.get_codec("proto") is connect_codecs.get_proto_binary_codec()


def test_encodes_compactly_what_connect_python_encoded():
    result = trade_pb2.TradeResult(request_id="r-1", status=trade_pb2.TRADE_STATUS_FILLED, slot=2**63,
                                   client_metadata={"k": "v"})
    result.created_at.FromNanoseconds(1_764_000_000_123_000_000)
    body = connect_codec.ProtoJsonCodec().encode(result)
    assert b"\n" not in body and b": " not in body
    assert json.loads(body) == json.loads(json_format.MessageToJson(result))


def test_decodes_what_connect_clients_send():
    sent = b'{"requestId":"r-2","mode":"TRADING_MODE_PAPER","slippageBps":50,"clientMetadata":{"a":"b"}}'
    decoded = connect_codec.ProtoJsonCodec().decode(sent, trade_pb2.TradeRequest())
    assert decoded == json_format.Parse(sent, trade_pb2.TradeRequest())
