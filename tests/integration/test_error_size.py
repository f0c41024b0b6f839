"""Errors stay deliverable however much the caller sent: what an error repeats back (names, map
keys) is shortened, its message names as many violations as fit, and an error carried in
response metadata (native gRPC's trailers, a gRPC-Web trailers-only answer) stays within what
clients accept — grpcio, the README's client, refuses trailers over 8 KiB at random and over
16 KiB always, which turned a validation error into RESOURCE_EXHAUSTED without its details."""

from __future__ import annotations

import base64
import struct
from urllib.parse import unquote

import httpx
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2

from support.clients import RpcFailure, make_client
from support.trading import trade, unique
from tradewire.core.errors import MAX_MESSAGE_CHARS
from tradewire.gateway.errors import ERROR_METADATA_BUDGET
from tradewire.v1 import service_pb2 as spb

BAD_ITEMS = 100
LONG = 9_000


async def refused(client, method: str, request, key: str) -> RpcFailure:
    with pytest.raises(RpcFailure) as failure:
        await client.unary(method, request, key)
    return failure.value


def bad_batch() -> spb.ExecuteTradeBatchRequest:
    # one realistic mistake per item: the output mint is missing
    return spb.ExecuteTradeBatchRequest(atomic_validation=True, trades=[
        trade(unique(f"big-{i}"), output_mint="") for i in range(BAD_ITEMS)])


async def test_a_batch_with_a_hundred_bad_items_is_invalid_argument_on_native_grpc(gateway):
    grpc_client, connect = make_client("grpc", gateway), make_client("connect-proto", gateway)
    try:
        on_grpc = await refused(grpc_client, "ExecuteTradeBatch", bad_batch(), gateway.key("alice"))
        on_connect = await refused(connect, "ExecuteTradeBatch", bad_batch(), gateway.key("alice"))
    finally:
        await grpc_client.close()
        await connect.close()
    for failure in (on_grpc, on_connect):
        assert (failure.code, failure.reason) == ("INVALID_ARGUMENT", "VALIDATION_FAILED"), failure
        assert len(failure.message) <= MAX_MESSAGE_CHARS
    # Connect's error is a body: every item named; gRPC's is trailers: the first ones, the rest counted
    assert set(on_connect.fields) == {f"trades[{i}].output_mint" for i in range(BAD_ITEMS)}
    listed = len(on_grpc.fields)
    assert 10 <= listed < len(on_connect.fields) and on_grpc.fields == on_connect.fields[:listed]
    assert f"{len(on_connect.fields) - listed} more field violations not listed" in on_grpc.message


async def test_a_long_map_key_is_named_shortened_on_every_protocol(gateway):
    request = trade(unique("long-key"), client_metadata={"a" * LONG: "x", "b" * LONG: "y"})
    for protocol in ("grpc", "connect-json", "grpc-web", "http"):
        client = make_client(protocol, gateway)
        try:
            failure = await refused(client, "ExecuteTrade", request, gateway.key("alice"))
        finally:
            await client.close()
        assert (failure.code, failure.reason) == ("INVALID_ARGUMENT", "VALIDATION_FAILED"), (protocol, failure)
        [field, *_] = failure.fields
        # (either key: a map's entries have no order on the wire)
        assert field[:21] in ('client_metadata["aaaa', 'client_metadata["bbbb') and field.endswith('..."]') \
            and len(field) < 100, (protocol, field[:200])


async def test_a_grpc_web_refusal_of_a_huge_unknown_field_has_small_headers(gateway):
    # gRPC-Web JSON refused before the service (the body does not decode): a trailers-only
    # answer, whose status is in the HTTP headers — once 147 KB of them for this request
    response = await grpc_web_call(gateway, "GetMarket", orjson.dumps({"z" * 20_000: 1}), "application/grpc-web+json")
    header_bytes = sum(len(k) + len(v) for k, v in response.headers.raw)
    assert response.headers["grpc-status"] == "3" and header_bytes < ERROR_METADATA_BUDGET + 1024, header_bytes
    raw = response.headers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details if d.Is(bad_request.DESCRIPTOR))
    [violation] = bad_request.field_violations
    assert violation.field.startswith('"zzzz') and len(violation.field) < 100, violation.field[:200]


async def grpc_web_call(gateway, method: str, message: bytes, content_type: str) -> httpx.Response:
    """One gRPC-Web call of alice's: ``message`` in one frame."""
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.post(f"{gateway.http_url}/tradewire.v1.TradeExecutionService/{method}",
                               content=struct.pack(">BI", 0, len(message)) + message,
                               headers={"content-type": content_type, "x-grpc-web": "1",
                                        "authorization": f"Bearer {gateway.key('alice')}"})


def grpc_web_trailer_frame(body: bytes) -> bytes:
    """The trailer frame (flags 0x80) of a gRPC-Web answer's body."""
    at = 0
    while at + 5 <= len(body):
        flags, size = body[at], int.from_bytes(body[at + 1:at + 5], "big")
        if flags & 0x80:
            return body[at + 5:at + 5 + size]
        at += 5 + size
    raise AssertionError(f"no trailer frame in {body[:200]!r}")


def many_bad_fields_batch() -> spb.ExecuteTradeBatchRequest:
    # several mistakes per item, all reported at once (atomic validation): hundreds of violations
    return spb.ExecuteTradeBatchRequest(atomic_validation=True, trades=[
        trade(unique(f"many-{i}"), output_mint="", amount="abc", slippage_bps=20_000, mode=99)
        for i in range(BAD_ITEMS)])


async def test_a_grpc_web_validation_error_raised_by_the_service_keeps_within_the_metadata_budget(gateway):
    # refused by the service, after the call was admitted (the batch's items validated together):
    # once a trailer frame with every violation, hundreds of KB of them
    request = many_bad_fields_batch()
    response = await grpc_web_call(gateway, "ExecuteTradeBatch", request.SerializeToString(),
                                   "application/grpc-web+proto")
    trailers = grpc_web_trailer_frame(response.content)
    assert len(trailers) < ERROR_METADATA_BUDGET + 1024, len(trailers)
    fields = dict(line.split(":", 1) for line in trailers.decode().split("\r\n") if line)
    assert fields["grpc-status"].strip() == "3", fields
    raw = fields["grpc-status-details-bin"].strip()
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details if d.Is(bad_request.DESCRIPTOR))
    listed = [v.field for v in bad_request.field_violations]
    # the first violations, as Connect (whose error is a body) lists them all; the rest counted
    connect = make_client("connect-proto", gateway)
    try:
        every = (await refused(connect, "ExecuteTradeBatch", request, gateway.key("alice"))).fields
    finally:
        await connect.close()
    assert 10 <= len(listed) < len(every) and listed == every[:len(listed)], (len(listed), len(every))
    assert f"{len(every) - len(listed)} more field violations not listed" in unquote(fields["grpc-message"].strip())

