"""Status streams and sessions as a client sees them.

Across replicas sharing Redis: a request id that runs again (its first call went away before
the send) is seen as its new run, exactly once and in order, wherever the stream is opened,
even when the first run's last events reach Redis late; a stream of another replica's trade
gets heartbeats saying where the trade is and a SHUTDOWN message when its replica stops; many
such streams share one Redis connection. A session refuses each message in the order every call
is refused in: scope, rate limit, then the contract's rules."""

import asyncio
import contextlib
import uuid

import pytest
import redis.asyncio as aredis

from lifecycle_support import until
from support.in_process import call_with_key, core_with_key
from tradewire.core import lifecycle
from tradewire.core.shared.redis_events import RedisEventBus, events_stream_key
from tradewire.core.status_hub import StatusHub
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_streamqa_" + "q" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
PAPER = {"realtime": True, "latency_ms": 1000}  # 0.5 s before a paper trade is sent
DATABASE = 12  # this suite's own Redis database
QUOTED = [pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_VALIDATED, pb.TRADE_STATUS_ROUTED, pb.TRADE_STATUS_QUOTED]


def trade(request_id: str, **fields) -> pb.TradeRequest:
    values = dict(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                  amount="0.01", slippage_bps=100)
    return pb.TradeRequest(**{**values, **fields})


@pytest.fixture
async def replicas(redis_server, tmp_path):
    """Two started cores (replicas "a" and "b") on one Redis database, with a fresh owner."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    owner = f"qa-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        made = [await stack.enter_async_context(core_with_key(
            tmp_path / name, KEY, owner, paper=PAPER, streams={"heartbeat_s": 0.3, "await_trade_s": 5},
            shared={"redis_url": url, "replica_id": f"{name}-{owner}"})) for name in ("a", "b")]
        yield owner, made


def redis_stream(redis_server, owner: str, request_id: str) -> list[pb.ExecutionStatus]:
    client = redis_server.client()
    client.select(DATABASE)
    return [pb.ExecutionStatus.FromString(fields[b"e"])
            for _, fields in client.xrange(events_stream_key(owner, request_id))]


async def follow(core, request_id: str, from_sequence: int = 0) -> list[pb.ExecutionStatus]:
    ctx = call_with_key(KEY, "StreamExecutionStatus")
    request = spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=from_sequence)
    async with asyncio.timeout(20):
        return [e async for e in core.service.StreamExecutionStatus(request, ctx)
                if e.kind == pb.STATUS_KIND_TRANSITION]


async def test_a_session_that_runs_a_trade_again_publishes_only_the_new_run_to_other_replicas(replicas,
                                                                                               redis_server):
    owner, (a, b) = replicas
    request_id = "rerun-1"
    first_call = asyncio.create_task(a.service.ExecuteTrade(trade(request_id), call_with_key(KEY, "ExecuteTrade")))
    await until(lambda: a.runner.in_flight() == 1)

    async def requests():
        yield spb.TradeSessionRequest(trade=trade(request_id))

    statuses: list[pb.ExecutionStatus] = []

    async def read() -> None:
        async for response in a.service.TradeSession(requests(), call_with_key(KEY, "TradeSession")):
            statuses.append(response.status)

    session = asyncio.create_task(read())
    await until(lambda: len(statuses) >= 1)
    first_call.cancel()  # its caller hung up before the send: the session runs the trade again
    await asyncio.gather(first_call, return_exceptions=True)
    await until(lambda: [s.sequence for s in statuses].count(2) == 2)  # the new run is under way
    await until(lambda: redis_stream(redis_server, owner, request_id))  # its events reach Redis

    current = await b.service.GetTrade(spb.GetTradeRequest(request_id=request_id), call_with_key(KEY, "GetTrade"))
    assert current.status != pb.TRADE_STATUS_CANCELLED
    elsewhere = await follow(b, request_id)  # opened while the new run goes on
    await asyncio.wait_for(session, 15)
    assert statuses[-1].stage == pb.TRADE_STATUS_FILLED
    assert [e.sequence for e in elsewhere] == list(range(1, 10))
    assert elsewhere[-1].stage == pb.TRADE_STATUS_FILLED
    stream = redis_stream(redis_server, owner, request_id)
    assert [e.sequence for e in stream] == list(range(1, 10)) and stream[-1].stage == pb.TRADE_STATUS_FILLED


async def test_a_replica_that_ran_the_first_attempt_streams_the_run_that_followed_elsewhere(replicas):
    owner, (a, b) = replicas
    request_id = "rerun-2"
    first_call = asyncio.create_task(b.service.ExecuteTrade(trade(request_id), call_with_key(KEY, "ExecuteTrade")))
    await until(lambda: b.runner.in_flight() == 1)
    first_call.cancel()  # its caller hung up before the send: CANCELLED on b, which may run again
    await asyncio.gather(first_call, return_exceptions=True)
    await until(lambda: b.runner.in_flight() == 0)

    retry = asyncio.create_task(a.service.ExecuteTrade(trade(request_id), call_with_key(KEY, "ExecuteTrade")))
    # (counted in flight before its claim reaches the store: until then CANCELLED is what there is)
    await until(lambda: a.runner.store.get(owner, request_id).result.status != pb.TRADE_STATUS_CANCELLED)
    current = await b.service.GetTrade(spb.GetTradeRequest(request_id=request_id), call_with_key(KEY, "GetTrade"))
    assert current.status != pb.TRADE_STATUS_CANCELLED  # it runs again, on a
    during = asyncio.create_task(follow(b, request_id))
    assert (await retry).status == pb.TRADE_STATUS_FILLED
    for events in (await during, await follow(b, request_id)):
        assert [e.sequence for e in events] == list(range(1, 10))
        assert events[-1].stage == pb.TRADE_STATUS_FILLED


@pytest.fixture
async def bus_client(redis_server):
    client = aredis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}")
    yield client
    await client.aclose()


async def running_elsewhere(bus_client, stages: list[int]):
    """A trade another replica runs, at the last of ``stages`` (published to the shared bus): its
    key and events."""
    key = (f"qa-{uuid.uuid4().hex[:8]}", "elsewhere-1")
    runner_bus = RedisEventBus(bus_client)
    events = tuple(lifecycle.status_event(key[1], sequence, stage) for sequence, stage in enumerate(stages, 1))
    for event in events:
        runner_bus.publish(key, event)
    assert await runner_bus.flush(timeout=10)
    await runner_bus.close()
    return key, events


async def test_a_stream_following_another_replica_s_trade_gets_heartbeats_saying_where_it_is(bus_client):
    key, events = await running_elsewhere(bus_client, QUOTED)
    hub = StatusHub(bus=RedisEventBus(bus_client), heartbeat_s=0.2)
    follower = hub.follow(key, 1, heartbeat_s=0.2, load_stored=lambda: events[:1])
    try:
        async with asyncio.timeout(10):
            seen = [await anext(follower) for _ in range(len(events) + 1)]
    finally:
        await follower.aclose()
    beat = seen[-1]
    assert [e.sequence for e in seen[:-1]] == [1, 2, 3, 4]
    assert beat.kind == pb.STATUS_KIND_HEARTBEAT and beat.request_id == key[1] and beat.sequence == 0
    assert beat.stage == pb.TRADE_STATUS_QUOTED and beat.percent_complete == 35  # as on the replica running it
    assert "QUOTED" in beat.message and beat.timestamp.seconds > 0


async def test_shutdown_ends_a_stream_following_another_replica_s_trade_with_where_to_resume(bus_client):
    key, events = await running_elsewhere(bus_client, QUOTED)
    hub = StatusHub(bus=RedisEventBus(bus_client), heartbeat_s=30)
    seen: list[pb.ExecutionStatus] = []

    async def read() -> None:  # as StreamExecutionStatus follows it: an open stream
        sub = hub.subscribe("status")
        try:
            async for event in hub.follow(key, 1, heartbeat_s=30, load_stored=lambda: events[:1], subscription=sub):
                seen.append(event)
        finally:
            hub.unsubscribe(sub, "shutdown")

    reader = asyncio.create_task(read())
    await until(lambda: len(seen) == len(events))
    hub.shutdown()
    await asyncio.wait_for(reader, 1.0)  # well within what a shutdown gives streams to close
    assert seen[-1].kind == pb.STATUS_KIND_SHUTDOWN and "from_sequence=5" in seen[-1].message
    assert seen[-1].stage == pb.TRADE_STATUS_QUOTED


@pytest.mark.parametrize("landed_first", [0, 2])
async def test_an_earlier_run_s_events_landing_late_do_not_displace_the_new_run(redis_server, bus_client,
                                                                                 landed_first):
    """A trade stopped by its call (CANCELLED) ran again on another replica at once, while the
    first replica's sender was behind: what it sends after the new run's claim is left out."""
    key = (f"qa-{uuid.uuid4().hex[:8]}", "late-1")
    first_replica, second_replica = RedisEventBus(bus_client), RedisEventBus(bus_client)
    first_run = [lifecycle.status_event(key[1], sequence, stage) for sequence, stage in enumerate(QUOTED, 1)]
    first_run.append(lifecycle.status_event(key[1], 5, pb.TRADE_STATUS_CANCELLED, result=pb.TradeResult(
        status=pb.TRADE_STATUS_CANCELLED, error=pb.TradeError(code=1, reason="CANCELLED"))))
    for event in first_run[:landed_first]:
        first_replica.publish(key, event)
    assert await first_replica.flush(timeout=10)
    behind = asyncio.Event()
    send = first_replica._append_entries

    async def sent_late(entries) -> None:
        await behind.wait()
        await send(entries)

    first_replica._append_entries = sent_late  # its sender is behind: the rest lands later
    for event in first_run[landed_first:]:
        first_replica.publish(key, event)
    store = redis_server.client()
    store.select(DATABASE)
    store.delete(events_stream_key(*key))  # the new run's claim drops the stream
    second_run = [lifecycle.status_event(key[1], sequence, stage) for sequence, stage in enumerate(QUOTED, 1)]
    for event in second_run:
        second_replica.publish(key, event)
    assert await second_replica.flush(timeout=10)
    behind.set()
    assert await first_replica.flush(timeout=10)

    assert redis_stream(redis_server, *key) == second_run
    second_replica.publish(key, lifecycle.status_event(key[1], 5, pb.TRADE_STATUS_SIGNED))
    assert await second_replica.flush(timeout=10)
    assert [e.sequence for e in redis_stream(redis_server, *key)] == [1, 2, 3, 4, 5]
    for bus in (first_replica, second_replica):
        await bus.close()


async def test_many_streams_of_other_replicas_trades_share_one_connection(redis_server, bus_client):
    """Followers of trades running elsewhere do not each hold a pooled Redis connection (the
    asyncio pool holds 100): every one gets its trade's events, and this replica still publishes."""
    follows, keys = 150, [(f"qa-{uuid.uuid4().hex[:8]}", f"many-{n}") for n in range(50)]
    runner_bus, hub = RedisEventBus(bus_client), StatusHub(bus=RedisEventBus(bus_client), heartbeat_s=30)
    stages = QUOTED + [pb.TRADE_STATUS_REJECTED]
    for key in keys:
        runner_bus.publish(key, lifecycle.status_event(key[1], 1, stages[0]))
    assert await runner_bus.flush(timeout=10)
    before = redis_server.client().info("clients")["connected_clients"]
    seen: list[list[int]] = [[] for _ in range(follows)]

    async def follow_one(key, into: list[int]) -> None:
        async for event in hub.follow(key, 1, heartbeat_s=30, load_stored=lambda: ()):
            if event.kind == pb.STATUS_KIND_TRANSITION:
                into.append(event.sequence)

    followers = [asyncio.create_task(follow_one(keys[n % len(keys)], seen[n])) for n in range(follows)]
    await until(lambda: all(seen), timeout=10)  # every stream open and reading
    assert redis_server.client().info("clients")["connected_clients"] - before < 10
    own = ("qa-own", f"own-{uuid.uuid4().hex[:8]}")
    hub.open(own)
    hub.publish(own, lifecycle.status_event(own[1], 1, pb.TRADE_STATUS_RECEIVED))
    assert await hub.bus.flush(timeout=5)  # this replica's own events still go out
    for key in keys:
        for sequence, stage in enumerate(stages[1:], 2):
            runner_bus.publish(key, lifecycle.status_event(key[1], sequence, stage))
    async with asyncio.timeout(20):
        await asyncio.gather(*followers)
    assert all(sequences == [1, 2, 3, 4, 5] for sequences in seen)
    await runner_bus.close()
    await hub.stop()


async def session_answers(core, messages: list[spb.TradeSessionRequest]) -> list[spb.TradeSessionResponse]:
    async def requests():
        for message in messages:
            yield message

    async with asyncio.timeout(20):
        return [r async for r in core.service.TradeSession(requests(), call_with_key(KEY, "TradeSession"))]


async def test_a_session_s_malformed_messages_count_against_its_caller_s_limit(tmp_path):
    """As on every call, a session's message is refused in order: the scope, the rate limit,
    then the contract's rules; so messages the rules refuse take a token too (refused alone:
    the session goes on)."""
    malformed = [spb.TradeSessionRequest(trade=trade("bad id!")), spb.TradeSessionRequest(),
                 spb.TradeSessionRequest(cancel=spb.CancelTradeRequest(request_id="bad id!"))] * 3
    async with core_with_key(tmp_path, KEY, "rita", limits={"requests_per_s": 0.001, "burst": 5}) as core:
        answers = await session_answers(core, malformed)
    assert [a.error.error.reason for a in answers] == ["VALIDATION_FAILED"] * 5 + ["RATE_LIMITED"] * 4
    assert all(a.error.error.metadata["retry_after_s"] for a in answers[5:])


async def test_a_session_trade_without_its_mode_s_scope_is_refused_for_it_whatever_else_it_holds(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita") as core:  # read + trade:paper
        answers = await session_answers(core, [
            spb.TradeSessionRequest(trade=trade("live-1", mode=pb.TRADING_MODE_LIVE, amount="not a number"))])
    assert [(a.error.request_id, a.error.error.reason) for a in answers] == [("live-1", "PERMISSION_DENIED")]
