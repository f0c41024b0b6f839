"""StatusHub: shared event lists, waiting for a trade not opened yet, keep-alives, the SHUTDOWN
message, and the slow-consumer watchdog."""

import asyncio

import pytest

from lifecycle_support import until
from tradewire.core import lifecycle
from tradewire.core.errors import TradewireError
from tradewire.core.metrics import Metrics
from tradewire.core.status_hub import StatusHub
from tradewire.v1 import trade_pb2 as pb

KEY = ("alice", "t-1")


def event(sequence: int, status: int) -> pb.ExecutionStatus:
    return lifecycle.status_event(KEY[1], sequence, status)


async def collect(agen, into: list) -> None:
    async for item in agen:
        into.append(item)


async def test_subscribers_at_any_index_see_each_event_once_in_order():
    hub = StatusHub()
    hub.open(KEY)
    hub.publish(KEY, event(1, pb.TRADE_STATUS_RECEIVED))
    first, resumed = [], []
    tasks = [asyncio.create_task(collect(hub.follow(KEY, 0), first)),
             asyncio.create_task(collect(hub.follow(KEY, 3), resumed))]
    for sequence, status in enumerate((pb.TRADE_STATUS_VALIDATED, pb.TRADE_STATUS_ROUTED, pb.TRADE_STATUS_REJECTED),
                                      start=2):
        await asyncio.sleep(0)
        hub.publish(KEY, event(sequence, status))
    await asyncio.gather(*tasks)
    assert [e.sequence for e in first] == [1, 2, 3, 4]
    assert [e.sequence for e in resumed] == [3, 4]
    late = [e async for e in hub.follow(KEY, 2)]  # after the end: from memory
    assert [e.sequence for e in late] == [2, 3, 4]


async def test_a_subscriber_may_come_before_the_trade():
    hub = StatusHub()
    waiting = asyncio.create_task(hub.wait_opened(KEY, 5))
    await asyncio.sleep(0)
    hub.open(KEY)
    assert await waiting
    assert not await hub.wait_opened(("alice", "never"), 0.01)
    assert hub._pending == {}  # nothing left behind by the waits


async def test_idle_followers_get_heartbeats_with_the_current_stage():
    hub = StatusHub()
    hub.open(KEY)
    hub.publish(KEY, event(1, pb.TRADE_STATUS_RECEIVED))
    follower = hub.follow(KEY, 0, heartbeat_s=0.01)
    assert (await anext(follower)).sequence == 1
    beat = await anext(follower)
    assert beat.kind == pb.STATUS_KIND_HEARTBEAT and beat.stage == pb.TRADE_STATUS_RECEIVED
    assert beat.percent_complete == 5 and beat.sequence == 0 and beat.message
    await follower.aclose()


async def test_shutdown_ends_open_followers_with_where_to_resume():
    hub = StatusHub()
    hub.open(KEY)
    for sequence, status in enumerate((pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_VALIDATED), start=1):
        hub.publish(KEY, event(sequence, status))
    seen: list = []
    task = asyncio.create_task(collect(hub.follow(KEY, 0), seen))
    await until(lambda: len(seen) == 2)
    hub.shutdown()
    await task
    assert seen[-1].kind == pb.STATUS_KIND_SHUTDOWN and "from_sequence=3" in seen[-1].message
    assert seen[-1].stage == pb.TRADE_STATUS_VALIDATED


async def test_an_abandoned_trade_tells_its_followers_to_resume_elsewhere():
    hub = StatusHub()
    hub.open(KEY)
    hub.publish(KEY, event(1, pb.TRADE_STATUS_RECEIVED))
    seen: list = []
    task = asyncio.create_task(collect(hub.follow(KEY, 0), seen))
    await until(lambda: len(seen) == 1)
    hub.abandon(KEY)
    await task
    assert seen[-1].kind == pb.STATUS_KIND_SHUTDOWN and "from_sequence=2" in seen[-1].message
    # (the replica serves on: it said "server shutting down")
    assert "no longer runs the trade" in seen[-1].message and "shutting down" not in seen[-1].message


async def test_a_consumer_parked_too_long_is_dropped_and_released():
    metrics = Metrics()
    hub = StatusHub(slow_consumer_s=0.05, metrics=metrics)
    hub.open(KEY)
    hub.publish(KEY, event(1, pb.TRADE_STATUS_RECEIVED))
    hub.publish(KEY, event(2, pb.TRADE_STATUS_VALIDATED))
    blocked = asyncio.Event()

    async def slow_reader():
        sub = hub.subscribe("status")
        follower = hub.follow(KEY, 0, subscription=sub)
        try:
            await anext(follower)
            await blocked.wait()  # a transport that never accepts the next message
        finally:
            await follower.aclose()
            hub.unsubscribe(sub, "client_gone")

    reader = asyncio.create_task(slow_reader())
    terminated = []
    hub.on_drop(reader, terminated.append)  # how a transport ends the call (gRPC: a status)
    await until(lambda: hub.open_streams == 1)
    assert hub.sweep() == 0  # not parked long enough yet
    hub.start()
    try:
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 2)
    finally:
        await hub.stop()
    assert reader.cancelled()
    assert [e.reason for e in terminated] == ["SLOW_CONSUMER"] and terminated[0].code.name == "RESOURCE_EXHAUSTED"
    assert hub.open_streams == 0
    assert metrics.stream_closes.labels("status", "slow_consumer")._value.get() == 1
    assert metrics.stream_subscribers._value.get() == 0


async def test_memory_is_released_after_a_burst_of_streams():
    metrics = Metrics()
    hub = StatusHub(metrics=metrics)
    subs = [hub.subscribe("status") for _ in range(250)]
    assert not await hub.release_memory()
    for sub in subs:
        hub.unsubscribe(sub, "completed")
    if hub._trim is None:  # not glibc
        return
    assert not await hub.release_memory()  # still closing a moment ago: wait for a quiet look
    assert await hub.release_memory()
    assert not await hub.release_memory()  # once per burst
    assert metrics.memory_releases._value.get() == 1


async def test_open_streams_are_bounded_per_caller_and_in_all():
    hub = StatusHub(max_open_per_caller=2, max_open_total=3)
    alices = [hub.subscribe("status", "alice"), hub.subscribe("session", "alice")]
    with pytest.raises(TradewireError) as per_caller:
        hub.subscribe("status", "alice")
    assert per_caller.value.reason == "TOO_MANY_STREAMS" and "limit 2" in per_caller.value.message
    bobs = hub.subscribe("status", "bob")  # another caller is not held back by alice's
    with pytest.raises(TradewireError) as in_all:
        hub.subscribe("status", "carol")
    assert in_all.value.reason == "TOO_MANY_STREAMS" and "limit 3" in in_all.value.message
    hub.unsubscribe(alices[0], "completed")  # closing one frees its place, for its caller and in all
    hub.unsubscribe(alices[0], "completed")  # (twice is once)
    assert hub.subscribe("status", "alice") and hub.open_streams == 3
    hub.unsubscribe(bobs, "completed")
    assert hub.subscribe("status", "carol")
