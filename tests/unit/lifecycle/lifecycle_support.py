"""Fakes for the trade-lifecycle unit tests: a scripted executor, a recorder, a runner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tradewire.core.config import MarketConfig, PaperConfig
from tradewire.core.executors.base import ExecutorHealth, Outcome, Progress
from tradewire.core.executors.paper import PaperExecutor
from tradewire.core.inflight import InFlightRegistry
from tradewire.core.market import Market
from tradewire.core.metrics import Metrics
from tradewire.core.order import FeeBreakdown, Fill, Quote
from tradewire.core.quotes import PriceTableQuotes
from tradewire.core.retry import RetryPolicy
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.trades import TradeRunner
from tradewire.core.validation import validate_trade
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MARKET = Market(MarketConfig())
QUOTE = Quote(in_amount=10_000_000, out_amount=1_500_000, other_amount_threshold=1_400_000, price_impact_pct="0.01")
FILL = Fill(QUOTE, 10_000_000, 1_500_000, FeeBreakdown(base_fee_lamports=5000))


def order(request_id: str = "t-1", principal: str = "alice", **fields):
    values = dict(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                  amount="0.01", slippage_bps=100)
    values.update(fields)
    return validate_trade(pb.TradeRequest(**values), principal, MARKET)


class Gate:
    """An await the test opens: lets a test hold an executor at a chosen point."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()
        self.interrupted = False

    async def __call__(self) -> None:
        self.reached.set()
        try:
            await self._open.wait()
        except asyncio.CancelledError:
            self.interrupted = True
            raise

    def open(self) -> None:
        self._open.set()


class ScriptedExecutor:
    """``attempts[i]`` scripts attempt i: a list of steps — a status or a Progress, an
    Outcome, an exception (raised), or a callable (awaited)."""

    def __init__(self, *attempts: list, name: str = "fake", by_request: dict[str, list] | None = None) -> None:
        self.name = name
        self.attempts = list(attempts)
        self.by_request = by_request or {}  # request id → its own single-attempt script
        self.started = 0
        self.closed = 0

    def health(self) -> ExecutorHealth:
        return ExecutorHealth(True)

    async def execute(self, order):
        script = self.by_request.get(order.request_id) or self.attempts[min(self.started, len(self.attempts) - 1)]
        self.started += 1
        try:
            for step in script:
                if isinstance(step, int):
                    yield Progress(step)
                elif isinstance(step, Progress):
                    yield step
                elif isinstance(step, Outcome):
                    yield step
                    return
                elif isinstance(step, BaseException):
                    raise step
                else:
                    await step()
        finally:
            self.closed += 1


FILLS = [pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SIGNED, pb.TRADE_STATUS_SIMULATED, pb.TRADE_STATUS_SUBMITTED,
         pb.TRADE_STATUS_CONFIRMED, Outcome(pb.TRADE_STATUS_FILLED, FILL)]
FILLED_PATH = [pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_VALIDATED, pb.TRADE_STATUS_ROUTED, pb.TRADE_STATUS_QUOTED,
               pb.TRADE_STATUS_SIGNED, pb.TRADE_STATUS_SIMULATED, pb.TRADE_STATUS_SUBMITTED,
               pb.TRADE_STATUS_CONFIRMED, pb.TRADE_STATUS_FILLED]


class FakeRecorder:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.transitions: list[pb.ExecutionStatus] = []
        self.fills = 0
        self.forgotten: list[str] = []  # request ids of trades left to end elsewhere

    def transition(self, order, event) -> None:
        self.transitions.append(event)

    def fill(self, order, fill, result) -> None:
        self.fills += 1

    def forget(self, order) -> None:
        self.forgotten.append(order.request_id)


def paper(store, latency_ms: int = 0) -> PaperExecutor:
    return PaperExecutor(PaperConfig(realtime=bool(latency_ms), latency_ms=latency_ms), MARKET,
                         PriceTableQuotes(MARKET), store)


def runner(executor, store: SqliteStore | None = None, retry: RetryPolicy | None = None,
           webhooks=None, hub: StatusHub | None = None) -> TradeRunner:
    recorder = FakeRecorder()
    return TradeRunner(store or SqliteStore(":memory:"), hub or StatusHub(), {pb.TRADING_MODE_PAPER: executor},
                       recorder, InFlightRegistry(10, 100, recorder.metrics),
                       retry or RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002),
                       webhooks, MARKET)


def stages(events) -> list[int]:
    return [e.stage for e in events]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def run_until_nothing_pending(dispatcher, store) -> None:
    """Start a WebhookDispatcher, wait until ``store``'s outbox has nothing pending, close it."""
    await dispatcher.start()
    try:
        await until(lambda: store.outbox_counts()["pending"] == 0)
    finally:
        await dispatcher.close()
