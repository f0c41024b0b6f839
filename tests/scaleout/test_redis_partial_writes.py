"""Shared state on one Redis stays whole when Redis stops answering part-way through a write,
or restarts without its data: what one replica wrote is never left half done for the others to
trip on, and nothing it leaves behind stays in Redis for good."""

import uuid

import pytest
import redis
import redis.asyncio as aredis

from support.redis_server import RedisServer
from tradewire.core.portfolio import Holding
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.v1 import trade_pb2 as pb

PAPER = 1
SOL, USDC = "sol-mint", "usdc-mint"


class Faults:
    """A Redis that answers ``budget`` more commands (each a packet: a script call, a pipeline),
    then none until ``budget`` is None again — an outage that starts in the middle of a call."""

    def __init__(self) -> None:
        self.budget: int | None = None

    def client(self, url: str) -> redis.Redis:
        pool = redis.ConnectionPool.from_url(url)
        base, faults = pool.connection_class, self

        class Connection(base):  # type: ignore[valid-type, misc]
            def send_packed_command(self, *args, **kwargs):
                if faults.budget is not None:
                    if faults.budget <= 0:
                        raise redis.ConnectionError("Redis went away (test)")
                    faults.budget -= 1
                return super().send_packed_command(*args, **kwargs)

        pool.connection_class = Connection
        return redis.Redis(connection_pool=pool)


@pytest.fixture
def faults():
    return Faults()


def test_a_starting_wallet_cut_off_by_an_outage_is_given_whole_once_redis_is_back(redis_server, faults):
    store = RedisTradeStore(faults.client(redis_server.url), "replica-a")
    other = RedisTradeStore(redis.Redis.from_url(redis_server.url), "replica-b")
    wallet = [Holding(SOL, 1_000_000, 0, 0), Holding(USDC, 500, 0, 0)]
    store.ensure_wallet(f"warm-{uuid.uuid4().hex[:8]}", PAPER, wallet)  # (its first call loads what it needs)
    principal = f"p-{uuid.uuid4().hex[:8]}"
    faults.budget = 1  # Redis takes the first command of the next call, then stops answering
    try:
        store.ensure_wallet(principal, PAPER, wallet)
    except redis.ConnectionError:
        pass  # the caller is told STORE_UNAVAILABLE and tries again
    faults.budget = None  # back
    store.ensure_wallet(principal, PAPER, wallet)
    expected = {h.mint: h for h in wallet}
    assert store.holdings(principal, PAPER) == expected
    assert other.holdings(principal, PAPER) == expected
    other.ensure_wallet(principal, PAPER, wallet)  # given once: never twice
    assert other.holdings(principal, PAPER) == expected


def event(request_id: str, sequence: int, terminal: bool = False) -> pb.ExecutionStatus:
    return pb.ExecutionStatus(request_id=request_id, sequence=sequence, terminal=terminal,
                              stage=pb.TRADE_STATUS_FILLED if terminal else pb.TRADE_STATUS_SIGNED)


def sequences(client: redis.Redis, key: tuple[str, str]) -> list[int]:
    return [pb.ExecutionStatus.FromString(fields[b"e"]).sequence
            for _, fields in client.xrange(f"tw:events:{key[0]}:{key[1]}")]


async def test_status_events_of_a_trade_redis_lost_in_a_restart_do_not_stay_for_good(tmp_path):
    """Its runner sends what it had queued to the Redis that came back empty, and the trade never
    ends there (it is lost): its stream still expires."""
    server = RedisServer(tmp_path / "redis").start()
    bus = RedisEventBus(aredis.Redis.from_url(server.url, socket_timeout=2), retain_s=120)
    key = ("alice", f"lost-{uuid.uuid4().hex[:8]}")
    try:
        for sequence in (1, 2):
            bus.publish(key, event(key[1], sequence))
        assert await bus.flush(timeout=10)
        server.halt()  # its data with it
        bus.publish(key, event(key[1], 3))
        server.start()
        assert await bus.flush(timeout=20)
        client = server.client()
        # The stream no longer says which run it holds, so an event of a run past its first is not
        # written (a run that ran again drops its stream at its claim: this could be the earlier
        # run's tail); what is written expires either way.
        assert sequences(client, key) in ([], [3])
        assert client.ttl(f"tw:events:{key[0]}:{key[1]}") != -1  # -2: none; else it expires
    finally:
        await bus.close()
        server.stop()


async def test_a_request_id_claimed_anew_streams_only_its_own_events(redis_server):
    """Events left under a request id by a trade Redis lost (its record gone, its runner's queued
    events sent again) are not mixed into the stream of the trade claimed next under that id, nor
    do they take its sequence numbers."""
    client = redis_server.client()
    store = RedisTradeStore(client, "replica-a")
    bus = RedisEventBus(aredis.Redis.from_url(redis_server.url), retain_s=120)
    key = ("alice", f"again-{uuid.uuid4().hex[:8]}")
    try:
        for sequence in (5, 6):  # what the lost trade's runner sent once Redis was back
            bus.publish(key, event(key[1], sequence))
        assert await bus.flush(timeout=10)
        result = pb.TradeResult(request_id=key[1], status=pb.TRADE_STATUS_RECEIVED, mode=pb.TRADING_MODE_PAPER)
        assert store.claim(key[0], key[1], "fp", result) is None  # a new trade
        for sequence in (1, 2, 3):
            bus.publish(key, event(key[1], sequence, terminal=sequence == 3))
        assert await bus.flush(timeout=10)
        assert sequences(client, key) == [1, 2, 3]
        bus.publish(key, event(key[1], 2))  # a late re-send: skipped, the finished stream's expiry kept
        assert await bus.flush(timeout=10)
        assert 0 < client.ttl(f"tw:events:{key[0]}:{key[1]}") <= 120
    finally:
        await bus.close()
