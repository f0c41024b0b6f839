"""Why a status stream or a TradeSession ended, as tradewire_stream_closes_total counts it: a
stream its transport cut off at the call's deadline is `deadline`, not a caller gone."""

import asyncio
import time

import pytest

from lifecycle_support import until
from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.gateway.deadlines import until_deadline
from tradewire.v1 import service_pb2 as spb

KEY = "tw_closetst_" + "c" * 40


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "cleo", streams={"await_trade_s": 30, "heartbeat_s": 30}) as made:
        yield made


def closes(core, kind: str, reason: str) -> float:
    return core.metrics.stream_closes.labels(kind, reason)._value.get()


def status_stream(core, deadline_s: float | None):
    ctx = call_with_key(KEY, "StreamExecutionStatus")
    ctx.deadline = None if deadline_s is None else time.monotonic() + deadline_s
    request = spb.StreamExecutionStatusRequest(request_id="not-yet-sent")  # waits for its trade
    return until_deadline(core.service.StreamExecutionStatus(request, ctx), ctx)


async def never_sent():
    await asyncio.Event().wait()
    yield spb.TradeSessionRequest()


async def test_a_status_stream_cut_off_by_its_deadline_is_counted_as_such(core):
    with pytest.raises(TradewireError) as cut:
        await anext(status_stream(core, 0.2))
    assert cut.value.code.name == "DEADLINE_EXCEEDED"
    assert closes(core, "status", "deadline") == 1 and closes(core, "status", "client_gone") == 0
    assert core.hub.open_streams == 0


async def test_a_status_stream_its_caller_leaves_is_client_gone(core):
    stream = status_stream(core, 30)
    waiting = asyncio.create_task(anext(stream))
    await until(lambda: core.hub.open_streams == 1)
    waiting.cancel()  # as a transport whose caller hung up
    await asyncio.gather(waiting, return_exceptions=True)
    await stream.aclose()
    assert closes(core, "status", "client_gone") == 1 and closes(core, "status", "deadline") == 0


async def test_a_session_cut_off_by_its_deadline_is_counted_as_such(core):
    ctx = call_with_key(KEY, "TradeSession")
    ctx.deadline = time.monotonic() + 0.2
    with pytest.raises(TradewireError) as cut:
        await anext(until_deadline(core.service.TradeSession(never_sent(), ctx), ctx))
    assert cut.value.code.name == "DEADLINE_EXCEEDED"
    assert closes(core, "session", "deadline") == 1 and closes(core, "session", "client_gone") == 0
