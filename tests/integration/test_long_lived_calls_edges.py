"""Edges of the long-lived and multi-part calls: trade sessions, status streams and batches
whose messages, clients or neighbours misbehave."""

import grpc

from support.trading import transitions, trade, unique
from tradewire.core.lifecycle import is_terminal
from tradewire.gateway.calls import SERVICE_NAME
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


async def _raw_session(gateway, messages: list[bytes], key: str) -> tuple[list[spb.TradeSessionResponse], grpc.StatusCode]:
    """A TradeSession whose messages are sent as given (bytes on the wire), then half-closed: every
    response, and the call's status."""
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.stream_stream(f"/{SERVICE_NAME}/TradeSession", request_serializer=lambda raw: raw,
                                     response_deserializer=spb.TradeSessionResponse.FromString)(
            metadata=(("authorization", f"Bearer {key}"),))
        for message in messages:
            await call.write(message)
        await call.done_writing()
        responses = [response async for response in call]
        return responses, await call.code()


async def test_a_session_message_too_large_or_undecodable_is_refused_alone(gateway):
    """One message the gateway cannot take — past the size limit, or not a TradeSessionRequest —
    is answered in the session with its error; the trades sent before and after it run and are
    followed to their end in the same session."""
    before, after = unique("around-before"), unique("around-after")
    oversized = spb.TradeSessionRequest(trade=trade(unique("oversized"), client_metadata={"k": "x" * 70_000}))
    responses, code = await _raw_session(gateway, [
        spb.TradeSessionRequest(trade=trade(before)).SerializeToString(),
        oversized.SerializeToString(),
        b"\xff\xff\xff\xff",
        spb.TradeSessionRequest(trade=trade(after)).SerializeToString(),
    ], gateway.key("alice"))
    assert code == grpc.StatusCode.OK
    errors = [r.error for r in responses if r.WhichOneof("event") == "error"]
    assert [(e.error.reason, e.error.code) for e in errors] == [
        ("PAYLOAD_TOO_LARGE", grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]),
        ("MALFORMED_REQUEST", grpc.StatusCode.INVALID_ARGUMENT.value[0]),
    ]
    assert "65536" in errors[0].error.message and "TradeSessionRequest" in errors[1].error.message
    statuses = transitions(r.status for r in responses if r.WhichOneof("event") == "status")
    for request_id in (before, after):
        events = [s for s in statuses if s.request_id == request_id]
        assert [s.sequence for s in events] == list(range(1, len(events) + 1)), request_id
        assert is_terminal(events[-1].stage) and events[-1].stage == pb.TRADE_STATUS_FILLED, request_id
