"""Fixtures for the LIVE suites: one devnet (20 ms slots) behind the fault layer, served on a
real socket on the test loop; each test gets fresh wallets, stores and executors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from live_support import LAMPORTS, DevnetHost, FaultRules, fund
from solders.keypair import Keypair

from tradewire.core import lifecycle
from tradewire.core.config import LiveConfig, Settings
from tradewire.core.executors.base import Outcome, Progress
from tradewire.core.executors.live import LiveExecutor, Wallet
from tradewire.core.market import Market
from tradewire.core.order import Order, fingerprint
from tradewire.core.quotes import PriceTableQuotes
from tradewire.core.store.live_orders import LiveOrderStore
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.validation import validate_trade
from tradewire.devnet import DevnetConfig
from tradewire.v1 import trade_pb2 as pb


@pytest.fixture(scope="session")
def devnet_config() -> DevnetConfig:
    return DevnetConfig(slot_ms=20, finalize_depth=4)


@pytest_asyncio.fixture(scope="session")
async def host(devnet_config: DevnetConfig) -> AsyncIterator[DevnetHost]:
    h = await DevnetHost(devnet_config).start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
def rules(host: DevnetHost) -> FaultRules:
    host.rules.reset()
    yield host.rules
    host.rules.reset()


@pytest.fixture(scope="session")
def market() -> Market:
    return Market(Settings().market)


class RecordingRecorder:
    """The Recorder's interface, remembering what it was told (audit events in real runs)."""

    def __init__(self) -> None:
        self.transitions: list[tuple[str, int]] = []
        self.fills: list[str] = []

    def transition(self, order, event) -> None:
        self.transitions.append((order.request_id, event.stage))

    def fill(self, order, fill, result) -> None:
        self.fills.append(fill.signature)

    def forget(self, order) -> None:
        pass


@dataclass
class Run:
    progress: list[Progress]
    outcome: Outcome

    @property
    def statuses(self) -> list[int]:
        return [p.status for p in self.progress] + [self.outcome.status]

    @property
    def signature(self) -> str:
        return self.outcome.fill.signature if self.outcome.fill else ""


@dataclass
class Harness:
    executor: LiveExecutor
    wallet: Keypair
    market: Market
    store: SqliteStore
    orders: LiveOrderStore
    recorder: RecordingRecorder
    principal: str = "alice"
    seen: dict[str, asyncio.Event] = field(default_factory=dict)

    def order(self, request_id: str, input_mint: str, output_mint: str, amount: str, *, exact_out: bool = False,
              slippage_bps: int = 50, strategy: int = pb.MEV_STRATEGY_NONE, tip: int = 0, cu_price: int = 0,
              max_priority_fee: int = 0, max_impact_bps: int = 0, cu_limit: int = 0) -> Order:
        request = pb.TradeRequest(
            request_id=request_id, mode=pb.TRADING_MODE_LIVE, input_mint=input_mint, output_mint=output_mint,
            amount=amount, slippage_bps=slippage_bps, max_price_impact_bps=max_impact_bps,
            swap_mode=pb.SWAP_MODE_EXACT_OUT if exact_out else pb.SWAP_MODE_EXACT_IN,
            mev_protection=pb.MevProtection(strategy=strategy, jito_tip_lamports=tip,
                                            compute_unit_price_micro_lamports=cu_price,
                                            compute_unit_limit=cu_limit,
                                            max_priority_fee_lamports=max_priority_fee))
        order = validate_trade(request, self.principal, self.market)
        result = pb.TradeResult(request_id=request_id, trade_id=request_id, mode=pb.TRADING_MODE_LIVE,
                                input_mint=input_mint, output_mint=output_mint)
        self.store.claim(self.principal, request_id, fingerprint(order), result)
        return order

    async def run(self, order: Order, on_status: dict[int, asyncio.Event] | None = None) -> Run:
        """Drive execute() to its outcome like the runner does, checking every transition is legal."""
        progress: list[Progress] = []
        current = pb.TRADE_STATUS_ROUTED
        attempt = self.executor.execute(order)
        try:
            async for item in attempt:
                if isinstance(item, Progress):
                    lifecycle.check_transition(current, item.status)
                    current = item.status
                    progress.append(item)
                    if item.signature:  # as the runner does: stored with its signature before it is published
                        result = self.store.get(order.principal_id, order.request_id).result
                        result.status, result.signature = item.status, item.signature
                        self.store.save(order.principal_id, result)
                    if on_status and item.status in on_status:
                        on_status[item.status].set()
                    continue
                assert isinstance(item, Outcome)
                assert lifecycle.is_terminal(item.status)
                lifecycle.check_transition(current, item.status)
                return Run(progress, item)
        finally:
            await attempt.aclose()  # as the runner does
        raise AssertionError("execute() ended without an outcome")


@pytest_asyncio.fixture
async def make_live(host: DevnetHost, market: Market, tmp_path: Path):
    """make_live(wallet=None, **live_config) → a started Harness; closed after the test.
    ``reservations``: the executor's reservation book (default: its own)."""
    made: list[Harness] = []

    async def make(wallet: Keypair | None = None, *, directory: Path | None = None, start: bool = True,
                   wrap_transports=None, store=None, orders: LiveOrderStore | None = None, reservations=None,
                   **overrides) -> Harness:
        wallet = wallet or fund(host.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
        config = dict(enabled=True, rpc_url=host.url, jupiter_url=host.url, jito_url=host.url,
                      poll_interval_s=0.02, rebroadcast_interval_s=0.1, retry_backoff_s=0.01,
                      retry_max_backoff_s=0.05, health_refresh_s=0.5, http_timeout_s=2.0)
        config.update(overrides)
        directory = directory or tmp_path
        store = store or SqliteStore(directory / "trades.db")
        orders = orders or LiveOrderStore(directory / "live_orders.db")
        recorder = RecordingRecorder()
        executor = LiveExecutor(LiveConfig(**config), market, PriceTableQuotes(market), store, recorder,
                                Wallet(wallet), orders, wrap_transports=wrap_transports, reservations=reservations)
        if start:
            await executor.start()
        harness = Harness(executor, wallet, market, store, orders, recorder)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.executor.close()  # idempotent enough: closing twice is tolerated below
        harness.store.close()
