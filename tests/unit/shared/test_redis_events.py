"""Status events reach Redis without the event loop waiting on it: in order, batched, and
kept (then sent) while Redis is away."""

import asyncio
import uuid

import redis.asyncio as aredis

from support.redis_server import RedisServer
from tradewire.core.shared import READ_TIMEOUT_S, blocking_read_s
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.v1 import trade_pb2 as pb


def event(request_id: str, sequence: int, terminal: bool = False) -> pb.ExecutionStatus:
    return pb.ExecutionStatus(request_id=request_id, sequence=sequence, terminal=terminal,
                              stage=pb.TRADE_STATUS_FILLED if terminal else pb.TRADE_STATUS_ROUTED)


def stream_of(client, key) -> list[pb.ExecutionStatus]:
    return [pb.ExecutionStatus.FromString(fields[b"e"])
            for _, fields in client.xrange(f"tw:events:{key[0]}:{key[1]}")]


async def test_events_land_in_order_and_a_finished_stream_expires(redis_server):
    bus = RedisEventBus(aredis.Redis.from_url(redis_server.url), retain_s=120)
    key = ("alice", f"t-{uuid.uuid4().hex[:8]}")
    for sequence in range(1, 10):
        bus.publish(key, event(key[1], sequence, terminal=sequence == 9))  # no await: the loop never waits
    assert await bus.flush(timeout=10)
    client = redis_server.client()
    assert [e.sequence for e in stream_of(client, key)] == list(range(1, 10))
    assert 0 < client.ttl(f"tw:events:{key[0]}:{key[1]}") <= 120
    followed = [e.sequence async for e in bus.follow(key, 4, heartbeat_s=1)]
    assert followed == list(range(4, 10))
    await bus.close()


async def test_a_backlog_of_many_trades_lands_whole_with_what_was_already_sent_skipped(redis_server):
    # More entries than one call carries, across trades; some landed before (a reply was lost).
    bus = RedisEventBus(aredis.Redis.from_url(redis_server.url), retain_s=120)
    keys = [("bob", f"t-{uuid.uuid4().hex[:8]}-{n}") for n in range(120)]
    client = redis_server.client()
    client.config_resetstat()
    client.xadd(f"tw:events:{keys[7][0]}:{keys[7][1]}", {"e": event(keys[7][1], 1).SerializeToString()}, id="0-1")
    for sequence in range(1, 10):
        for key in keys:
            bus.publish(key, event(key[1], sequence, terminal=sequence == 9))
    assert await bus.flush(timeout=30)
    for key in keys:
        assert [e.sequence for e in stream_of(client, key)] == list(range(1, 10)), key
        assert 0 < client.ttl(f"tw:events:{key[0]}:{key[1]}") <= 120
    # a few script calls (each at most 500 entries), not one command per event
    assert 1 <= client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) <= 1080 // 500 + 2
    await bus.close()


def test_blocking_reads_stay_within_the_read_timeout_also_when_redis_py_chose_it(redis_server):
    # A client built without socket_timeout has redis-py's default (5 s), not "no timeout".
    assert blocking_read_s(aredis.Redis.from_url(redis_server.url), 15.0) == READ_TIMEOUT_S / 2
    assert blocking_read_s(aredis.Redis.from_url(redis_server.url, socket_timeout=0.4), 15.0) == 0.2
    assert blocking_read_s(aredis.Redis.from_url(redis_server.url, socket_timeout=None), 15.0) == 15.0


async def test_a_stream_idle_longer_than_the_read_timeout_gets_heartbeats_then_its_events(redis_server):
    # redis-py fails a read that outlasts socket_timeout (5 s by default): blocking reads stay shorter
    # (a read timeout of 1 s: its reads block 0.5 s, leaving 0.5 s for a busy machine's stalls)
    bus = RedisEventBus(aredis.Redis.from_url(redis_server.url, socket_timeout=1.0))
    key = ("carol", f"t-{uuid.uuid4().hex[:8]}")
    followed = bus.follow(key, 1, heartbeat_s=2.0)
    started = asyncio.get_running_loop().time()
    first = await anext(followed)  # nothing happens for longer than the read timeout
    assert first.kind == pb.STATUS_KIND_HEARTBEAT and asyncio.get_running_loop().time() - started >= 2.0
    bus.publish(key, event(key[1], 1, terminal=True))
    assert [e.sequence async for e in followed if e.kind != pb.STATUS_KIND_HEARTBEAT] == [1]
    await bus.close()


async def test_events_published_while_redis_is_away_arrive_once_it_is_back(tmp_path):
    later = RedisServer(tmp_path / "redis")  # its port is chosen; nothing listens there yet
    bus = RedisEventBus(aredis.Redis.from_url(later.url, socket_connect_timeout=0.5))
    key = ("bob", f"t-{uuid.uuid4().hex[:8]}")
    for sequence in (1, 2, 3):
        bus.publish(key, event(key[1], sequence))
    assert not await bus.flush(timeout=0.3)  # Redis is down: kept, not lost
    later.start()
    try:
        bus.publish(key, event(key[1], 4, terminal=True))
        assert await bus.flush(timeout=15)
        assert [e.sequence for e in stream_of(later.client(), key)] == [1, 2, 3, 4]
        await bus.close()
    finally:
        later.stop()


async def test_a_stream_of_a_trade_whose_end_was_stored_but_never_published_ends_with_it(redis_server):
    """The replica running a trade stopped between storing its end and publishing it: a stream
    following the trade from another replica ends with the stored end at its next quiet spell."""
    from tradewire.core.status_hub import StatusHub

    client = aredis.Redis.from_url(redis_server.url)
    runner_bus = RedisEventBus(client, retain_s=120)
    key = ("alice", f"t-{uuid.uuid4().hex[:8]}")
    stored = tuple(event(key[1], sequence, terminal=sequence == 9) for sequence in range(1, 10))
    for e in stored[:7]:  # published up to 7; 8 and 9 only stored
        runner_bus.publish(key, e)
    assert await runner_bus.flush(timeout=10)

    reads = iter([stored[:7]])  # when the stream opens, the end is not stored yet; then it is
    hub = StatusHub(bus=RedisEventBus(client, retain_s=120), heartbeat_s=0.2)
    async with asyncio.timeout(10):  # (it waited for good)
        followed = [e async for e in hub.follow(key, 3, load_stored=lambda: next(reads, stored))]
    assert [e.sequence for e in followed if e.kind != pb.STATUS_KIND_HEARTBEAT] == list(range(3, 10))
    assert followed[-1].terminal
    await runner_bus.close()
