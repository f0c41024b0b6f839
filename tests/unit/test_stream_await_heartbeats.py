"""A status stream opened before its trade exists waits up to ``[streams] await_trade_s`` for it,
and sends heartbeats meanwhile at the cadence of any other stream (what keeps proxies and
clients from timing it out): then its trade's events, each once and in order, whether the trade
runs on this replica or another one (the shared store and event stream); NOT_FOUND when it never
comes, SHUTTING_DOWN when the gateway shuts down first, as without the heartbeats. Its reader is
watched like any other stream's: one that takes no heartbeat is a slow consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import redis.asyncio as aredis

from support.in_process import call_with_key, core_with_key
from support.trading import eventually, trade, transitions
from tradewire.core import lifecycle
from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.status_hub import StatusHub
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_awaithbt_" + "h" * 40
OWNER = "hana"
HEARTBEAT_S = 0.1
WAIT_S = 10.0  # for a condition that takes a few heartbeats
DATABASE = 12  # (shared with tests/unit/lifecycle/test_streams_qa.py: each test has an owner of its own)


def streams(await_trade_s: float = 30.0) -> dict:
    return {"heartbeat_s": HEARTBEAT_S, "await_trade_s": await_trade_s}


class Follower:
    """StreamExecutionStatus of ``request_id`` on ``core``, read in a task of its own."""

    def __init__(self, core, request_id: str, from_sequence: int = 0) -> None:
        self.request_id = request_id
        self.messages: list[pb.ExecutionStatus] = []
        self.error: TradewireError | None = None
        request = spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=from_sequence)
        self.stream = core.service.StreamExecutionStatus(request, call_with_key(KEY, "StreamExecutionStatus"))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.stream:
                self.messages.append(message)
        except TradewireError as exc:
            self.error = exc

    def heartbeats(self) -> list[pb.ExecutionStatus]:
        return [m for m in self.messages if m.kind == pb.STATUS_KIND_HEARTBEAT]

    def before_the_trade(self) -> list[pb.ExecutionStatus]:
        """The messages up to the trade's first transition."""
        first = next((i for i, m in enumerate(self.messages) if m.kind != pb.STATUS_KIND_HEARTBEAT),
                     len(self.messages))
        return self.messages[:first]

    async def finished(self, timeout: float = 20.0) -> list[pb.ExecutionStatus]:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return self.messages

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def assert_waiting_heartbeats(beats: list[pb.ExecutionStatus], request_id: str) -> None:
    """Heartbeats of a trade that does not exist yet: no stage, no sequence, a message and a time,
    one per heartbeat_s (never sooner)."""
    assert beats
    for beat in beats:
        assert beat.kind == pb.STATUS_KIND_HEARTBEAT and beat.request_id == request_id
        assert beat.sequence == 0 and beat.stage == pb.TRADE_STATUS_UNSPECIFIED and beat.percent_complete == 0
        assert not beat.terminal and not beat.HasField("result")
        assert beat.message and beat.HasField("timestamp")
    times = [lifecycle.ns_of(b.timestamp) / 1e9 for b in beats]
    assert all(later - earlier >= HEARTBEAT_S * 0.9 for earlier, later in zip(times, times[1:])), times


def assert_every_event_once(events: list[pb.ExecutionStatus], result: pb.TradeResult) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].stage == pb.TRADE_STATUS_RECEIVED
    assert events[-1].terminal and not any(e.terminal for e in events[:-1])
    assert events[-1].result.status == pb.TRADE_STATUS_FILLED == result.status
    assert events[-1].result.trade_id == result.trade_id


def closes(core, reason: str) -> float:
    return core.metrics.stream_closes.labels("status", reason)._value.get()


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, OWNER, streams=streams()) as made:
        yield made


async def test_a_stream_opened_before_its_trade_gets_heartbeats_then_each_of_its_events_once(core):
    follower = Follower(core, "early-1")
    await eventually(lambda: len(follower.heartbeats()) >= 3, timeout=WAIT_S,
                     what="heartbeats while the trade does not exist")
    assert not follower.task.done() and follower.error is None
    assert await core.runner.current(OWNER, "early-1") is None  # (it still does not exist)

    result = await core.service.ExecuteTrade(trade("early-1"), call_with_key(KEY, "ExecuteTrade"))
    messages = await follower.finished()
    assert follower.error is None
    assert_waiting_heartbeats(follower.before_the_trade(), "early-1")
    assert_every_event_once(transitions(messages), result)
    # once the trade exists, a heartbeat says where it is
    after = follower.messages[len(follower.before_the_trade()):]
    assert all(m.stage for m in after)
    assert closes(core, "completed") == 1 and core.hub.open_streams == 0


async def test_a_stream_whose_trade_never_comes_gets_heartbeats_then_not_found(tmp_path):
    async with core_with_key(tmp_path, KEY, OWNER, streams=streams(await_trade_s=0.6)) as core:
        started = time.monotonic()
        follower = Follower(core, "never-1")
        messages = await follower.finished()
        assert time.monotonic() - started >= 0.6 * 0.9
        assert follower.error is not None and follower.error.reason == "TRADE_NOT_FOUND"
        assert follower.error.code.name == "NOT_FOUND"
        assert_waiting_heartbeats(messages, "never-1")
        assert closes(core, "error") == 1 and core.hub.open_streams == 0


async def test_a_stream_waiting_for_its_trade_ends_at_shutdown_after_its_heartbeats(core):
    follower = Follower(core, "early-2")
    await eventually(lambda: len(follower.heartbeats()) >= 2, timeout=WAIT_S, what="heartbeats")
    assert await core.close_streams(WAIT_S) == 0  # it ended by itself: nothing had to be cut
    await follower.finished()
    assert follower.error is not None and follower.error.reason == "SHUTTING_DOWN"
    assert_waiting_heartbeats(follower.messages, "early-2")
    assert core.hub.open_streams == 0


async def test_a_reader_that_takes_no_heartbeat_of_a_waiting_stream_is_a_slow_consumer(core):
    request = spb.StreamExecutionStatusRequest(request_id="early-3")
    stream = core.service.StreamExecutionStatus(request, call_with_key(KEY, "StreamExecutionStatus"))
    first: list[pb.ExecutionStatus] = []

    async def read_one_then_stall() -> None:
        first.append(await anext(stream))
        await asyncio.Event().wait()  # reads no more: the heartbeats stay with the transport

    reader = asyncio.create_task(read_one_then_stall())
    try:
        await eventually(lambda: first, timeout=WAIT_S, what="a first heartbeat")
        assert first[0].kind == pb.STATUS_KIND_HEARTBEAT
        assert core.hub.sweep(time.monotonic() + core.hub.slow_consumer_s + 1) == 1
        await asyncio.gather(reader, return_exceptions=True)
        assert reader.cancelled()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await stream.aclose()
    assert closes(core, "slow_consumer") == 1 and core.hub.open_streams == 0


async def test_a_stream_of_a_running_trade_resumed_past_its_events_gets_heartbeats_of_its_stage(tmp_path):
    """A known trade is followed at once: its heartbeats are the trade's, saying where it is."""
    paper = {"realtime": True, "latency_ms": 1000}
    async with core_with_key(tmp_path, KEY, OWNER, streams=streams(), paper=paper) as core:
        execution = asyncio.create_task(core.service.ExecuteTrade(trade("known-1"), call_with_key(KEY, "ExecuteTrade")))
        await eventually(lambda: core.hub.is_live((OWNER, "known-1")), timeout=WAIT_S, what="the trade running")
        follower = Follower(core, "known-1", from_sequence=lifecycle.MOST_TRANSITIONS)
        result = await execution
        messages = await follower.finished()
        assert follower.error is None
        beats = follower.heartbeats()
        assert beats and all(b.stage != pb.TRADE_STATUS_UNSPECIFIED for b in beats)
        assert [m.sequence for m in transitions(messages)] == [lifecycle.MOST_TRANSITIONS]
        assert transitions(messages)[-1].result.trade_id == result.trade_id


# -- across replicas: the trade appears on another one ------------------------------------------

@pytest.fixture
async def replicas(redis_server, tmp_path):
    """Two started cores ("a", "b") sharing one Redis database; paper trades take a second."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    owner = f"beat-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        yield owner, [await stack.enter_async_context(core_with_key(
            tmp_path / name, KEY, owner, streams=streams(), paper={"realtime": True, "latency_ms": 1000},
            shared={"redis_url": url, "replica_id": f"{name}-{owner}"})) for name in ("a", "b")]


async def test_a_stream_waiting_for_a_trade_that_starts_on_another_replica_gets_heartbeats_then_its_events(
        replicas):
    owner, (a, b) = replicas
    follower = Follower(b, "elsewhere-1")
    await eventually(lambda: len(follower.heartbeats()) >= 3, timeout=WAIT_S,
                     what="heartbeats while the trade does not exist")
    assert not follower.task.done() and follower.error is None

    result = await a.service.ExecuteTrade(trade("elsewhere-1"), call_with_key(KEY, "ExecuteTrade"))
    messages = await follower.finished()
    assert follower.error is None
    before = follower.before_the_trade()
    assert_waiting_heartbeats(before, "elsewhere-1")
    assert_every_event_once(transitions(messages), result)
    # followed through the shared stream from then on: its heartbeats say where the trade is, and
    # none says it is still awaited
    after = [m for m in messages[len(before):] if m.kind == pb.STATUS_KIND_HEARTBEAT]
    assert after and all(m.stage != pb.TRADE_STATUS_UNSPECIFIED for m in after)
    assert b.hub.open_streams == 0


async def test_a_stream_on_a_replica_waiting_for_a_trade_that_never_comes_is_not_found_after_heartbeats(
        redis_server, tmp_path):
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    owner = f"beat-{uuid.uuid4().hex[:8]}"
    async with core_with_key(tmp_path, KEY, owner, streams=streams(await_trade_s=0.6),
                             shared={"redis_url": url, "replica_id": f"solo-{owner}"}) as core:
        follower = Follower(core, "never-2")
        messages = await follower.finished()
        assert follower.error is not None and follower.error.reason == "TRADE_NOT_FOUND"
        assert_waiting_heartbeats(messages, "never-2")



async def test_a_stream_of_a_trade_running_on_another_replica_is_followed_at_once_with_heartbeats_of_its_stage(
        replicas):
    """The trade exists (on a): b follows it through the shared stream at once, and while none of
    the events it asked for has come (resumed past them) its heartbeats say where the trade is,
    as on the replica running it — none says the trade is awaited."""
    owner, (a, b) = replicas
    execution = asyncio.create_task(a.service.ExecuteTrade(trade("elsewhere-2"), call_with_key(KEY, "ExecuteTrade")))
    await eventually(lambda: b.store.get(owner, "elsewhere-2"), timeout=WAIT_S, what="the trade in the shared store")
    follower = Follower(b, "elsewhere-2", from_sequence=lifecycle.MOST_TRANSITIONS)
    result = await execution
    messages = await follower.finished()
    assert follower.error is None
    assert [m.sequence for m in transitions(messages)] == [lifecycle.MOST_TRANSITIONS]
    assert transitions(messages)[-1].result.trade_id == result.trade_id
    beats = follower.heartbeats()
    assert beats and all(beat.stage != pb.TRADE_STATUS_UNSPECIFIED and beat.percent_complete for beat in beats)
    assert all(pb.TradeStatus.Name(beat.stage).removeprefix("TRADE_STATUS_") in beat.message
               for beat in beats)


async def test_shutdown_tells_a_stream_of_another_replica_s_trade_to_resume_after_what_it_was_sent(redis_server):
    """The shared stream is behind the store (one event published, three stored): a heartbeat says
    where the trade is (the store's stage), but the SHUTDOWN message resumes after what the stream
    was sent, not after what it was not."""
    client = aredis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}")
    key = (f"beat-{uuid.uuid4().hex[:8]}", "behind-1")
    stages = (pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_VALIDATED, pb.TRADE_STATUS_ROUTED)
    stored = tuple(lifecycle.status_event(key[1], sequence, stage) for sequence, stage in enumerate(stages, 1))
    publisher = RedisEventBus(client)
    publisher.publish(key, stored[0])
    assert await publisher.flush(timeout=WAIT_S)
    await publisher.close()
    hub = StatusHub(bus=RedisEventBus(client), heartbeat_s=HEARTBEAT_S)
    seen: list[pb.ExecutionStatus] = []

    async def read() -> None:  # as StreamExecutionStatus follows it: an open stream
        sub = hub.subscribe("status")
        try:
            async for event in hub.follow(key, 1, HEARTBEAT_S, load_stored=lambda: stored, subscription=sub):
                seen.append(event)
        finally:
            hub.unsubscribe(sub, "shutdown")

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: any(m.kind == pb.STATUS_KIND_HEARTBEAT for m in seen), timeout=WAIT_S,
                         what="a heartbeat")
        hub.shutdown()
        await asyncio.wait_for(reader, WAIT_S)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await hub.stop()
        await client.aclose()
    assert [m.sequence for m in transitions(seen)] == [1]
    beat = next(m for m in seen if m.kind == pb.STATUS_KIND_HEARTBEAT)
    assert beat.stage == pb.TRADE_STATUS_ROUTED  # where the trade is
    assert seen[-1].kind == pb.STATUS_KIND_SHUTDOWN and "from_sequence=2" in seen[-1].message, seen[-1].message
