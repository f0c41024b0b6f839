"""A claim the shared store made without its answer reaching the replica (a reply lost to a
timeout): the caller was told STORE_UNAVAILABLE, and the trade — this replica's in the store,
run by nothing — is resumed here once the store answers, so a retry gets its outcome instead
of following it forever. A claim that never reached the store leaves nothing to resume."""

import uuid

import pytest
import redis

from support.trading import eventually
from tradewire.core import claims_in_doubt
from tradewire.core.inflight import InFlightRegistry
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared import STORE_OUTAGES
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.trades import TradeRunner
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLED_PATH, FILLS, MARKET, FakeRecorder, ScriptedExecutor, order, stages


class AnswerLost(RedisTradeStore):
    """The next claim is made (or not, with ``lands`` False), and its caller gets a timeout."""

    lands = True
    lose_next = True

    def claim(self, *args, **kwargs):
        if not self.lose_next:
            return super().claim(*args, **kwargs)
        self.lose_next = False
        if self.lands:
            super().claim(*args, **kwargs)
        raise redis.TimeoutError("Timeout reading from socket")


def runner(store, executor) -> TradeRunner:
    recorder = FakeRecorder()
    r = TradeRunner(store, StatusHub(), {pb.TRADING_MODE_PAPER: executor}, recorder,
                    InFlightRegistry(10, 100, recorder.metrics), RetryPolicy(max_attempts=1), None, MARKET)
    r.store_outages = STORE_OUTAGES
    return r


@pytest.fixture
def who() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


async def test_a_claim_made_without_an_answer_is_resumed_and_a_retry_gets_its_outcome(redis_server, who):
    store = AnswerLost(redis_server.client(), "replica-a")
    executor = ScriptedExecutor(FILLS)
    r = runner(store, executor)
    with pytest.raises(redis.TimeoutError):
        await r.execute(order("t-1", who))
    try:
        stored = await eventually(lambda: (lambda rec: rec if rec and rec.result.status == pb.TRADE_STATUS_FILLED
                                           else None)(store.get(who, "t-1")), timeout=10, what="the trade filled")
        assert stages(stored.events) == FILLED_PATH and executor.started == 1
        assert (await r.execute(order("t-1", who))).status == pb.TRADE_STATUS_FILLED  # the retry: its outcome
        assert executor.started == 1 and len(r.claims_in_doubt) == 0
    finally:
        await r.drain(5)


async def test_a_claim_that_never_landed_is_forgotten_and_a_retry_runs_it(redis_server, who, monkeypatch):
    monkeypatch.setattr(claims_in_doubt, "GRACE_S", 0.2)
    store = AnswerLost(redis_server.client(), "replica-a")
    store.lands = False
    executor = ScriptedExecutor(FILLS)
    r = runner(store, executor)
    with pytest.raises(redis.TimeoutError):
        await r.execute(order("t-1", who))
    try:
        await eventually(lambda: len(r.claims_in_doubt) == 0, timeout=10, what="the doubt settled")
        assert store.get(who, "t-1") is None and executor.started == 0
        assert (await r.execute(order("t-1", who))).status == pb.TRADE_STATUS_FILLED
        assert executor.started == 1
    finally:
        await r.drain(5)
