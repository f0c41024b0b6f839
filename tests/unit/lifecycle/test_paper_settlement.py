"""A paper trade left past the point of no return (its runner crashed, or stalled and was
presumed dead) is settled by its fill id: if it was not booked it expires and can never be
booked afterwards; if it was, it ends as booked (its receipt) and is not booked again."""

import asyncio

import httpx
import pytest

from tradewire.core.config import PaperConfig
from tradewire.core.errors import TradewireError
from tradewire.core.executors.paper import PaperExecutor, paper_fill_id
from tradewire.core.portfolio import FillLegs
from tradewire.core.quotes import PriceTableQuotes
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import MARKET, SOL, USDC, order, paper, runner, until

JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"

PAPER = pb.TRADING_MODE_PAPER


async def test_a_stalled_runners_trade_settled_elsewhere_expires_and_is_never_booked(tmp_path):
    path = tmp_path / "trades.db"
    stalled_store, settling_store = SqliteStore(path), SqliteStore(path)  # two processes on one store
    stalled = runner(paper(stalled_store, latency_ms=4000), stalled_store)  # 2 s building, 2 s landing
    trade = stalled.admit(order("slow"))
    await until(lambda: stalled.hub.channel_events(trade.key)[-1].stage == pb.TRADE_STATUS_SUBMITTED, timeout=10)
    wallet = stalled_store.holdings("alice", PAPER)

    settling = runner(paper(settling_store), settling_store)
    assert await settling.recover() == {"resumed": 0, "reconciled": 1, "failed": 0}
    await until(lambda: settling.in_flight() == 0)
    settled = settling_store.get("alice", "slow")
    assert settled.result.status == pb.TRADE_STATUS_EXPIRED and "nothing was booked" in settled.result.error.message
    numbers = [e.sequence for e in settled.events]
    assert numbers == sorted(set(numbers))  # increasing, never reused ...
    assert numbers[-1] > stalled.hub.channel_events(trade.key)[-1].sequence  # ... nor what the stalled one published

    with pytest.raises(TradewireError) as taken:  # the stalled runner lands its trade: the booking is refused
        await asyncio.wait_for(trade.done, 10)
    assert taken.value.reason == "TRADE_TAKEN_OVER"
    assert settling_store.holdings("alice", PAPER) == wallet  # nothing booked, by either
    assert settling_store.get("alice", "slow").result.status == pb.TRADE_STATUS_EXPIRED
    stalled_store.close()
    settling_store.close()


@pytest.fixture
async def alices_paper_wallet(tmp_path):
    """(store, paper executor) with Alice's starting wallet given."""
    store = SqliteStore(tmp_path / "trades.db")
    executor = paper(store)
    await executor.wallet("alice")
    yield store, executor
    store.close()


async def test_a_trade_whose_fill_was_booked_before_the_crash_ends_as_booked_and_is_not_booked_again(
        alices_paper_wallet):
    store, executor = alices_paper_wallet
    sell = order("booked")
    before = store.holdings("alice", PAPER)
    steps = executor.execute(sell)
    async for step in steps:
        if step.status == pb.TRADE_STATUS_CONFIRMED:
            break  # booked; the process dies here, before its runner stores the outcome
    await steps.aclose()
    booked = store.holdings("alice", PAPER)

    outcome = await executor.reconcile(sell, pb.TradeResult(request_id="booked", status=pb.TRADE_STATUS_SUBMITTED))
    assert outcome.status == pb.TRADE_STATUS_FILLED and outcome.error is None
    fill = outcome.fill
    assert booked[USDC].amount - before[USDC].amount == fill.amount_out > 0
    assert before[SOL].amount - booked[SOL].amount == fill.amount_in + fill.fees.total_lamports
    assert fill.quote.out_amount > 0 and fill.fees.base_fee_lamports == 5000
    assert store.holdings("alice", PAPER) == booked  # settling booked nothing more


async def test_a_fill_booked_without_a_receipt_fails_saying_positions_include_it(alices_paper_wallet):
    store, executor = alices_paper_wallet
    sell = order("booked")
    booked = store.apply_fill("alice", PAPER, FillLegs(input_mint=SOL, output_mint=USDC, amount_in=10_000_000,
                                                      amount_out=1_500_000, fee_mint=SOL, fee_lamports=5000,
                                                      trade_value=1_500_000), fill_id=paper_fill_id("booked"))

    outcome = await executor.reconcile(sell, pb.TradeResult(request_id="booked", status=pb.TRADE_STATUS_SUBMITTED))
    assert outcome.status == pb.TRADE_STATUS_FAILED
    assert outcome.error.reason == "INTERNAL" and "positions include it" in outcome.error.message
    assert store.holdings("alice", PAPER) == booked


async def test_a_trade_settled_a_second_time_still_expires_with_nothing_booked(alices_paper_wallet):
    """Two settlements of one trade (e.g. two replicas that each took it over): the second finds
    the id voided by the first, not booked."""
    store, executor = alices_paper_wallet
    sell, before = order("twice"), store.holdings("alice", PAPER)
    stored = pb.TradeResult(request_id="twice", status=pb.TRADE_STATUS_SUBMITTED)
    for _ in range(2):
        outcome = await executor.reconcile(sell, stored)
        assert outcome.status == pb.TRADE_STATUS_EXPIRED and "nothing was booked" in outcome.error.message
    assert store.holdings("alice", PAPER) == before


class QuotesGoingAway(PriceTableQuotes):
    """The quote API, reachable until ``away`` is set."""

    away = False

    async def value(self, mint, amount):
        if self.away:
            raise httpx.ConnectError("quote API unreachable")
        return await super().value(mint, amount)


async def test_a_paper_trade_past_its_point_of_no_return_fills_although_the_quote_api_went_away(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    quotes = QuotesGoingAway(MARKET)
    r = runner(PaperExecutor(PaperConfig(realtime=True, latency_ms=400), MARKET, quotes, store), store)
    trade = r.admit(order("sol-for-jup", output_mint=JUP))  # neither side is the valuation mint
    await until(lambda: r.hub.channel_events(trade.key)[-1].stage == pb.TRADE_STATUS_SUBMITTED, timeout=10)
    quotes.away = True  # sent (simulated): landing must not need the quote API

    result = await asyncio.wait_for(trade.done, 10)

    assert result.status == pb.TRADE_STATUS_FILLED, result.error
    assert JUP in store.holdings("alice", PAPER)
    store.close()


async def test_a_trade_that_loses_a_race_for_the_balance_fails_on_chain_paying_its_fee(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    r = runner(paper(store, latency_ms=400), store)  # both pass the dry run, then land one after the other
    first, second = r.admit(order("first", amount="60")), r.admit(order("second", amount="60"))  # of 100 SOL
    results = await asyncio.wait_for(asyncio.gather(first.done, second.done), 10)

    filled, failed = sorted(results, key=lambda result: result.status != pb.TRADE_STATUS_FILLED)
    assert filled.status == pb.TRADE_STATUS_FILLED
    assert failed.status == pb.TRADE_STATUS_FAILED and failed.error.reason == "INSUFFICIENT_FUNDS"
    assert failed.fees.base_fee_lamports == 5000 and failed.fees.total_lamports == 5000  # what a failed tx pays
    assert failed.quoted_amount_out and failed.amount_in == "0"  # the quote it was sent on, nothing swapped
    sol = store.holdings("alice", PAPER)[SOL].amount
    assert sol == 100 * 10**9 - 60 * 10**9 - filled.fees.total_lamports - 5000  # the fee was booked once
    store.close()
