"""The trade form and the Execution card around one trade: empty fields, how a trade that did
not fill looks, refusals that belong to an earlier request or to one field, cancelling a
running trade, a renewed request id, the timeline's notes, and what a phone and a 1280 px
window show.

``slow_gateway``: paper trades that take wall-clock time (6 s), so that one can be cancelled
while it runs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Route, expect

from e2e.dashboard_ui import DESKTOP, PHONE, Dashboard, api, dashboard_gateway, open_dashboard, stored_trade, submit
from support.gateway_process import GatewayProcess

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    with dashboard_gateway(tmp_path_factory.mktemp("e2e-trade-card"), dashboard_dist,
                           {"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "6000"},
                           streams_config="[streams]\nawait_trade_s = 10\n") as process:
        yield process


@pytest.fixture
async def slow_ui(browser: Browser, slow_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, slow_gateway) as dashboard:
        yield dashboard


# -- 1. empty fields are never a silent 0 -------------------------------------------------------

async def test_an_empty_slippage_is_refused_at_its_field(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await page.locator("#slippage").fill("")
    await submit(ui, "0.02")
    await expect(ui.field_error("slippage_bps")).to_contain_text("Enter a slippage tolerance")
    await expect(page.locator("#slippage")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#slippage")).to_be_focused()
    await expect(page.get_by_test_id("form-error")).to_contain_text("nothing was sent")
    assert ui.calls("ExecuteTrade") == []


async def test_a_priority_fee_needs_its_price_and_an_empty_cu_limit_is_left_to_the_router(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await page.locator("#mev-strategy").select_option(label="Priority fee")
    await page.locator("#cu-price").fill("")
    await submit(ui, "0.02")
    await expect(ui.field_error("mev_protection.compute_unit_price_micro_lamports")).to_contain_text("Enter a CU price")
    assert ui.calls("ExecuteTrade") == []

    await page.locator("#cu-price").fill("100000")
    await page.locator("#cu-limit").fill("")
    # said in the form: the fee follows the limit the router sets, not a limit of 0
    await expect(page.locator("#fee-preview")).to_contain_text("the CU limit the router sets")
    request_id = await submit(ui, "0.02")
    await ui.wait_filled(request_id)
    # the paper router's own limit (200,000 CU) at 100,000 µlamports: 20,000 lamports
    await expect(page.get_by_test_id("exec-fees").get_by_role("row", name="Priority fee")).to_contain_text(
        "20,000 lamports")


# -- 2. a trade that ended without a fill does not look complete --------------------------------

async def test_a_rejected_trade_keeps_the_progress_it_made(ui: Dashboard):
    page = ui.page
    await ui.sign_in("alice")
    await submit(ui, "5000")  # more SOL than the paper wallet holds
    await expect(page.get_by_test_id("exec-status")).to_have_text("Rejected")
    bar = page.get_by_test_id("exec-progress")
    await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^\d{1,2}$"))  # below 100
    await expect(bar).to_have_attribute("aria-valuetext", re.compile(r"^Rejected at \d{1,2} %$"))
    await expect(bar).to_have_text(re.compile(r"^Rejected at \d{1,2} %$"))
    await ui.shot("card-02-rejected-progress", full_page=False)


# -- 4. a refusal shown for an earlier request goes ---------------------------------------------

async def test_a_browser_refusal_replaces_an_earlier_gateway_refusal(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await ui.pick_unsupported_pair()
    await submit(ui, "1")
    await expect(page.get_by_test_id("exec-error")).to_contain_text("UNSUPPORTED_PAIR")

    await page.get_by_label("Sell", exact=True).select_option(label="SOL")
    await submit(ui, "1.0000000001")  # SOL has 9 decimals: refused in the browser
    await expect(ui.field_error("amount")).to_have_text("SOL has 9 decimals; this amount has more")
    card = page.locator("#execution")
    await expect(page.get_by_test_id("exec-status")).to_have_text("Not sent")
    await expect(page.get_by_test_id("exec-error")).to_have_count(0)
    await expect(card).not_to_contain_text("UNSUPPORTED_PAIR")
    assert len(ui.calls("ExecuteTrade")) == 1


# -- 5. cancelling a running trade --------------------------------------------------------------

async def test_a_running_trade_can_be_cancelled_from_the_execution_card(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("alice")
    cancel = page.get_by_role("button", name="Cancel trade")
    await expect(cancel).to_be_hidden()
    request_id = await submit(ui, "0.01")
    await expect(page.get_by_test_id("exec-timeline").locator('li[data-stage="QUOTED"]')).to_be_visible()
    await cancel.click()

    await expect(page.get_by_test_id("exec-status")).to_have_text("Cancelled")
    await expect(cancel).to_be_hidden()
    bar = page.get_by_test_id("exec-progress")
    await expect(bar).to_have_text(re.compile(r"^Cancelled at \d{1,2} %$"))
    await expect(bar).not_to_have_attribute("aria-valuenow", "100")
    # an outcome, not a mistake in the form
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    await expect(page.locator("#request-id")).not_to_have_value(request_id)
    assert (await stored_trade(ui.gateway, "alice", request_id))["status"] == "TRADE_STATUS_CANCELLED"
    await ui.shot("card-05-cancelled", full_page=False)


async def test_a_trade_cancelled_elsewhere_shows_as_cancelled_not_as_a_form_error(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("bob")
    request_id = await submit(ui, "0.01")
    await expect(page.get_by_test_id("exec-timeline").locator('li[data-stage="QUOTED"]')).to_be_visible()
    async with api(ui.gateway, "bob") as http:
        response = await http.post(f"/v1/trades/{request_id}:cancel", json={"reason": "from a script"})
    assert response.status_code == 200, response.text

    await expect(page.get_by_test_id("exec-status")).to_have_text("Cancelled")
    await expect(page.locator("#submit-trade")).to_be_enabled()
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    await expect(page.get_by_role("button", name="Cancel trade")).to_be_hidden()


# -- 7. an id refused for itself is replaced ----------------------------------------------------

async def test_after_a_duplicate_id_refusal_the_next_trade_goes_through(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    first_id = await ui.trade("0.01")
    await page.locator("#request-id").fill(first_id)
    await submit(ui, "0.02")  # the same id, another payload
    await expect(page.get_by_test_id("form-error")).to_contain_text("DUPLICATE_REQUEST_MISMATCH")
    await expect(page.locator("#request-id")).not_to_have_value(first_id)

    second_id = await submit(ui, "0.02")
    await ui.wait_filled(second_id)
    await expect(page.get_by_test_id("form-error")).to_be_hidden()


# -- 9. refusals about the amount are shown at the amount ---------------------------------------

async def test_amount_refusals_highlight_the_amount_field(ui: Dashboard):
    page = ui.page
    amount = page.locator("#amount")
    await ui.sign_in("alice")
    await submit(ui, "5000")  # more than the balance
    await expect(page.get_by_test_id("form-error")).to_contain_text("INSUFFICIENT_FUNDS")
    await expect(ui.field_error("amount")).to_have_attribute("data-source", "gateway")
    await expect(ui.field_error("amount")).not_to_be_empty()
    await expect(amount).to_have_attribute("aria-invalid", "true")
    await expect(amount).to_be_focused()

    await submit(ui, "0.000000001")  # too small to buy anything
    await expect(page.get_by_test_id("form-error")).to_contain_text("NO_ROUTE")
    await expect(ui.field_error("amount")).not_to_be_empty()
    await expect(amount).to_have_attribute("aria-invalid", "true")


# -- 10. a timeline note is not squeezed into the stage column ----------------------------------

async def test_a_reconnecting_note_spans_the_timeline(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    ui.expect_network_errors()  # the status stream is cut by the test

    async def cut(route: Route) -> None:
        await route.abort()

    await page.route("**/tradewire.v1.TradeExecutionService/StreamExecutionStatus", cut)
    request_id = await submit(ui, "0.01")
    note = page.get_by_test_id("exec-timeline").locator("li.warn .msg")
    await expect(note.first).to_contain_text("Reconnecting")
    box = await note.first.bounding_box()
    stage_column = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize) * 5.8")
    assert box and box["width"] > 2 * stage_column, box
    await page.unroute("**/tradewire.v1.TradeExecutionService/StreamExecutionStatus")
    await ui.wait_filled(request_id)


# -- 14. the card after a submit on a phone; the history's ids at 1280 px -----------------------

@pytest.mark.parametrize("viewport", [PHONE], ids=["390px"])
async def test_on_a_phone_the_execution_card_is_brought_into_view_after_a_submit(ui: Dashboard):
    page = ui.page
    await ui.sign_in("alice")
    await expect(page.get_by_test_id("exec-status")).not_to_be_in_viewport()
    request_id = await submit(ui, "0.01")
    await ui.wait_filled(request_id)
    await expect(page.get_by_test_id("exec-status")).to_be_in_viewport()
    header = await page.locator("header.topbar").bounding_box()
    card = await page.locator("#execution").bounding_box()
    assert header and card and header["y"] + header["height"] <= card["y"], (header, card)
    await ui.shot("card-14-phone-after-submit", full_page=False)


async def test_at_1280_px_each_history_row_shows_its_request_id(ui: Dashboard):
    assert ui.page.viewport_size == DESKTOP
    page = ui.page
    long_id = f"web-{uuid.uuid4().hex}"[:40]
    # a whole first page of wide rows: BONK amounts, a long refused amount, long ids
    trades = [(SOL, USDC, "0.012345678")] * 6 + [(USDC, BONK, "12.345678")] * 3 + [(SOL, USDC, "1000.123456789")]
    async with api(ui.gateway, "trader") as http:
        for i, (sell, buy, amount) in enumerate(trades):
            request_id = long_id if i == len(trades) - 1 else f"web-{uuid.uuid4().hex}"[:40]
            await http.post("/v1/trades", json={"requestId": request_id, "mode": "TRADING_MODE_PAPER",
                                                "inputMint": sell, "outputMint": buy, "amount": amount,
                                                "slippageBps": 100})
    await ui.sign_in("trader")
    ids = page.get_by_test_id("history-request-id")
    await expect(ids).to_have_count(10)
    card = await page.locator("#history .table-wrap").bounding_box()
    assert card
    for i in range(10):
        box = await ids.nth(i).bounding_box()
        assert box and card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"], (i, box, card)
    # whole where it is long (broken over lines, nothing cut off); also in its title
    row_id = page.locator(f'#history tr[data-request-id="{long_id}"]').get_by_test_id("history-request-id")
    await expect(row_id).to_have_attribute("title", long_id)
    await expect(row_id).to_have_text(long_id)
    assert await row_id.evaluate("e => e.scrollWidth <= e.clientWidth")
    await ui.shot("card-14-history-1280")


# -- signing out while a trade runs ---------------------------------------------------------------

async def test_signing_out_stops_following_the_running_trade(slow_ui: Dashboard):
    """The card's status stream ends with the sign-out, not with the trade (~6 s later): the
    next sign-in's views hear nothing of the previous caller's trade."""
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("bob")
    ui.expect_network_errors()  # (the stream the sign-out cuts)
    stream_cut = asyncio.get_running_loop().create_future()

    def on_failed(request) -> None:
        if request.url.endswith("/StreamExecutionStatus") and not stream_cut.done():
            stream_cut.set_result(request.url)

    page.on("requestfailed", on_failed)
    await submit(ui, "0.01")
    await expect(page.get_by_test_id("exec-timeline").locator('li[data-stage="QUOTED"]')).to_be_visible()
    await page.locator("#sign-out").click()
    await asyncio.wait_for(stream_cut, 3)  # the trade itself is still running
