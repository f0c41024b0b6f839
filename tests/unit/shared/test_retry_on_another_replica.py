"""A retry that reaches another replica while the trade still runs where it was first sent
follows it there to its end, for ExecuteTrade and for a batch item alike; and when the first
call goes away before the trade is sent (which stops it there), the retry, still waiting,
runs the trade itself — once."""

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aredis

from tradewire.core.errors import TradewireError
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import HistoryQuery
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLED_PATH, FILLS, Gate, ScriptedExecutor, order, runner, stages


class Replicas:
    """Two runners on one Redis, each with its status hub on the shared event bus; the first
    holds its trades at a gate after QUOTED, the second fills them."""

    def __init__(self, redis_server) -> None:
        self.bus_client = aredis.Redis.from_url(redis_server.url)
        self.gate = Gate()
        self.first_executor = ScriptedExecutor([pb.TRADE_STATUS_QUOTED, self.gate, *FILLS[1:]])
        self.second_executor = ScriptedExecutor(FILLS)
        self.first = self._runner(RedisTradeStore(redis_server.client(), "replica-a"), self.first_executor)
        self.second = self._runner(RedisTradeStore(redis_server.client(), "replica-b"), self.second_executor)
        self.following = asyncio.Event()  # set when the second replica starts following a trade
        follow = self.second.hub.follow

        def noted_follow(*args, **kwargs):
            self.following.set()
            return follow(*args, **kwargs)

        self.second.hub.follow = noted_follow

    def _runner(self, store, executor):
        return runner(executor, store, RetryPolicy(max_attempts=1), hub=StatusHub(bus=RedisEventBus(self.bus_client)))

    async def close(self) -> None:
        self.gate.open()
        for r in (self.first, self.second):
            await r.hub.bus.close()
        await self.bus_client.aclose()


@pytest.fixture
async def replicas(redis_server):
    pair = Replicas(redis_server)
    yield pair
    await pair.close()


def someone() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


async def first_call_and_a_retry_following_it(replicas: Replicas, request_id: str, who: str):
    """The first call, its trade held on the first replica, and a retry following it on the second."""
    first_call = asyncio.create_task(replicas.first.execute(order(request_id, who)))
    await replicas.gate.reached.wait()
    retry = asyncio.create_task(replicas.second.execute(order(request_id, who)))
    await asyncio.wait_for(replicas.following.wait(), 10)
    return first_call, retry


async def test_the_retry_runs_the_trade_when_the_first_call_goes_away_before_it_is_sent(replicas):
    who = someone()
    first_call, retry = await first_call_and_a_retry_following_it(replicas, "t-1", who)

    first_call.cancel()  # its caller hung up: the trade is stopped on the first replica, unsent
    with pytest.raises(asyncio.CancelledError):
        await first_call
    result = await asyncio.wait_for(retry, 10)

    assert result.status == pb.TRADE_STATUS_FILLED
    assert replicas.gate.interrupted and replicas.second_executor.started == 1
    store = replicas.second.store
    stored = store.get(who, "t-1")
    assert stored.result.status == pb.TRADE_STATUS_FILLED and stages(stored.events) == FILLED_PATH
    assert [t.request_id for t in store.history(who, HistoryQuery(), 10, None).trades] == ["t-1"]  # one trade
    assert await replicas.first.execute(order("t-1", who)) == result  # answered as filled everywhere now


async def test_a_trade_its_caller_cancelled_is_not_run_again_by_the_retry(replicas):
    who = someone()
    first_call, retry = await first_call_and_a_retry_following_it(replicas, "t-2", who)

    await replicas.first.cancel(who, "t-2", "changed my mind")  # CancelTrade is final
    for call in (first_call, retry):
        with pytest.raises(TradewireError) as stopped:
            await asyncio.wait_for(call, 10)
        assert stopped.value.reason == "TRADE_CANCELLED"
    assert replicas.second_executor.started == 0


async def test_a_batch_item_running_on_another_replica_is_answered_with_its_end(replicas):
    who = someone()
    first_call = asyncio.create_task(replicas.first.execute(order("t-3", who)))
    await replicas.gate.reached.wait()
    item = asyncio.create_task(replicas.second.result_of(order("t-3", who), time.monotonic() + 10))
    await asyncio.wait_for(replicas.following.wait(), 10)
    assert not item.done()  # not the stage it had reached: its end

    replicas.gate.open()
    result = await asyncio.wait_for(item, 10)
    assert result.status == pb.TRADE_STATUS_FILLED and result == await first_call
    assert replicas.second_executor.started == 0


async def test_a_batch_item_running_on_another_replica_past_the_call_s_deadline_goes_on(replicas):
    who = someone()
    first_call = asyncio.create_task(replicas.first.execute(order("t-4", who)))
    await replicas.gate.reached.wait()
    with pytest.raises(TradewireError) as late:
        await replicas.second.result_of(order("t-4", who), time.monotonic() + 0.2)
    assert late.value.reason == "DEADLINE_EXCEEDED" and "goes on" in late.value.message
    replicas.gate.open()
    assert (await first_call).status == pb.TRADE_STATUS_FILLED
