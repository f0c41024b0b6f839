"""The pieces that keep a request id run again (after a shared store restarted empty) from being
refused by an earlier run of it: each run of a paper trade books under a fill id of its own (its
trade id), which a settlement of another run never touches; with a shared store a run books or
voids only while the store holds that run as this replica's; and a runner whose executor refuses
to go on never leaves a trade it still owns unfinished."""

import asyncio
import uuid

import pytest

from support.redis_server import RedisServer
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import Outcome
from tradewire.core.executors.paper import paper_fill_id
from tradewire.core.portfolio import FillLegs, Holding
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.base import VOIDED_RECEIPT, FillIdUsed, TakenOver, TradeLost
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import SOL, USDC, ScriptedExecutor, order, paper, runner

PAPER = pb.TRADING_MODE_PAPER


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "trades.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()  # its own: tests here flush it
    yield server
    server.stop()


@pytest.fixture
def client(own_redis):
    c = own_redis.client()
    c.flushdb()
    return c


def settled_elsewhere(request_id: str, run: str) -> pb.TradeResult:
    return pb.TradeResult(request_id=request_id, trade_id=run, status=pb.TRADE_STATUS_SUBMITTED)


async def test_settling_an_earlier_run_does_not_refuse_the_booking_of_the_run_that_followed(store):
    """A run of the request id settled late (by a replica that lost it when the store restarted
    empty) voids its own fill id; the request id's next run books under its own, and fills."""
    executor = paper(store)
    await executor.wallet("alice")
    before = store.holdings("alice", PAPER)
    stale = await executor.reconcile(order("again"), settled_elsewhere("again", uuid.uuid4().hex))
    assert stale.status == pb.TRADE_STATUS_EXPIRED

    r = runner(executor, store)
    trade = r.admit(order("again"))
    result = await asyncio.wait_for(trade.done, 10)

    assert result.status == pb.TRADE_STATUS_FILLED, result.error
    assert store.get("alice", "again").result.status == pb.TRADE_STATUS_FILLED
    after = store.holdings("alice", PAPER)
    assert before[SOL].amount - after[SOL].amount == 10_000_000 + result.fees.total_lamports  # booked once
    assert store.fill_receipt("alice", PAPER, paper_fill_id("again", result.trade_id)) not in (None, VOIDED_RECEIPT)


async def test_a_run_settled_twice_or_crash_rerun_keeps_one_fill_id(store):
    """The same run (its trade id), settled after its runner booked: the booking is found, and
    booked once; settled again: the same."""
    executor = paper(store)
    await executor.wallet("alice")
    run = uuid.uuid4().hex
    steps = executor.execute(order("once"), run=run)
    async for step in steps:
        if step.status == pb.TRADE_STATUS_CONFIRMED:
            break  # booked; the runner stops before storing the outcome
    await steps.aclose()
    booked = store.holdings("alice", PAPER)
    for _ in range(2):
        outcome = await executor.reconcile(order("once"), settled_elsewhere("once", run))
        assert outcome.status == pb.TRADE_STATUS_FILLED
    assert store.holdings("alice", PAPER) == booked
    other = await executor.reconcile(order("once"), settled_elsewhere("once", uuid.uuid4().hex))
    assert other.status == pb.TRADE_STATUS_EXPIRED  # another run of it booked nothing of its own


async def test_a_run_an_earlier_version_booked_under_the_request_id_is_settled_as_booked(store):
    executor = paper(store)
    await executor.wallet("alice")
    steps = executor.execute(order("legacy"))  # no run: the request's own fill id, as earlier versions booked
    async for step in steps:
        if step.status == pb.TRADE_STATUS_CONFIRMED:
            break
    await steps.aclose()
    booked = store.holdings("alice", PAPER)

    outcome = await executor.reconcile(order("legacy"), settled_elsewhere("legacy", uuid.uuid4().hex))
    assert outcome.status == pb.TRADE_STATUS_FILLED and outcome.fill.amount_in == 10_000_000
    assert store.holdings("alice", PAPER) == booked

    # Not booked by either: both ids voided, so a stalled runner of an earlier version cannot book.
    expired = await executor.reconcile(order("unbooked"), settled_elsewhere("unbooked", uuid.uuid4().hex))
    assert expired.status == pb.TRADE_STATUS_EXPIRED
    with pytest.raises(FillIdUsed):
        store.apply_fill("alice", PAPER, legs(), fill_id=paper_fill_id("unbooked"), once=True)


class RefusingExecutor(ScriptedExecutor):
    """Sends, then refuses to go on (TakenOver), though nobody took the trade; settles as EXPIRED."""

    def __init__(self) -> None:
        super().__init__([pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SIGNED, pb.TRADE_STATUS_SIMULATED,
                          pb.TRADE_STATUS_SUBMITTED, TakenOver("refused")])
        self.reconciled = 0

    async def reconcile(self, order, result):
        self.reconciled += 1
        return Outcome(pb.TRADE_STATUS_EXPIRED, error=TradewireError("TRADE_EXPIRED", "nothing was booked"))


async def test_a_trade_its_executor_refuses_to_go_on_with_is_not_left_unfinished_while_it_is_still_this_runners(
        store):
    executor = RefusingExecutor()
    r = runner(executor, store)
    trade = r.admit(order("refused"))
    result = await asyncio.wait_for(trade.done, 10)
    assert result.status == pb.TRADE_STATUS_EXPIRED and executor.reconciled == 1
    assert store.get("alice", "refused").result.status == pb.TRADE_STATUS_EXPIRED
    assert r.in_flight() == 0


async def test_a_trade_another_process_settled_is_left_to_it_when_the_executor_refuses(store):
    """(Settled elsewhere: its record has ended) the refusal stops it here, as before."""
    executor = RefusingExecutor()
    executor.attempts[0].insert(4, lambda: _ended_elsewhere(store))
    r = runner(executor, store)
    trade = r.admit(order("gone"))
    with pytest.raises(TradewireError) as taken:
        await asyncio.wait_for(trade.done, 10)
    assert taken.value.reason == "TRADE_TAKEN_OVER" and executor.reconciled == 0
    assert store.get("alice", "gone").result.status == pb.TRADE_STATUS_EXPIRED  # as the other one stored it


async def _ended_elsewhere(store) -> None:
    record = store.get("alice", "gone")
    ended = pb.TradeResult()
    ended.CopyFrom(record.result)
    ended.status = pb.TRADE_STATUS_EXPIRED
    store.save("alice", ended, record.events)


# -- the fence of a shared store ------------------------------------------------------------


def claimed(store: RedisTradeStore, request_id: str) -> str:
    run = uuid.uuid4().hex
    result = pb.TradeResult(request_id=request_id, trade_id=run, status=pb.TRADE_STATUS_RECEIVED, mode=PAPER)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    return run


def legs() -> FillLegs:
    return FillLegs(input_mint=SOL, amount_in=100, output_mint=USDC, amount_out=15, fee_mint=SOL, fee_lamports=5,
                    trade_value=15)


def test_a_run_books_and_voids_only_while_the_store_holds_it_as_this_replicas(client):
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    a.ensure_wallet("alice", PAPER, [Holding(SOL, 1_000_000, 0, 0)])
    run = claimed(a, "t-1")
    assert client.hget(a.trade_key("alice", "t-1"), "run") == run.encode()
    before = a.holdings("alice", PAPER)

    with pytest.raises(TradeLost):  # another run of the request id
        a.apply_fill("alice", PAPER, legs(), fill_id="f-other", once=True, run=("t-1", uuid.uuid4().hex))
    with pytest.raises(TakenOver):  # this run, another replica's
        b.apply_fill("alice", PAPER, legs(), fill_id="f-1", once=True, run=("t-1", run))
    with pytest.raises(TakenOver):
        b.void_fill("alice", PAPER, "f-1", run=("t-1", run))
    assert a.holdings("alice", PAPER) == before and not client.smembers("tw:fills:alice:1")

    booked = a.apply_fill("alice", PAPER, legs(), fill_id="f-1", once=True, run=("t-1", run))
    assert booked[SOL].amount == 1_000_000 - 105
    assert not a.void_fill("alice", PAPER, "f-1", run=("t-1", run))  # booked: not voided

    other = claimed(a, "t-2")
    client.delete(a.trade_key("alice", "t-2"))  # the store lost the trade (restarted without its data)
    with pytest.raises(TradeLost):
        a.apply_fill("alice", PAPER, legs(), fill_id="f-2", once=True, run=("t-2", other))
    with pytest.raises(TradeLost):
        a.void_fill("alice", PAPER, "f-2", run=("t-2", other))
    assert client.smembers("tw:fills:alice:1") == {b"f-1"}
    assert a.void_fill("alice", PAPER, "f-2")  # unfenced, as before

    legacy = claimed(a, "t-3")
    client.hdel(a.trade_key("alice", "t-3"), "run")  # claimed by a version that recorded no run: its owner decides
    assert a.void_fill("alice", PAPER, "f-3", run=("t-3", legacy))
    with pytest.raises(TakenOver):
        b.void_fill("alice", PAPER, "f-3b", run=("t-3", legacy))


async def test_a_replica_whose_store_restarted_empty_books_nothing_of_its_run_there(client):
    """Through the paper executor: the booking of a run the store forgot is refused, nothing written."""
    store = RedisTradeStore(client, "replica-a")
    executor = paper(store)
    await executor.wallet("alice")
    run = claimed(store, "lost")
    steps = executor.execute(order("lost"), run=run)
    async for step in steps:
        if step.status == pb.TRADE_STATUS_SUBMITTED:
            break
    client.flushdb()  # Redis restarts empty as the fill lands; a retry elsewhere gives the wallet again
    await executor.wallet("alice")
    wallet = store.holdings("alice", PAPER)
    with pytest.raises(TradeLost):
        await steps.__anext__()
    assert store.holdings("alice", PAPER) == wallet and not client.keys("tw:fills:*")
    with pytest.raises(TradeLost):  # nor does its settlement void anything there
        await executor.reconcile(order("lost"), settled_elsewhere("lost", run))
    assert not client.keys("tw:fills:*")
