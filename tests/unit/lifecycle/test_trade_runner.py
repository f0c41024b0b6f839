"""TradeRunner with scripted executors: retries before send only, cancellation before the point
of no return only, the final state recorded either way, and recovery after a restart."""

import asyncio
import time

import httpx
import pytest

from lifecycle_support import FILL, FILLED_PATH, FILLS, Gate, ScriptedExecutor, order, runner, stages, until
from tradewire.core import lifecycle
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import Outcome, Progress
from tradewire.core.order import FeeBreakdown, Fill
from tradewire.core.retry import TransientError
from tradewire.core.store.base import UnfinishedTrade
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.trades import StopRequest, Trade
from tradewire.v1 import trade_pb2 as pb



def events_of(r, key=("alice", "t-1")):
    return r.hub.channel_events(key)


async def test_transient_errors_before_send_are_retried_without_repeating_events():
    executor = ScriptedExecutor(
        [pb.TRADE_STATUS_QUOTED, TransientError("quote API timed out")],
        [httpx.ConnectError("refused")],
        FILLS,
    )
    r = runner(executor)
    result = await r.execute(order())
    assert result.status == pb.TRADE_STATUS_FILLED
    assert executor.started == 3 and executor.closed == 3
    events = events_of(r)
    assert stages(events) == FILLED_PATH  # QUOTED published once although quoted twice
    assert [e.sequence for e in events] == list(range(1, 10))
    assert r.recorder.metrics.executor_retries.labels("fake", "UPSTREAM_UNAVAILABLE")._value.get() == 1
    assert r.recorder.metrics.executor_retries.labels("fake", "ConnectError")._value.get() == 1


@pytest.mark.parametrize("unavailable", [
    TradewireError("UPSTREAM_UNAVAILABLE", "quote API answered 503"),  # raised
    httpx.ConnectError("quote API unreachable"),
    Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError("UPSTREAM_UNAVAILABLE", "rpc down")),  # an outcome
])
async def test_retries_are_bounded_and_then_the_trade_is_refused_so_its_retry_runs_it(unavailable):
    executor = ScriptedExecutor([pb.TRADE_STATUS_QUOTED, unavailable], [pb.TRADE_STATUS_QUOTED, unavailable],
                                [pb.TRADE_STATUS_QUOTED, unavailable], FILLS)
    r = runner(executor)
    with pytest.raises(TradewireError) as failure:
        await r.execute(order())
    assert failure.value.reason == "UPSTREAM_UNAVAILABLE"
    assert executor.started == 3  # max_attempts
    refused = await r.current("alice", "t-1")
    assert refused.status == pb.TRADE_STATUS_REJECTED  # nothing was sent: a refusal, not a failure
    assert lifecycle.may_run_again(refused)
    # the upstream is back: the caller's retry with the same request id runs the trade
    assert (await r.execute(order())).status == pb.TRADE_STATUS_FILLED
    assert executor.started == 4


async def test_a_transient_outcome_before_send_is_retried_too():
    transient = Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError("UPSTREAM_UNAVAILABLE", "rpc down"))
    executor = ScriptedExecutor([pb.TRADE_STATUS_QUOTED, transient], FILLS)
    assert (await runner(executor).execute(order())).status == pb.TRADE_STATUS_FILLED
    assert executor.started == 2


async def test_nothing_is_retried_after_the_point_of_no_return():
    executor = ScriptedExecutor(FILLS[:4] + [TransientError("confirmation timed out")], FILLS)
    r = runner(executor)
    with pytest.raises(TradewireError) as failure:
        await r.execute(order())
    assert executor.started == 1
    assert failure.value.reason == "INTERNAL"  # unexpected after send: failed, never retried
    assert (await r.current("alice", "t-1")).status == pb.TRADE_STATUS_FAILED


async def test_an_executor_refusal_before_send_rejects_the_trade():
    executor = ScriptedExecutor([TradewireError("NO_ROUTE", "no route for this pair")])
    r = runner(executor)
    with pytest.raises(TradewireError) as failure:
        await r.execute(order())
    assert failure.value.reason == "NO_ROUTE" and executor.started == 1
    assert (await r.current("alice", "t-1")).status == pb.TRADE_STATUS_REJECTED


async def test_cancel_before_send_interrupts_the_executor():
    gate = Gate()
    executor = ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]])
    r = runner(executor)
    trade = r.admit(order())
    await gate.reached.wait()
    result = await r.cancel("alice", "t-1", "test")
    assert result.status == pb.TRADE_STATUS_CANCELLED and gate.interrupted
    assert result.error.reason == "TRADE_CANCELLED" and "test" in result.error.message
    assert stages(events_of(r))[-1] == pb.TRADE_STATUS_CANCELLED
    assert r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_CANCELLED
    assert len(r.inflight) == 0 and trade.done.done()


async def test_cancel_after_the_point_of_no_return_is_refused_and_the_trade_fills():
    gate = Gate()
    executor = ScriptedExecutor(FILLS[:3] + [gate] + FILLS[3:])  # held between SIMULATED and SUBMITTED
    r = runner(executor)
    trade = r.admit(order())
    await gate.reached.wait()
    assert trade.committed
    assert r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_SIMULATED  # stored at the commit
    with pytest.raises(TradewireError) as failure:
        await r.cancel("alice", "t-1")
    assert failure.value.reason == "NOT_CANCELLABLE"
    gate.open()
    assert (await trade.done).status == pb.TRADE_STATUS_FILLED


async def test_a_stop_before_the_task_ever_ran_still_records_the_end():
    r = runner(ScriptedExecutor(FILLS))
    trade = r.admit(order())
    assert r.stop(trade, StopRequest("request", pb.TRADE_STATUS_CANCELLED, TradewireError("TRADE_CANCELLED", "now")))
    result = await trade.done
    assert result.status == pb.TRADE_STATUS_CANCELLED
    assert r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_CANCELLED


async def test_the_owner_giving_up_stops_the_trade_but_others_waiting_do_not():
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    owner = asyncio.create_task(r.execute(order()))
    await gate.reached.wait()
    replay = asyncio.create_task(r.execute(order()))  # same request: a de-duplicated waiter
    await asyncio.sleep(0)
    replay.cancel()
    await asyncio.gather(replay, return_exceptions=True)
    assert not gate.interrupted
    owner.cancel()
    await asyncio.gather(owner, return_exceptions=True)
    await until(lambda: r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_CANCELLED)
    assert r.store.get("alice", "t-1").result.error.reason == "CANCELLED"


async def test_a_retry_waiting_keeps_the_trade_going_when_its_first_caller_leaves():
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    owner = asyncio.create_task(r.execute(order()))
    await gate.reached.wait()
    retry = asyncio.create_task(r.execute(order()))  # the same request, while the first call still waits
    await until(lambda: r.inflight.get(("alice", "t-1")).callers == 2)
    owner.cancel()  # the first caller goes away
    await asyncio.gather(owner, return_exceptions=True)
    assert not gate.interrupted and not retry.done()
    gate.open()
    assert (await retry).status == pb.TRADE_STATUS_FILLED  # the retry's caller gets the fill
    assert r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_FILLED


async def test_the_last_waiting_caller_giving_up_stops_the_trade_it_kept_going():
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    owner = asyncio.create_task(r.execute(order()))
    await gate.reached.wait()
    retry = asyncio.create_task(r.execute(order(), deadline=time.monotonic() + 0.3))
    await until(lambda: r.inflight.get(("alice", "t-1")).callers == 2)
    owner.cancel()
    await asyncio.gather(owner, return_exceptions=True)
    with pytest.raises(TradewireError) as gave_up:
        await retry
    assert gave_up.value.reason == "DEADLINE_EXCEEDED" and "stopped before it was sent" in gave_up.value.message
    assert gate.interrupted
    await until(lambda: r.store.get("alice", "t-1").result.status == pb.TRADE_STATUS_EXPIRED)


async def test_the_request_deadline_expires_a_trade_before_send():
    import datetime

    from google.protobuf import timestamp_pb2

    deadline = timestamp_pb2.Timestamp()
    deadline.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(milliseconds=50))
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    with pytest.raises(TradewireError) as failure:
        await r.execute(order(deadline=deadline))
    assert failure.value.reason == "TRADE_EXPIRED" and gate.interrupted


async def test_in_flight_limit_refuses_without_claiming():
    gate = Gate()
    r = runner(ScriptedExecutor([gate, *FILLS]))
    r.inflight.max_per_principal = 1
    r.admit(order("a"))
    with pytest.raises(TradewireError) as failure:
        r.admit(order("b"))
    assert failure.value.reason == "TOO_MANY_IN_FLIGHT" and failure.value.code.name == "RESOURCE_EXHAUSTED"
    assert r.store.get("alice", "b") is None
    assert r.in_flight("alice") == 1 and r.in_flight("bob") == 0
    gate.open()
    await until(lambda: len(r.inflight) == 0)


async def test_unfinished_trades_resume_or_are_reconciled_after_a_restart(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    gate, committed_gate = Gate(), Gate()
    held = ScriptedExecutor(name="paper", by_request={
        "pre-send": [pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]],
        "sent": FILLS[:3] + [committed_gate] + FILLS[3:],
    })
    first = runner(held, store)
    before = first.admit(order("pre-send"))
    sent = first.admit(order("sent"))
    await gate.reached.wait()
    await committed_gate.reached.wait()
    assert await first.interrupt_all() == 2
    with pytest.raises(TradewireError) as failure:
        await before.done
    assert failure.value.reason == "SHUTTING_DOWN"
    # a trade, not a refusal: the caller learns which, and where it stopped
    assert failure.value.metadata == {"trade_id": before.result.trade_id, "status": "TRADE_STATUS_QUOTED"}
    assert "resumes after the restart" in failure.value.message  # (one process's store: nobody else takes it)
    assert isinstance(sent, Trade) and sent.done.done()
    assert {u.record.request_id for u in store.unfinished()} == {"pre-send", "sent"}

    second = runner(ScriptedExecutor(FILLS, name="paper"), store)
    counts = await second.recover()
    assert counts == {"resumed": 1, "reconciled": 1, "failed": 0}
    resumed = second.inflight.get(("alice", "pre-send"))
    assert (await resumed.done).status == pb.TRADE_STATUS_FILLED
    events = second.store.get("alice", "pre-send").events
    assert [e.sequence for e in events] == list(range(1, 10)) and stages(events) == FILLED_PATH
    reconciled = second.store.get("alice", "sent").result  # (an executor without reconcile: see test_paper_settlement)
    assert reconciled.status == pb.TRADE_STATUS_FAILED and "cannot reconcile" in reconciled.error.message
    assert store.unfinished() == []


class SendingExecutor(ScriptedExecutor):
    """Sends a transaction (SUBMITTED with its signature) and waits; a restart reconciles it."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(FILLS[:3] + [Progress(pb.TRADE_STATUS_SUBMITTED, "sent sig-1", signature="sig-1"), gate])

    async def reconcile(self, order, result):
        assert result.signature == "sig-1"  # what the restart knows, from the store
        return Outcome(pb.TRADE_STATUS_FILLED, FILL, progress=(Progress(pb.TRADE_STATUS_CONFIRMED, "landed"),))


async def test_a_sent_transaction_is_stored_with_its_event_so_a_restart_continues_the_sequence(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    gate = Gate()
    first = runner(SendingExecutor(gate), store)
    first.admit(order("sent"))
    await gate.reached.wait()
    shown = await first.current("alice", "sent")
    assert shown.status == pb.TRADE_STATUS_SUBMITTED and shown.signature == "sig-1"  # GetTrade shows it at once
    stored = store.get("alice", "sent")
    assert stages(stored.events)[-1] == pb.TRADE_STATUS_SUBMITTED and stored.result.signature == "sig-1"
    published = first.hub.channel_events(("alice", "sent"))
    assert [e.sequence for e in published] == [e.sequence for e in stored.events] == list(range(1, 8))
    assert await first.interrupt_all() == 1

    second = runner(SendingExecutor(Gate()), store)
    assert await second.recover() == {"resumed": 0, "reconciled": 1, "failed": 0}
    assert (await second.inflight.get(("alice", "sent")).done).status == pb.TRADE_STATUS_FILLED
    events = store.get("alice", "sent").events
    # CONFIRMED (what reconcile found it reached) and FILLED follow SUBMITTED (7): a stream
    # resuming after 7 gets the rest, as the normal path publishes it; no sequence is reused.
    assert [e.sequence for e in events] == list(range(1, 10))
    assert stages(events)[-3:] == [pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_CONFIRMED, pb.TRADE_STATUS_FILLED]


async def test_a_trade_handed_back_while_it_still_runs_here_goes_on_as_it_is():
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    trade = r.admit(order("back"))
    await gate.reached.wait()
    handed_back = UnfinishedTrade(r.store.get("alice", "back"), trade.order.request)
    assert await r.recover([handed_back]) == {"resumed": 0, "reconciled": 0, "failed": 0}
    gate.open()
    assert (await trade.done).status == pb.TRADE_STATUS_FILLED
    assert stages(r.store.get("alice", "back").events) == FILLED_PATH


async def test_a_replay_waiting_for_a_running_trade_gives_up_at_its_deadline_not_the_trade():
    gate = Gate()
    r = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate, *FILLS[1:]]))
    trade = r.admit(order("long"))
    await gate.reached.wait()
    with pytest.raises(TradewireError) as gave_up:
        await r.execute(order("long"), deadline=time.monotonic() + 0.05)
    assert gave_up.value.reason == "DEADLINE_EXCEEDED" and "it goes on" in gave_up.value.message
    gate.open()
    assert (await trade.done).status == pb.TRADE_STATUS_FILLED


async def test_a_trade_resumed_after_a_crash_never_reuses_a_sequence_it_may_have_published(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    gate = Gate()
    crashed = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate]), store)
    lost = crashed.admit(order("crash"))
    await gate.reached.wait()
    published = [e.sequence for e in crashed.hub.channel_events(lost.key)]  # seen by streams, never stored
    assert published == [1, 2, 3, 4] and store.get("alice", "crash").events == ()

    restarted = runner(ScriptedExecutor(FILLS), store)  # the process died: another starts on its data
    assert await restarted.recover() == {"resumed": 1, "reconciled": 0, "failed": 0}
    assert (await restarted.inflight.get(lost.key).done).status == pb.TRADE_STATUS_FILLED
    events = store.get("alice", "crash").events
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)) and sequences[0] > lifecycle.MOST_EVENTS_BEFORE_COMMIT >= 4
    assert events[-1].terminal and events[-1].stage == pb.TRADE_STATUS_FILLED
    # a stream that saw it QUOTED then sees it RECEIVED again: the first new event says why
    assert events[0].stage == pb.TRADE_STATUS_RECEIVED and "starts over" in events[0].message
    assert not any("starts over" in e.message for e in events[1:])
    lost.task.cancel()
    await asyncio.gather(lost.task, return_exceptions=True)


async def test_the_fee_a_failed_transaction_paid_is_recorded_as_its_fill():
    paid = Fill(FILL.quote, 0, 0, FeeBreakdown(base_fee_lamports=5000))
    failed = Outcome(pb.TRADE_STATUS_FAILED, paid, TradewireError("SLIPPAGE_EXCEEDED", "slippage exceeded on chain"))
    r = runner(ScriptedExecutor(FILLS[:4] + [failed]))
    with pytest.raises(TradewireError):
        await r.execute(order("fee-only"))
    assert r.recorder.fills == 1  # the audit's tw_fills has the fee the book was charged
    rejected = runner(ScriptedExecutor([Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
        "INSUFFICIENT_FUNDS", "needs 5, has 0"))]))
    with pytest.raises(TradewireError):
        await rejected.execute(order("nothing-paid"))
    assert rejected.recorder.fills == 0


async def test_a_trade_ended_after_a_crash_because_it_cannot_go_on_never_reuses_a_sequence(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    gate = Gate()
    crashed = runner(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, gate]), store)
    lost = crashed.admit(order("stuck"))
    await gate.reached.wait()  # 1–4 published, none stored

    restarted = runner(ScriptedExecutor(FILLS), store)
    cannot_go_on = UnfinishedTrade(store.get("alice", "stuck"), None)  # (e.g. kept without its request)
    assert await restarted.recover([cannot_go_on]) == {"resumed": 0, "reconciled": 0, "failed": 1}
    (end,) = store.get("alice", "stuck").events
    assert end.terminal and end.sequence > lifecycle.MOST_EVENTS_BEFORE_COMMIT
    lost.task.cancel()
    await asyncio.gather(lost.task, return_exceptions=True)


async def test_an_end_that_cannot_be_recorded_still_lets_its_followers_and_timings_go(monkeypatch):
    import tradewire.core.trades as trades

    def broken(result, order, outcome):
        raise ValueError("an outcome that does not apply")

    monkeypatch.setattr(trades, "apply_outcome", broken)
    r = runner(ScriptedExecutor(FILLS))
    trade = r.admit(order("broken-end"))
    follower = asyncio.create_task(_all(r.hub.follow(trade.key, 1, 0.05)))
    with pytest.raises(TradewireError) as failed:
        await trade.done
    assert failed.value.reason == "INTERNAL"
    await asyncio.wait_for(follower, 5)  # it ends, not waits for good
    assert r.recorder.forgotten == ["broken-end"]
    assert r.in_flight() == 0


async def _all(events) -> list:
    return [e async for e in events]
