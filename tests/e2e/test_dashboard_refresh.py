"""How the dashboard keeps its panels current without spending the caller's rate limit for
nothing: what it shows and does when that limit is used up, how few calls a trade costs, and
how trades made elsewhere (another tab, a script on the same key) reach the page.

``limited_gateway`` refills each caller's bucket slowly (one call every 4 s, 10 at most), so
a test can use it up over HTTP/JSON with the page's own key. ``book_gateway`` is a gateway
of these tests alone, so the trades they seed do not move other tests' history.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from e2e.dashboard_ui import Dashboard, api, dashboard_gateway, open_dashboard
from support.gateway_process import GatewayProcess

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    with dashboard_gateway(tmp_path_factory.mktemp("e2e-rate-limited"), dashboard_dist, {
            "TRADEWIRE_LIMITS__REQUESTS_PER_S": "0.25", "TRADEWIRE_LIMITS__BURST": "10"}) as process:
        yield process


@pytest.fixture(scope="module")
def book_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    with dashboard_gateway(tmp_path_factory.mktemp("e2e-book"), dashboard_dist) as process:
        yield process


@pytest.fixture
async def limited_ui(browser: Browser, limited_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, limited_gateway) as dashboard:
        yield dashboard


@pytest.fixture
async def book_ui(browser: Browser, book_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, book_gateway) as dashboard:
        yield dashboard


async def use_up_rate_limit(gateway: GatewayProcess, who: str) -> None:
    """Spend the caller's bucket (shared by every protocol) until the gateway refuses."""
    async with api(gateway, who) as http:
        for _ in range(20):
            if (await http.get("/v1/positions")).status_code == 429:
                return
    raise AssertionError("the rate limit was never reached")


async def paper_trade(gateway: GatewayProcess, who: str, amount: str = "0.01") -> str:
    """A SOL→USDC trade made by another client on the same key; its request id."""
    request_id = f"elsewhere-{uuid.uuid4().hex[:12]}"
    async with api(gateway, who) as http:
        response = await http.post("/v1/trades", json={
            "requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
            "amount": amount, "slippageBps": 100})
    assert response.status_code == 200, response.text
    return request_id


# -- 3. a rate-limited page keeps its data, says so, and recovers --------------------------------

async def test_rate_limited_panels_keep_their_data_and_recover_after_the_retry_delay(limited_ui: Dashboard):
    ui, page = limited_ui, limited_ui.page
    await ui.sign_in("bob")
    positions, history = page.locator("#positions"), page.locator("#history")
    await expect(history.get_by_test_id("history-table").or_(history.get_by_test_id("history-empty"))).to_be_visible()
    await use_up_rate_limit(ui.gateway, "bob")

    await page.get_by_role("button", name="Refresh positions").click()
    await page.get_by_role("button", name="Refresh history").click()
    for panel in (positions, history):
        notice = panel.get_by_test_id("panel-notice")
        await expect(notice).to_contain_text("rate limit")
        await expect(notice).to_contain_text(re.compile(r"Retrying in \d+ s"))
    # the last data stays on screen meanwhile
    await expect(positions.get_by_test_id("positions-table")).to_be_visible()
    await expect(history.get_by_test_id("history-table").or_(history.get_by_test_id("history-empty"))).to_be_visible()
    await ui.shot("refresh-03-rate-limited-panels")

    # tried again once the gateway's delay has passed (one call every 4 s): both come back
    for panel in (positions, history):
        await expect(panel.get_by_test_id("panel-notice")).to_be_hidden(timeout=30_000)


async def test_a_rate_limited_health_check_is_not_an_unreachable_gateway(limited_ui: Dashboard):
    ui, page = limited_ui, limited_ui.page
    await ui.sign_in("reader")
    await use_up_rate_limit(ui.gateway, "reader")
    checks = len(ui.calls("HealthCheck"))
    await page.get_by_role("button", name="Refresh health").click()
    await expect(page.get_by_test_id("health-rate-limited")).to_contain_text("rate limit")
    await expect(page.get_by_test_id("health-pill")).to_have_text("Serving")
    await expect(page.get_by_test_id("gateway-state")).to_contain_text("Serving")
    await expect(page.locator("#health")).not_to_contain_text("Unreachable")
    # not polled faster because of it (the regular check is every 10 s)
    await page.wait_for_timeout(5_000)
    assert len(ui.calls("HealthCheck")) - checks <= 2, [r.url for r in ui.calls("HealthCheck")]


# -- 12. a rate-limited trade is not a failed one ------------------------------------------------

async def test_a_rate_limited_trade_says_so_and_counts_down_to_its_retry(limited_ui: Dashboard):
    ui, page = limited_ui, limited_ui.page
    await ui.sign_in("trader")
    await use_up_rate_limit(ui.gateway, "trader")
    await page.locator("#amount").fill("0.01")
    await page.locator("#submit-trade").click()
    await expect(page.get_by_test_id("exec-status")).to_have_text("Rate limited")
    retry = page.get_by_test_id("exec-retry")
    await expect(retry).to_have_text(re.compile(r"^Retry in \d+ s\.$"))
    first = await retry.inner_text()
    await expect(retry).not_to_have_text(first, timeout=2_500)  # it counts down
    await expect(retry).to_have_text("You can retry now.", timeout=10_000)


# -- 3. what a trade costs in calls -------------------------------------------------------------

async def test_a_refused_request_reloads_nothing_and_a_fill_reloads_only_the_book(book_ui: Dashboard):
    ui, page = book_ui, book_ui.page
    await ui.sign_in("alice")
    signed_in = time.monotonic()
    counted = ("GetPositions", "GetTradeHistory", "HealthCheck")
    before = {m: len(ui.calls(m)) for m in counted}

    await ui.pick_unsupported_pair()
    await page.locator("#amount").fill("1")
    await page.locator("#submit-trade").click()
    await expect(page.get_by_test_id("exec-status")).to_have_text("Refused")
    await expect(page.locator("#submit-trade")).to_be_enabled()
    await page.wait_for_timeout(1_000)  # what a refusal would reload, it would have asked for by now
    assert {m: len(ui.calls(m)) - before[m] for m in counted} == dict.fromkeys(counted, 0)

    await page.get_by_label("Sell", exact=True).select_option(label="SOL")
    await ui.trade("0.01")
    await expect(page.get_by_test_id("price-chart").locator("circle")).to_have_count(1)
    await expect(page.locator("#history")).not_to_have_attribute("aria-busy", "true")
    await expect(page.locator("#chart")).not_to_have_attribute("aria-busy", "true")
    assert time.monotonic() - signed_in < 9, "too slow to tell a trade's calls from the health poll (10 s)"
    # positions, the history page, and the chart (the fill moved the holdings); no health check
    assert {m: len(ui.calls(m)) - before[m] for m in counted} == {
        "GetPositions": 1, "GetTradeHistory": 2, "HealthCheck": 0}


# -- 6. trades made elsewhere reach the page; a settled trade keeps the history page -------------

async def test_trades_made_elsewhere_appear_on_return_and_at_the_refresh_interval(book_ui: Dashboard):
    ui, page = book_ui, book_ui.page
    await page.clock.install()  # time flows as usual; the test may jump it ahead
    await ui.sign_in("bob")

    on_return = await paper_trade(ui.gateway, "bob")
    await page.clock.fast_forward(6_000)
    await page.evaluate("window.dispatchEvent(new Event('focus'))")  # back to the page
    await expect(page.locator(f'#history tr[data-request-id="{on_return}"]')).to_be_visible()

    sol_before = await ui.position("SOL")
    on_interval = await paper_trade(ui.gateway, "bob")
    await page.clock.fast_forward(31_000)
    await expect(page.locator(f'#history tr[data-request-id="{on_interval}"]')).to_be_visible()
    await expect(page.locator("#positions")).not_to_have_attribute("aria-busy", "true")
    assert await ui.position("SOL") < sol_before


async def test_a_settled_trade_keeps_the_history_page_being_read(book_ui: Dashboard):
    ui, page = book_ui, book_ui.page
    for _ in range(11):  # two pages of history
        await paper_trade(ui.gateway, "trader", "0.001")
    await ui.sign_in("trader")
    await page.locator("#history-next").click()
    page_label = page.get_by_test_id("history-page")
    await expect(page_label).to_have_text("Page 2")

    history_calls = len(ui.calls("GetTradeHistory"))
    await page.locator("#amount").fill("0.01")
    await page.locator("#submit-trade").click()
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
    deadline = time.monotonic() + 10
    while len(ui.calls("GetTradeHistory")) == history_calls:  # the refresh after the trade has started
        assert time.monotonic() < deadline, "the history was not refreshed after the trade"
        await asyncio.sleep(0.05)  # polling interval, bounded by the deadline
    await expect(page.locator("#history")).not_to_have_attribute("aria-busy", "true")
    await expect(page_label).to_have_text("Page 2")
    await expect(page.locator("#history-prev")).to_be_enabled()
