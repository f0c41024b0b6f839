"""The dashboard offers what the gateway lists (GetMarket), not a list of its own: a gateway
configured with two mints and one pair shows exactly those."""

import json
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from e2e.dashboard_ui import Dashboard, open_dashboard
from support.devnet_process import DevnetProcess
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


@pytest.fixture
async def priced_ui(browser: Browser, tmp_path: Path, dashboard_dist: Path) -> AsyncIterator[Dashboard]:
    """A gateway priced by a devnet of its own, which the test may stop."""
    devnet = DevnetProcess(tmp_path / "devnet").start()
    gateway = GatewayProcess(tmp_path / "gw", env={
        "TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist), "TRADEWIRE_MARKET_DATA__JUPITER_URL": devnet.url,
        "TRADEWIRE_MARKET_DATA__VALUATION_CACHE_S": "0",
        "TRADEWIRE_PAPER__STARTING_BALANCES": json.dumps({"SOL": "10", "USDC": "1000"})}).start()
    gateway.devnet = devnet
    try:
        async with open_dashboard(browser, gateway) as dashboard:
            yield dashboard
    finally:
        assert gateway.stop() == 0
        devnet.stop()


async def test_positions_stay_shown_unvalued_while_prices_are_down(priced_ui: Dashboard):
    page = priced_ui.page
    await priced_ui.sign_in("alice")
    await priced_ui.wait_filled(await priced_ui.trade("0.5", sell="SOL", buy="USDC"))
    sol_row = page.locator('#positions tr[data-symbol="SOL"][data-mode="Paper"]')
    value_cell = sol_row.locator('td[data-label="Value"]')
    await expect(value_cell).not_to_have_text("—")

    priced_ui.gateway.devnet.stop()
    await page.get_by_role("button", name="Refresh positions").click()
    await expect(page.get_by_test_id("unvalued-note")).to_contain_text("1 position could not be valued just now")
    await expect(page.get_by_test_id("unvalued-note")).to_contain_text("UPSTREAM_UNAVAILABLE")
    await expect(value_cell).to_have_text("—")
    await expect(sol_row).to_have_attribute("title", re.compile("^Not valued just now: UPSTREAM_UNAVAILABLE"))
    assert Decimal("9") < await priced_ui.position("SOL") < Decimal("9.5")  # the balance, still shown (less fees)
