"""The dashboard offers what the gateway lists (GetMarket), not a list of its own: a gateway
configured with two mints and one pair shows exactly those."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from e2e.dashboard_ui import Dashboard, open_dashboard
from support.gateway_process import GatewayProcess

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SMALL_MARKET = {
    "TRADEWIRE_MARKET__MINTS": json.dumps([{"symbol": "SOL", "address": SOL, "decimals": 9},
                                           {"symbol": "USDC", "address": USDC, "decimals": 6}]),
    "TRADEWIRE_MARKET__POOLS": json.dumps([{"base": "SOL", "quote": "USDC", "base_reserve": "50000"}]),
    "TRADEWIRE_MARKET__PRICES_USD": json.dumps({"SOL": "150", "USDC": "1"}),
    "TRADEWIRE_PAPER__STARTING_BALANCES": json.dumps({"SOL": "10", "USDC": "1000"}),
}


@pytest.fixture(scope="module")
def small_market_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("e2e-small-market"),
                             env={"TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist), **SMALL_MARKET}).start()
    yield process
    assert process.stop() == 0


@pytest.fixture
async def small_ui(browser: Browser, small_market_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, small_market_gateway) as dashboard:
        yield dashboard


async def test_trade_form_and_filters_offer_the_listed_market_only(small_ui: Dashboard):
    page = small_ui.page
    await small_ui.sign_in("alice")
    await expect(page.get_by_label("Sell", exact=True).locator("option")).to_have_text(["SOL", "USDC", "Other mint…"])
    await expect(page.get_by_label("Buy", exact=True).locator("option")).to_have_text(["USDC", "Other mint…"])
    await expect(page.locator("#history-mint option")).to_have_text(["All tokens", "SOL", "USDC"])
    request_id = await small_ui.trade("0.5", sell="SOL", buy="USDC")
    assert request_id
