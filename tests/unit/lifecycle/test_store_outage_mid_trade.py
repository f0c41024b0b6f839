"""The shared store stops answering while a trade runs: its callers learn it at once
(UNAVAILABLE STORE_UNAVAILABLE, retryable), the trade keeps its task and ends once the store is
back — stored before its end is published — and a replay then gets that end."""

from decimal import Decimal

import pytest
import redis

from lifecycle_support import FILLED_PATH, FILLS, USDC, ScriptedExecutor, order, paper, runner, stages, until
from tradewire.core.market import format_units
from tradewire.core.errors import TradewireError
from tradewire.core.shared import STORE_OUTAGES
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb


class FlakyStore:
    """A store that does not answer while ``down``, failing as redis-py fails when Redis is away."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.down = False
        self.lose_reply_of: str | None = None  # this call is done, then the store goes down before it answers

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            answer = attr(*args, **kwargs)
            if name == self.lose_reply_of:
                self.lose_reply_of, self.down = None, True
                raise redis.ConnectionError("Connection closed by server.")
            return answer
        return call

    async def go_down(self) -> None:  # a step of a scripted executor
        self.down = True


def outage_runner(executor, store: FlakyStore):
    r = runner(executor, store)
    r.store_outages = STORE_OUTAGES
    return r


async def ended_once_back(r, store: FlakyStore, request_id: str = "t-1"):
    """The store answers again: the trade's record once the runner has ended it."""
    store.down = False
    await until(lambda: r.in_flight() == 0)
    return store.get("alice", request_id)


async def refused(call) -> TradewireError:
    with pytest.raises(TradewireError) as failure:
        await call
    return failure.value


async def test_a_trade_whose_end_cannot_be_stored_ends_once_the_store_is_back():
    store = FlakyStore(SqliteStore(":memory:"))
    r = outage_runner(ScriptedExecutor([*FILLS[:-1], store.go_down, FILLS[-1]]), store)

    failure = await refused(r.execute(order()))
    assert (failure.reason, failure.retry_after_s) == ("STORE_UNAVAILABLE", 1.0)
    assert stages(r.hub.channel_events(("alice", "t-1")))[-1] == pb.TRADE_STATUS_CONFIRMED  # its end not published
    assert r.in_flight() == 1 and r.recorder.fills == 0  # kept, with its task
    awaiting = r.recorder.metrics.trades_awaiting_store
    assert awaiting._value.get() == 1

    stored = await ended_once_back(r, store)
    assert awaiting._value.get() == 0
    assert stored.result.status == pb.TRADE_STATUS_FILLED and stages(stored.events) == FILLED_PATH
    assert [e.sequence for e in stored.events] == list(range(1, 10))
    assert stages(r.hub.channel_events(("alice", "t-1"))) == FILLED_PATH and r.recorder.fills == 1
    assert (await r.execute(order())).status == pb.TRADE_STATUS_FILLED  # the replay gets the stored end


async def test_a_trade_cut_off_before_the_point_of_no_return_sends_nothing_and_is_rejected():
    store = FlakyStore(SqliteStore(":memory:"))
    executor = ScriptedExecutor([FILLS[0], store.go_down, *FILLS[1:]])
    r = outage_runner(executor, store)

    failure = await refused(r.execute(order()))
    assert failure.reason == "STORE_UNAVAILABLE"
    assert executor.closed == 1  # parked at SIMULATED when its commit could not be stored: closed, never resumed

    stored = (await ended_once_back(r, store)).result
    assert stored.status == pb.TRADE_STATUS_REJECTED and stored.error.reason == "STORE_UNAVAILABLE"
    assert pb.TRADE_STATUS_SUBMITTED not in stages(r.hub.channel_events(("alice", "t-1")))


async def test_a_committed_paper_trade_cut_off_while_booking_is_settled_by_its_fill_id():
    sqlite = SqliteStore(":memory:")
    store = FlakyStore(sqlite)
    r = outage_runner(paper(store, latency_ms=400), store)  # lands 0.2 s after SUBMITTED
    trade = r.admit(order("landing"))
    await until(lambda: r.hub.channel_events(trade.key)[-1].stage == pb.TRADE_STATUS_SUBMITTED)
    wallet = sqlite.holdings("alice", pb.TRADING_MODE_PAPER)
    store.down = True  # the booking at landing does not get through

    failure = await refused(trade.done)
    assert failure.reason == "STORE_UNAVAILABLE"
    assert r.in_flight() == 1

    settled = (await ended_once_back(r, store, "landing")).result
    assert settled.status == pb.TRADE_STATUS_EXPIRED and "nothing was booked" in settled.error.message
    assert sqlite.holdings("alice", pb.TRADING_MODE_PAPER) == wallet


async def test_a_paper_booking_whose_answer_was_lost_ends_filled_with_what_was_booked():
    sqlite = SqliteStore(":memory:")
    store = FlakyStore(sqlite)
    executor = paper(store)
    r = outage_runner(executor, store)
    await executor.wallet("alice")
    before = sqlite.holdings("alice", pb.TRADING_MODE_PAPER)
    store.lose_reply_of = "apply_fill"

    assert (await refused(r.execute(order("lost-reply")))).reason == "STORE_UNAVAILABLE"
    booked = sqlite.holdings("alice", pb.TRADING_MODE_PAPER)
    assert booked != before  # it was booked; the runner could not know

    filled = (await ended_once_back(r, store, "lost-reply")).result
    assert filled.status == pb.TRADE_STATUS_FILLED
    assert filled.amount_out == format_units(
        Decimal(booked[USDC].amount - before[USDC].amount).scaleb(-6))  # USDC has 6 decimals
    assert sqlite.holdings("alice", pb.TRADING_MODE_PAPER) == booked  # booked once
    assert (await r.execute(order("lost-reply"))).amount_out == filled.amount_out


async def test_a_trade_taken_over_while_the_store_is_away_is_settled_once_it_is_back(tmp_path):
    sqlite = SqliteStore(tmp_path / "trades.db")
    first = runner(paper(sqlite, latency_ms=4000), sqlite)  # 2 s building, 2 s landing
    trade = first.admit(order("adopted"))
    await until(lambda: first.hub.channel_events(trade.key)[-1].stage == pb.TRADE_STATUS_SUBMITTED, timeout=10)
    await first.interrupt_all()  # its replica stops past the point of no return
    [left] = sqlite.unfinished()

    store = FlakyStore(sqlite)
    store.down = True  # the store goes away as another replica starts settling it
    second = outage_runner(paper(store), store)
    assert await second.recover([left]) == {"resumed": 0, "reconciled": 1, "failed": 0}
    await until(lambda: second.inflight.get(trade.key).task.get_name().startswith("store-wait"))
    settled = (await ended_once_back(second, store, "adopted")).result
    assert settled.status == pb.TRADE_STATUS_EXPIRED and "nothing was booked" in settled.error.message


async def test_a_shutdown_while_the_store_is_down_leaves_the_trade_to_the_restart():
    store = FlakyStore(SqliteStore(":memory:"))
    r = outage_runner(ScriptedExecutor([*FILLS[:-1], store.go_down, FILLS[-1]]), store)
    await refused(r.execute(order()))

    assert await r.interrupt_all() == 1
    assert r.in_flight() == 0 and r.recorder.metrics.trades_awaiting_store._value.get() == 0
    store.down = False
    assert store.get("alice", "t-1").result.status == pb.TRADE_STATUS_SIMULATED  # as last stored: its commit
    assert [u.record.request_id for u in store.unfinished()] == ["t-1"]


async def test_an_executor_without_reconcile_cut_off_after_sending_fails_asking_for_a_check():
    store = FlakyStore(SqliteStore(":memory:"))
    cut_off = redis.ConnectionError("Connection reset by peer")
    r = outage_runner(ScriptedExecutor([*FILLS[:4], store.go_down, cut_off]), store)

    assert (await refused(r.execute(order()))).reason == "STORE_UNAVAILABLE"
    stored = (await ended_once_back(r, store)).result
    assert stored.status == pb.TRADE_STATUS_FAILED and "check the signature" in stored.error.message


async def test_outcomes_are_unchanged_without_a_shared_store():
    store = FlakyStore(SqliteStore(":memory:"))
    r = runner(ScriptedExecutor([*FILLS[:-1], store.go_down, FILLS[-1]]), store)
    assert (await refused(r.execute(order()))).reason == "INTERNAL"  # an embedded store's failure is unexpected


async def test_a_retry_while_the_trade_waits_for_a_store_that_came_back_empty_follows_the_trade():
    store = FlakyStore(SqliteStore(":memory:"))
    r = outage_runner(ScriptedExecutor([*FILLS[:-1], store.go_down, FILLS[-1]]), store)
    failure = await refused(r.execute(order()))
    assert failure.reason == "STORE_UNAVAILABLE" and r.in_flight() == 1

    store._store = SqliteStore(":memory:")  # the store is back, without its data
    store.down = False
    retry = r.execute(order())  # admitted before the waiting trade saves again: it is still running here
    # It gets what the trade's caller got (retry later), not INTERNAL (it was claimed a second
    # time, and the in-flight registry refused it as already running)
    assert (await refused(retry)).reason == "STORE_UNAVAILABLE"
    await until(lambda: r.in_flight() == 0)
