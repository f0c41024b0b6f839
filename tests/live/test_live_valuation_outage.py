"""A LIVE transaction that landed while the gateway's valuation source (the quote API that
values fills and positions) does not answer: its booking waits for the source, and the wait
is told in warning lines, never a traceback."""

from __future__ import annotations

import logging

from live_support import SOL, USDC, eventually

from tradewire.core.errors import TradewireError
from tradewire.v1 import trade_pb2 as pb


class FailingValuations:
    """The executor's quote source, failing the next ``failures`` valuations made after a send."""

    def __init__(self, inner, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.armed = False

    async def value(self, mint, amount: int) -> int:
        if self.armed and self.failures:
            self.failures -= 1
            raise TradewireError("UPSTREAM_UNAVAILABLE", "quote API answered 503")
        return await self.inner.value(mint, amount)

    def invalidate(self) -> None:
        self.inner.invalidate()


async def test_a_landed_trade_whose_valuation_fails_is_booked_once_the_source_answers_without_a_traceback(
        make_live, host, rules, caplog) -> None:
    caplog.set_level(logging.INFO)
    h = await make_live()
    quotes = FailingValuations(h.executor.quotes, failures=2)
    h.executor.quotes = quotes
    sent = {}

    def arm_after_send():
        quotes.armed = True  # from here on, valuations fail: the landed fill is valued at finalization
        sent["yes"] = True

    rules.before_send = arm_after_send

    run = await h.run(h.order("valuation-outage", USDC, SOL, "2"))

    assert sent and quotes.failures == 0
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    holdings = h.store.holdings(h.principal, pb.TRADING_MODE_LIVE)
    assert holdings[SOL].amount > 0
    live_records = [r for r in caplog.records if r.name.startswith("tradewire.live")]
    assert [r for r in live_records if r.exc_info] == []
    told = [r for r in live_records if r.name == "tradewire.live.confirmer" and r.levelno == logging.WARNING]
    assert len(told) == 2 and all("UPSTREAM_UNAVAILABLE" in r.error or "503" in r.error for r in told)


async def test_a_start_whose_valuation_source_is_down_leaves_an_unbooked_fill_for_the_next_start(
        make_live, host, rules, tmp_path, caplog) -> None:
    """The process stopped between a transaction's final state and its booking (a kill: no
    await lies between them, so the booking's claim is skipped in-process instead)."""
    caplog.set_level(logging.INFO)
    directory = tmp_path / "node"
    first = await make_live(directory=directory)
    first.orders.claim_booking = lambda *args, **kwargs: False  # final, never booked
    run = await first.run(first.order("unbooked-1", USDC, SOL, "2"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert first.orders.get(run.signature).booked == 0
    await first.executor.close()

    second = await make_live(first.wallet, directory=directory, start=False)
    second.executor.quotes = FailingValuations(second.executor.quotes, failures=100)
    second.executor.quotes.armed = True
    await second.executor.start()  # does not fail: the booking waits for the next start
    assert second.orders.get(run.signature).booked == 0
    record = lambda: second.store.get(second.principal, "unbooked-1").result  # noqa: E731
    await eventually(lambda: record().status == pb.TRADE_STATUS_FILLED)  # its outcome is told meanwhile
    assert record().signature == run.signature
    assert [r for r in caplog.records if r.name.startswith("tradewire.live") and r.exc_info] == []
    await second.executor.close()

    third = await make_live(first.wallet, directory=directory)
    assert third.orders.get(run.signature).booked == 2
    assert third.store.holdings(third.principal, pb.TRADING_MODE_LIVE)[SOL].amount > 0
