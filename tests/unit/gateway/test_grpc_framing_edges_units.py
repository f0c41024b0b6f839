"""gateway.grpc_server._one_message on a scripted servicer context: a call that takes one message
gets it only with the end of its request stream after it; more than one message is
MALFORMED_REQUEST; a call grpcio ends itself (its next read is cancelled) is its deadline's
end when the deadline has come, and otherwise left to grpcio (the cancellation goes on)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import TradewireError
from tradewire.gateway.calls import RPCS
from tradewire.gateway.grpc_server import _decoder, _one_message
from tradewire.v1 import service_pb2 as spb

GET_TRADE = next(rpc for rpc in RPCS if rpc.name == "GetTrade")
MESSAGE = spb.GetTradeRequest(request_id="t-1").SerializeToString()
CANCELLED = object()  # a read of a call grpcio has ended: grpcio cancels the handler's task


class ScriptedContext:
    """A servicer context whose reads answer ``script`` in order (CANCELLED: the task is cancelled)."""

    def __init__(self, *script) -> None:
        self._script = list(script)
        self.reads = 0

    async def read(self):
        self.reads += 1
        answer = self._script.pop(0)
        if answer is CANCELLED:
            asyncio.current_task().cancel()
            await asyncio.sleep(0)  # (raises CancelledError)
        return answer


def call_context(deadline_in_s: float | None = None) -> CallContext:
    return CallContext(protocol=Protocol.GRPC, method="GetTrade", headers={}, peer="127.0.0.1:1",
                       deadline=None if deadline_in_s is None else time.monotonic() + deadline_in_s)


def decode(max_message_bytes: int = 1024):
    return _decoder(GET_TRADE, max_message_bytes)


async def read(context: ScriptedContext, ctx: CallContext | None = None, max_message_bytes: int = 1024):
    return await _one_message(context, ctx or call_context(), decode(max_message_bytes))


async def test_the_message_is_taken_with_the_end_of_the_stream_after_it():
    context = ScriptedContext(MESSAGE, grpc.aio.EOF)
    assert await read(context) == spb.GetTradeRequest(request_id="t-1")
    assert context.reads == 2  # the end of the stream was read before the call goes on


async def test_a_second_message_is_malformed_request_naming_the_method():
    with pytest.raises(TradewireError) as refused:
        await read(ScriptedContext(MESSAGE, MESSAGE))
    assert refused.value.reason == "MALFORMED_REQUEST"
    assert refused.value.message == "the request holds more than one message: GetTrade takes one"


async def test_an_empty_second_message_is_a_second_message_too():
    with pytest.raises(TradewireError) as refused:
        await read(ScriptedContext(MESSAGE, b""))
    assert refused.value.reason == "MALFORMED_REQUEST"


async def test_a_message_too_large_is_refused_as_such_before_anything_else_is_read():
    context = ScriptedContext(MESSAGE, MESSAGE)
    with pytest.raises(TradewireError) as refused:
        await read(context, max_message_bytes=4)
    assert refused.value.reason == "PAYLOAD_TOO_LARGE"
    assert context.reads == 1


async def test_a_half_closed_stream_without_a_message_is_malformed_request():
    with pytest.raises(TradewireError) as refused:
        await read(ScriptedContext(grpc.aio.EOF, grpc.aio.EOF))
    assert refused.value.reason == "MALFORMED_REQUEST"
    assert refused.value.message == "the request does not hold a complete message"


@pytest.mark.parametrize("script", [(grpc.aio.EOF, CANCELLED), (CANCELLED,), (MESSAGE, CANCELLED)],
                         ids=["EOF-then-cancelled", "cancelled", "message-then-cancelled"])
async def test_a_call_grpcio_ended_is_not_claimed_malformed_it_stays_cancelled(script):
    """grpcio refused it (INTERNAL) or its caller left: neither is the handler's to record."""
    reading = asyncio.create_task(read(ScriptedContext(*script)))
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert reading.cancelled()


@pytest.mark.parametrize("script", [(grpc.aio.EOF, CANCELLED), (CANCELLED,), (MESSAGE, CANCELLED)],
                         ids=["EOF-then-cancelled", "cancelled", "message-then-cancelled"])
async def test_a_call_grpcio_ended_at_its_deadline_is_deadline_exceeded(script):
    async def reading():
        with pytest.raises(TradewireError) as refused:
            await read(ScriptedContext(*script), call_context(deadline_in_s=-0.001))
        assert refused.value.reason == "DEADLINE_EXCEEDED"
        # the cancellation was taken back: the handler goes on to answer and record it
        assert asyncio.current_task().cancelling() == 0

    await asyncio.create_task(reading())


async def test_a_stream_ended_at_its_deadline_without_a_cancellation_is_deadline_exceeded():
    with pytest.raises(TradewireError) as refused:
        await read(ScriptedContext(grpc.aio.EOF, grpc.aio.EOF), call_context(deadline_in_s=-0.001))
    assert refused.value.reason == "DEADLINE_EXCEEDED"
