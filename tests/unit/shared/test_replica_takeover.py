"""A replica that stops beating loses its unfinished trades to another — only those not past
the point of no return — and can no longer write them (the store refuses its saves)."""

import asyncio
import logging
import uuid

import pytest
import redis
import redis.asyncio as aredis

from support.trading import eventually
from tradewire.core.errors import TradewireError
from tradewire.core.metrics import Metrics
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.shared.redis_replicas import REGISTRY, ReplicaPresence, presence_key
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import TakenOver, TradeLost, UnfinishedTrade
from tradewire.core.trades import TradeRunner
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLS, Gate, ScriptedExecutor, order, runner

TAKEOVER_DB = 8  # the registry and presence keys are global to the store: a database of its own


@pytest.fixture
def client(redis_server):
    c = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{TAKEOVER_DB}")
    c.flushdb()
    return c


def claimed(store: RedisTradeStore, status: int, mode: int = pb.TRADING_MODE_PAPER) -> pb.TradeResult:
    request_id = f"t-{uuid.uuid4().hex[:8]}"
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_RECEIVED, mode=mode)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    result.status = status
    store.save("alice", result)
    return result


def test_trades_before_the_point_of_no_return_and_paper_ones_past_it_are_adopted(client):
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    quoted = claimed(a, pb.TRADE_STATUS_QUOTED)
    paper_sent = claimed(a, pb.TRADE_STATUS_SIMULATED)  # settled anywhere by its fill id
    committed = claimed(a, pb.TRADE_STATUS_SIMULATED, pb.TRADING_MODE_LIVE)  # may have been sent; B runs no LIVE
    client.sadd(REGISTRY, "replica-a")

    client.set(presence_key("replica-a"), 1)
    assert b.adopt("replica-a") == []  # alive: nothing moves
    client.delete(presence_key("replica-a"))  # its presence expired
    adopted = b.adopt("replica-a")
    assert [u.record.request_id for u in adopted] == [quoted.request_id, paper_sent.request_id]
    assert adopted[0].request.request_id == quoted.request_id  # with its request: it can resume
    assert [u.record.request_id for u in b.unfinished()] == [quoted.request_id, paper_sent.request_id]
    assert [u.record.request_id for u in a.unfinished()] == [committed.request_id]  # settled by A's restart
    assert client.sismember(REGISTRY, "replica-a")  # still has a trade to settle
    assert b.adopt("replica-a") == []  # taken once

    with pytest.raises(TakenOver):  # replica A comes back: it may not write the adopted trade
        a.save("alice", quoted)
    quoted.status = pb.TRADE_STATUS_FILLED
    b.save("alice", quoted)  # the new owner may
    assert a.get("alice", quoted.request_id).result.status == pb.TRADE_STATUS_FILLED
    assert [u.record.request_id for u in b.unfinished()] == [paper_sent.request_id]


def test_a_replica_with_nothing_left_leaves_the_registry(client):
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    claimed(a, pb.TRADE_STATUS_VALIDATED)
    client.sadd(REGISTRY, "replica-a")
    assert len(b.adopt("replica-a")) == 1
    assert not client.sismember(REGISTRY, "replica-a") and not client.exists("tw:running:replica-a")


async def test_presence_beats_notices_its_own_lapse_and_sweeps_the_dead(client):
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    resumed: list[list] = []

    async def resume(trades):
        resumed.append([u.record.request_id for u in trades])

    metrics = Metrics()
    on_a = ReplicaPresence(client, "replica-a", 5.0, a.adopt, resume)
    on_b = ReplicaPresence(client, "replica-b", 5.0, b.adopt, resume, metrics)
    assert on_a.beat() and on_b.beat()
    assert 4_000 < client.pttl(presence_key("replica-a")) <= 5_000
    trade = claimed(a, pb.TRADE_STATUS_QUOTED)
    assert on_b.dead() == [] and await on_b.sweep() == 0
    assert metrics.registry.get_sample_value("tradewire_replicas_alive") == 2

    client.delete(presence_key("replica-a"))  # A stalled past its time to live
    assert on_b.dead() == ["replica-a"]
    assert await on_b.sweep() == 1 and resumed == [[trade.request_id]]
    assert metrics.registry.get_sample_value("tradewire_replicas_alive") == 1
    assert metrics.registry.get_sample_value("tradewire_trades_handed_over_total", {"direction": "adopted"}) == 1
    assert not on_a.beat()  # A's next beat finds it was presumed dead
    assert on_a.beat()  # and it is alive again from then on
    with pytest.raises(TakenOver):
        a.save("alice", trade)

    await on_b.stop(leave=True)  # a graceful stop drops the presence at once
    assert not client.exists(presence_key("replica-b"))


def test_a_trade_the_store_lost_is_not_written_back(client):
    a = RedisTradeStore(client, "replica-a")
    trade = claimed(a, pb.TRADE_STATUS_QUOTED)
    client.flushdb()  # Redis restarted without its data
    trade.status = pb.TRADE_STATUS_FILLED
    with pytest.raises(TradeLost):
        a.save("alice", trade)
    assert a.get("alice", trade.request_id) is None


async def test_replicas_do_not_take_each_others_trades_when_every_presence_lapsed_at_once(client):
    """After a Redis outage (or a stall of the whole store) every presence has expired at once:
    a replica judges the others only once its own beats have held for a whole ttl, by which
    time every live replica has beaten again. A replica that really stopped is still taken over."""
    ttl_s = 0.3
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    resumed: list[str] = []

    async def resume(trades):
        resumed.extend(u.record.request_id for u in trades)

    on_a = ReplicaPresence(client, "replica-a", ttl_s, a.adopt, resume)
    on_b = ReplicaPresence(client, "replica-b", ttl_s, b.adopt, resume)
    on_a.start(), on_b.start()
    trade_a, trade_b = claimed(a, pb.TRADE_STATUS_QUOTED), claimed(b, pb.TRADE_STATUS_QUOTED)
    try:
        client.delete(presence_key("replica-a"), presence_key("replica-b"))  # both lapsed at once
        beats = on_a._beats, on_b._beats
        await eventually(lambda: on_a._beats >= beats[0] + 8 and on_b._beats >= beats[1] + 8,
                         timeout=10, what="both replicas beating for over two ttls")
        assert resumed == []  # nobody took anybody's trade
        assert a.owner("alice", trade_a.request_id) == "replica-a"
        assert b.owner("alice", trade_b.request_id) == "replica-b"

        await on_a.stop(leave=False)  # A really stops: its presence lapses, and only its own
        await eventually(lambda: resumed == [trade_a.request_id], timeout=10, what="B to take over A's trade")
        assert a.owner("alice", trade_a.request_id) == "replica-b"
    finally:
        await on_a.stop(leave=False)
        await on_b.stop(leave=False)


async def test_a_trade_taken_over_that_cannot_go_on_ends_on_the_streams_following_it(client, redis_server):
    """Its first events were published by the replica that died, not stored: the end the adopter
    writes comes after them, on the shared stream, so a stream following it on any replica ends."""
    async_client = aredis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{TAKEOVER_DB}")
    hub_a, hub_b = StatusHub(bus=RedisEventBus(async_client)), StatusHub(bus=RedisEventBus(async_client))
    gate = Gate()
    on_a = paper_runner(RedisTradeStore(client, "replica-a"), hub_a, ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate]))
    on_b = paper_runner(RedisTradeStore(client, "replica-b"), hub_b, ScriptedExecutor(FILLS))
    who = f"alice-{uuid.uuid4().hex[:8]}"
    running = on_a.admit(order("drift", who))
    await gate.reached.wait()
    await hub_a.bus.flush(5)
    follower = asyncio.create_task(collect(hub_b.follow((who, "drift"), 1, 1.0)))  # a stream on B

    (adopted,) = on_b.store.adopt("replica-a")  # A stopped beating
    cannot_go_on = UnfinishedTrade(adopted.record, None)  # (e.g. it no longer validates here)
    assert await on_b.recover([cannot_go_on]) == {"resumed": 0, "reconciled": 0, "failed": 1}
    events = await asyncio.wait_for(follower, 10)
    # RECEIVED … QUOTED from A, the end from B: after every number A may have published unstored
    assert [e.sequence for e in events[:-1]] == [1, 2, 3, 4] and events[-1].sequence > 4
    assert events[-1].terminal and events[-1].stage == pb.TRADE_STATUS_REJECTED
    assert on_b.store.get(who, "drift").events[-1].sequence == events[-1].sequence
    gate.open()
    await asyncio.gather(running.done, return_exceptions=True)
    await eventually(lambda: on_a.recorder.forgotten == ["drift"], what="A keeps no timing of the trade it lost")
    for hub in (hub_a, hub_b):
        await hub.bus.close()
    await async_client.aclose()


def paper_runner(store, hub, executor) -> TradeRunner:
    return runner(executor, store, RetryPolicy(max_attempts=1), hub=hub)


async def collect(events) -> list:
    return [e async for e in events if e.kind == pb.STATUS_KIND_TRANSITION]


async def test_a_trade_left_by_a_shutdown_is_said_to_go_on_on_another_replica(client):
    gate = Gate()
    on_a = paper_runner(RedisTradeStore(client, "replica-a"), StatusHub(),
                        ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate]))
    trade = on_a.admit(order("left", f"alice-{uuid.uuid4().hex[:8]}"))
    await gate.reached.wait()
    assert await on_a.interrupt_all() == 1
    with pytest.raises(TradewireError) as stopped:
        await trade.done
    assert stopped.value.reason == "SHUTTING_DOWN"
    assert "resumes on another replica (or here after the restart)" in stopped.value.message


class _Outage:
    """The client, failing every command while ``down`` (as redis-py does when Redis is away)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client, self.down, self.refused = client, False, 0

    def pipeline(self, *args, **kwargs):
        pipe = self._client.pipeline(*args, **kwargs)
        execute = pipe.execute

        def guarded():
            if self.down:
                self.refused += 1
                raise redis.ConnectionError("Connection refused.")
            return execute()
        pipe.execute = guarded
        return pipe

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_after_a_failed_beat_the_presence_is_renewed_soon_not_a_third_of_a_ttl_later(client):
    # A short Redis outage must not outlast the presence (ttl 6 s: a beat every 2 s).
    flaky = _Outage(client)
    store = RedisTradeStore(client, "replica-q")
    presence = ReplicaPresence(flaky, "replica-q", 6.0, store.adopt, lambda trades: asyncio.sleep(0))
    presence.start()
    try:
        flaky.down = True
        failed_at = presence._beats
        await eventually(lambda: flaky.refused >= 1, timeout=5, what="a beat tried while Redis is away")
        flaky.down = False
        back = asyncio.get_running_loop().time()
        await eventually(lambda: presence._beats > failed_at, timeout=5, what="the next beat")
        assert asyncio.get_running_loop().time() - back < 1.0
    finally:
        await presence.stop(leave=True)


async def test_a_redis_outage_is_said_when_it_starts_and_when_it_ends_not_per_failed_beat(client, caplog):
    flaky = _Outage(client)
    store = RedisTradeStore(client, "replica-o")
    presence = ReplicaPresence(flaky, "replica-o", 6.0, store.adopt, lambda trades: asyncio.sleep(0))
    caplog.set_level(logging.INFO, logger="tradewire.shared")
    presence.start()
    try:
        flaky.down = True
        await eventually(lambda: flaky.refused >= 8, timeout=10, what="eight beats tried while Redis is away")
        beats = presence._beats
        flaky.down = False
        await eventually(lambda: presence._beats > beats, timeout=5, what="the next beat")
    finally:
        await presence.stop(leave=True)
    said = [r for r in caplog.records if r.name == "tradewire.shared" and "replica presence" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in said] == [
        "replica presence (Redis) unavailable", "replica presence (Redis) answers again"], [r.getMessage() for r in said]
    assert said[1].failures >= 8 and said[1].outage_s > 0


async def test_a_replica_just_started_counts_the_replicas_alive_before_it_may_judge_them(client):
    """It adopts nothing for its first ttl (the others may not have beaten again yet), but the
    gauge of replicas alive is right from its first beat (it read 0 for that ttl: an alert on
    every deploy)."""
    metrics = Metrics()
    other = ReplicaPresence(client, "replica-c", 60.0, lambda replica: [], lambda trades: None)
    assert other.beat()
    starting = ReplicaPresence(client, "replica-d", 60.0, lambda replica: [], lambda trades: None, metrics)
    starting.start()
    try:
        await eventually(lambda: metrics.registry.get_sample_value("tradewire_replicas_alive") == 2, timeout=5,
                         what="the gauge counting both replicas")
    finally:
        await starting.stop()
        client.delete(presence_key("replica-c"))
        client.srem(REGISTRY, "replica-c", "replica-d")
