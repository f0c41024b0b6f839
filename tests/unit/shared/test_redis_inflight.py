"""The per-caller in-flight limit in Redis holds across replicas: a refused trade claims
nothing, a known request id takes no slot, a dead replica's leases lapse and a live
replica's are renewed. The slot is taken by the claim's script and given back by the final
save's. Each "replica" is its own registry, runner and store on one Redis."""

import asyncio
import uuid

import pytest

from support.trading import eventually
from tradewire.core.errors import TradewireError
from tradewire.core.inflight import InFlightRegistry
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared.redis_inflight import RedisInFlight
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import TradeRecord
from tradewire.core.trades import Trade, TradeRunner
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLS, MARKET, FakeRecorder, Gate, ScriptedExecutor, order


def caller() -> str:
    return f"caller-{uuid.uuid4().hex[:10]}"


def registry(client, replica_id: str, limit: int, max_total: int = 100, lease_s: float = 30.0) -> InFlightRegistry:
    return InFlightRegistry(limit, max_total, shared=RedisInFlight(client, replica_id, lease_s))


def replica(client, replica_id: str, executor, limit: int) -> TradeRunner:
    recorder = FakeRecorder()
    inflight = InFlightRegistry(limit, 100, recorder.metrics, RedisInFlight(client, replica_id))
    store = RedisTradeStore(client, replica_id)
    return TradeRunner(store, StatusHub(), {pb.TRADING_MODE_PAPER: executor}, recorder, inflight,
                       RetryPolicy(max_attempts=1), None, MARKET)


def reserve(registry: InFlightRegistry, key: tuple[str, str]) -> int | None:
    """What a claim does with the caller's slot: None when taken, else the caller's count."""
    refused = registry.shared.acquire(*key, registry.max_per_principal)
    if refused is None:
        registry.taken(key)
    return refused


def refusal(admit) -> TradewireError:
    with pytest.raises(TradewireError) as caught:
        admit()
    return caught.value


def redis_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def test_limit_holds_across_two_replicas(redis_server):
    client, who = redis_server.client(), caller()
    a, b = registry(client, "replica-a", limit=2), registry(client, "replica-b", limit=2)
    assert reserve(a, (who, "r1")) is None
    a.add((who, "r1"), "trade")
    assert reserve(b, (who, "r2")) is None
    b.add((who, "r2"), "trade")
    assert a.count(who) == 1 and b.count(who) == 1  # each replica sees its own below the limit...
    assert reserve(a, (who, "r3")) == 2 and reserve(b, (who, "r3")) == 2  # ...Redis sees the caller's two

    error = refusal(lambda: b.check(who, across_replicas=2))
    assert error.reason == "TOO_MANY_IN_FLIGHT" and error.code.name == "RESOURCE_EXHAUSTED"
    assert "across all replicas" in error.message and error.retry_after_s == 1.0
    assert [v.subject for v in error.quota_violations] == [f"principal:{who}"]

    a.remove((who, "r1"))  # a finished trade gives its slot back to every replica
    assert reserve(b, (who, "r3")) is None


def test_total_limit_stays_per_replica(redis_server):
    client, first, second = redis_server.client(), caller(), caller()
    a, b = registry(client, "replica-a", limit=5, max_total=1), registry(client, "replica-b", limit=5, max_total=1)
    reserve(a, (first, "r1"))
    a.add((first, "r1"), "trade")
    assert refusal(lambda: a.check(second)).metadata["scope"] == "total"
    b.check(second)  # replica B's own total is untouched
    assert reserve(b, (second, "r2")) is None


async def test_refused_trade_claims_nothing_and_may_be_retried(redis_server):
    client, who = redis_server.client(), caller()
    gate = Gate()
    a = replica(client, "replica-a", ScriptedExecutor([gate, *FILLS]), limit=2)
    b = replica(client, "replica-b", ScriptedExecutor(FILLS), limit=2)
    running = [a.admit(order(f"held-{i}", who)) for i in range(2)]

    error = refusal(lambda: b.admit(order("late", who)))
    assert error.reason == "TOO_MANY_IN_FLIGHT" and "across all replicas" in error.message
    assert b.store.get(who, "late") is None and b.in_flight(who) == 0

    gate.open()
    await asyncio.gather(*(trade.done for trade in running))
    retried = b.admit(order("late", who))  # the same request id, now that slots are free
    assert isinstance(retried, Trade)
    assert (await retried.done).status == pb.TRADE_STATUS_FILLED


async def test_known_request_id_takes_no_slot_and_is_answered_at_the_limit(redis_server):
    client, who = redis_server.client(), caller()
    gate = Gate()
    a = replica(client, "replica-a", ScriptedExecutor([gate, *FILLS]), limit=2)
    b = replica(client, "replica-b", ScriptedExecutor([gate, *FILLS]), limit=2)
    running = a.admit(order("x", who))

    assert isinstance(b.admit(order("x", who)), TradeRecord)  # running on A: B's slot is given back
    assert isinstance(a.admit(order("x", who)), TradeRecord)  # a replay on A keeps the running trade's lease
    other = b.admit(order("y", who))  # so exactly one slot was left
    assert refusal(lambda: b.admit(order("z", who))).reason == "TOO_MANY_IN_FLIGHT"
    assert refusal(lambda: a.admit(order("z", who))).reason == "TOO_MANY_IN_FLIGHT"

    for runner in (a, b):  # at the limit, a replay is still answered from the store
        assert isinstance(runner.admit(order("x", who)), TradeRecord)
    gate.open()
    await asyncio.gather(running.done, other.done)


async def test_a_claim_that_fails_takes_no_slot(redis_server, monkeypatch):
    client, who = redis_server.client(), caller()
    a = replica(client, "replica-a", ScriptedExecutor(FILLS), limit=1)

    def broken_claim(*args, **kwargs):
        raise ConnectionError("store unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(a.store, "claim", broken_claim)
        with pytest.raises(ConnectionError):
            a.admit(order("r1", who))
    trade = a.admit(order("r1", who))  # the failed attempt took no slot
    assert (await trade.done).status == pb.TRADE_STATUS_FILLED


async def test_the_claim_takes_the_slot_and_the_final_save_gives_it_back(redis_server):
    client, who = redis_server.client(), caller()
    a = replica(client, "replica-a", ScriptedExecutor(FILLS), limit=1)
    commands, real_execute = [], client.execute_command

    def counting(*args, **options):
        commands.append(args[0])
        return real_execute(*args, **options)

    client.execute_command = counting
    trade = a.admit(order("r1", who))
    assert commands == ["EVALSHA"]  # the claim, and the slot with it
    assert client.zcard(f"tw:inflight:{who}") == 1
    assert (await trade.done).status == pb.TRADE_STATUS_FILLED
    assert "ZREM" not in commands and client.zcard(f"tw:inflight:{who}") == 0  # given back by the final save
    assert isinstance(a.admit(order("r2", who)), Trade)  # so the next one is admitted at a limit of one
    await eventually(lambda: client.zcard(f"tw:inflight:{who}") == 0, timeout=10, what="the second trade to end")


async def test_leases_of_a_dead_replica_expire(redis_server):
    client, who = redis_server.client(), caller()
    # takes slots, then never renews; the lease is long enough that the first check sees them held
    dead = RedisInFlight(client, "dead-replica", lease_s=2.0)
    assert dead.acquire(who, "r1", limit=2) is None and dead.acquire(who, "r2", limit=2) is None
    alive = registry(client, "live-replica", limit=2)
    assert reserve(alive, (who, "r3")) == 2
    # (its two leases were taken a moment apart: wait for the later one, on Redis's clock)
    last_expiry_ms = max(score for _, score in client.zrange(f"tw:inflight:{who}", 0, -1, withscores=True))

    def redis_ms() -> float:
        seconds, micros = client.time()
        return seconds * 1000 + micros / 1000

    await eventually(lambda: redis_ms() > last_expiry_ms, timeout=10, what="the dead replica's leases to lapse")
    assert reserve(alive, (who, "r3")) is None and reserve(alive, (who, "r4")) is None
    assert reserve(alive, (who, "r5")) == 2


async def test_renewal_keeps_a_running_trade_counted_past_its_first_lease(redis_server):
    client, who = redis_server.client(), caller()
    lease_s = 0.3
    live = registry(client, "live-replica", limit=1, lease_s=lease_s)
    other = registry(client, "other-replica", limit=1)
    live.start()
    try:
        assert reserve(live, (who, "r1")) is None
        live.add((who, "r1"), "trade")
        first_expiry = client.zscore(f"tw:inflight:{who}", "live-replica\x00r1")
        # wait on Redis's clock (the one leases use) until three leases have passed
        await eventually(lambda: redis_ms(client) > first_expiry + 2 * lease_s * 1000, timeout=10, what="Redis time to pass the lease")
        assert reserve(other, (who, "r2")) == 1  # still counted: the lease was renewed
        assert client.zscore(f"tw:inflight:{who}", "live-replica\x00r1") > first_expiry
    finally:
        await live.stop()
    live.remove((who, "r1"))
    assert reserve(other, (who, "r2")) is None


def test_a_trade_taken_over_is_counted_once(redis_server):
    client, who = redis_server.client(), caller()
    a, b = RedisInFlight(client, "replica-a"), RedisInFlight(client, "replica-b")
    assert a.acquire(who, "r1", limit=5) is None and a.acquire(who, "r10", limit=5) is None
    b.hold(who, "r1")  # B resumes r1, adopted from A (presumed dead): A's lease on it goes
    assert sorted(client.zrange(f"tw:inflight:{who}", 0, -1)) == [b"replica-a\x00r10", b"replica-b\x00r1"]
