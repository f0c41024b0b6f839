"""A trade refused before anything was sent because something was unavailable (UNAVAILABLE:
an open circuit, an upstream, the store, a shutdown) invited its caller to retry: the retry
with the same request id and payload runs it again, on either store and on any replica. Any
other refusal is the request id's answer for good, and a different payload is still refused."""

import json
import uuid

import pytest

from tradewire.core.config import WebhooksConfig
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import Outcome
from tradewire.core.inflight import InFlightRegistry
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared.redis_events import events_stream_key
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import HistoryQuery
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.trades import TradeRunner
from tradewire.core.webhooks.dispatcher import WebhookDispatcher
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLED_PATH, FILLS, MARKET, FakeRecorder, ScriptedExecutor, order, stages

CIRCUIT_OPEN = Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError("CIRCUIT_OPEN", "LIVE trades are paused"))
NO_FUNDS = Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError("INSUFFICIENT_FUNDS", "needs 5, has 0"))


@pytest.fixture(params=["sqlite", "redis"])
def stores(request, tmp_path):
    """Two replicas' stores (the embedded store has one replica: the same store twice)."""
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "trades.db")
        return store, store
    client = request.getfixturevalue("redis_server").client()
    return RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")


def runner(store, executor, webhooks: bool = False) -> TradeRunner:
    recorder = FakeRecorder()
    dispatcher = WebhookDispatcher(store, WebhooksConfig(allow_private_request_urls=True), b"s3cret") \
        if webhooks else None  # (never started: the test reads what is queued)
    return TradeRunner(store, StatusHub(), {pb.TRADING_MODE_PAPER: executor}, recorder,
                       InFlightRegistry(10, 100, recorder.metrics), RetryPolicy(max_attempts=1), dispatcher, MARKET)


async def refused(r: TradeRunner, trade_order) -> TradewireError:
    with pytest.raises(TradewireError) as caught:
        await r.execute(trade_order)
    return caught.value


async def test_a_trade_refused_for_unavailability_runs_again_when_retried(stores):
    first_store, second_store = stores
    who = f"alice-{uuid.uuid4().hex[:8]}"
    first = runner(first_store, ScriptedExecutor([pb.TRADE_STATUS_QUOTED, CIRCUIT_OPEN]))
    assert (await refused(first, order("t-1", who))).reason == "CIRCUIT_OPEN"
    if isinstance(second_store, RedisTradeStore):  # the first attempt's events, as a bus would have kept them
        second_store._r.xadd(events_stream_key(who, "t-1"), {"e": b"old"}, id="0-6")

    executor = ScriptedExecutor(FILLS)
    second = runner(second_store, executor)  # (the other replica, with Redis)
    result = await second.execute(order("t-1", who, amount="0.010"))  # same order, spelled differently
    assert result.status == pb.TRADE_STATUS_FILLED and executor.started == 1
    stored = second_store.get(who, "t-1")
    assert stored.result.status == pb.TRADE_STATUS_FILLED and stored.result.error.reason == ""
    assert stages(stored.events) == FILLED_PATH and [e.sequence for e in stored.events] == list(range(1, 10))
    assert [t.request_id for t in second_store.history(who, HistoryQuery(), 10, None).trades] == ["t-1"]  # one trade
    if isinstance(second_store, RedisTradeStore):
        assert not second_store._r.exists(events_stream_key(who, "t-1"))

    assert await second.execute(order("t-1", who)) == result  # now filled: a replay answers it
    assert executor.started == 1


@pytest.mark.parametrize("first, retry, reason", [
    (NO_FUNDS, {}, "INSUFFICIENT_FUNDS"),  # any other refusal is the request id's answer for good
    (CIRCUIT_OPEN, {"amount": "0.02"}, "DUPLICATE_REQUEST_MISMATCH"),  # only the same order runs again
], ids=["another-refusal", "another-payload"])
async def test_nothing_else_runs_again(stores, first, retry, reason):
    store, _ = stores
    who = f"alice-{uuid.uuid4().hex[:8]}"
    executor = ScriptedExecutor([first], FILLS)
    r = runner(store, executor)
    await refused(r, order("t-1", who))
    assert (await refused(r, order("t-1", who, **retry))).reason == reason
    assert executor.started == 1


async def test_only_the_end_of_the_run_that_counts_is_announced_by_webhook(stores):
    first_store, second_store = stores
    who, request_id = f"alice-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    hooks = {"webhook_url": "https://hooks.example/t"}
    first = runner(first_store, ScriptedExecutor([CIRCUIT_OPEN]), webhooks=True)
    await refused(first, order(request_id, who, **hooks))
    assert first_store.outbox_entries(request_id) == []  # not its end: the retry runs it again
    second = runner(second_store, ScriptedExecutor(FILLS), webhooks=True)
    await second.execute(order(request_id, who, **hooks))
    (entry,) = second_store.outbox_entries(request_id)
    assert json.loads(entry.body)["status"] == "TRADE_STATUS_FILLED"
