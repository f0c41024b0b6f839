"""The dashboard in a real browser against a real gateway (paper trading)."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest
from playwright.async_api import expect

from e2e.dashboard_ui import PHONE, Dashboard, shown_decimal

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


async def test_paper_trade_fills_and_updates_history_and_positions(ui: Dashboard):
    page = ui.page
    await ui.open()
    await ui.shot("01-sign-in")
    await ui.sign_in("alice")
    await expect(page.locator("#trade-form")).to_be_visible()
    await expect(page.get_by_test_id("health-pill")).to_have_text("Serving")
    await expect(page.get_by_test_id("rate-limit")).to_contain_text(" of 400 left")
    await expect(page.locator("#mode option")).to_have_text(["Paper"])  # alice has no trade:live
    await ui.shot("02-dashboard-signed-in")
    sol_before, usdc_before = await ui.position("SOL"), await ui.position("USDC")

    request_id = await ui.trade("1.5", sell="SOL", buy="USDC")

    # progress bar at 100 %, the whole lifecycle in the timeline, itemised fees
    timeline = page.get_by_test_id("exec-timeline").locator("li")
    await expect(timeline.first).to_have_attribute("data-stage", "RECEIVED")
    await expect(timeline.last).to_have_attribute("data-stage", "FILLED")
    await expect(timeline).to_have_count(9)
    await expect(page.get_by_test_id("exec-amount-in")).to_have_text("1.5 SOL")
    fees = page.get_by_test_id("exec-fees")
    await expect(fees.get_by_role("row", name="Base fee")).to_contain_text("5,000 lamports")
    total_fee_sol = shown_decimal((await fees.get_by_role("row", name="Total").locator("td").nth(1).inner_text()))
    amount_out = shown_decimal(await page.get_by_test_id("exec-amount-out").inner_text())
    assert amount_out > 0

    # history has the trade; positions moved by exactly the fill (fees are paid in SOL)
    row = page.locator(f'#history tr[data-request-id="{request_id}"]')
    await expect(row).to_contain_text("1.5 SOL")
    await expect(row).to_contain_text("Filled")
    sol_after = sol_before - Decimal("1.5") - total_fee_sol
    await expect(page.locator('#positions tr[data-symbol="SOL"] [data-testid=position-amount]')).to_have_text(
        f"{sol_after:,f}".rstrip("0").rstrip("."))
    assert await ui.position("USDC") == usdc_before + amount_out
    await expect(page.get_by_test_id("price-chart").locator("circle")).not_to_have_count(0)
    await ui.shot("03-paper-trade-filled")

    # a history row replays that trade's status stream into the execution view
    await page.get_by_role("button", name="New request id").click()
    await row.click()
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
    await expect(page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuenow", "100")
    assert len(ui.calls("StreamExecutionStatus")) >= 2


async def test_bad_input_is_refused_in_the_browser_without_a_request(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    amount = page.locator("#amount")
    submit = page.locator("#submit-trade")

    await amount.fill("1.0000000001")  # SOL has 9 decimals
    await submit.click()
    await expect(ui.field_error("amount")).to_have_text("SOL has 9 decimals; this amount has more")
    await expect(amount).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("form-error")).to_contain_text("nothing was sent")
    await ui.shot("04-browser-validation-decimals")

    await amount.fill("abc")
    await expect(ui.field_error("amount")).to_be_empty()  # editing clears the field's error
    await submit.click()
    await expect(ui.field_error("amount")).to_have_text("Enter a positive decimal number, e.g. 1.5")

    # USDC has 6 decimals, and EXACT_OUT makes the amount the output mint's
    await amount.fill("2.1234567")
    await page.get_by_text("Exact out").click()
    await submit.click()
    await expect(ui.field_error("amount")).to_have_text("USDC has 6 decimals; this amount has more")

    await page.get_by_text("Exact in").click()
    await amount.fill("1")
    await page.locator("#slippage").fill("20000")
    await page.locator("#request-id").fill("bad id!")
    await page.locator("#mev-strategy").select_option(label="Jito bundle")
    await page.locator("#jito-tip").fill("500")
    await submit.click()
    await expect(ui.field_error("slippage_bps")).to_have_text("Slippage is 0–10,000 bps (0–100 %)")
    await expect(ui.field_error("request_id")).to_have_text("Use only letters, digits and . _ : -")
    await expect(ui.field_error("mev_protection.jito_tip_lamports")).to_have_text(
        "jito_tip_lamports must be at least 1000 for Jito strategies")
    await ui.shot("05-browser-validation-rules")

    assert ui.calls("ExecuteTrade") == [], "invalid trades must not reach the gateway"


async def test_gateway_refusals_are_shown_at_their_fields(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")

    # a well-formed, real mint the gateway does not support → UNSUPPORTED_PAIR at input_mint
    await ui.pick_unsupported_pair()
    await page.locator("#amount").fill("1")
    await page.locator("#submit-trade").click()
    error = ui.field_error("input_mint")
    await expect(error).to_have_text("mint is not supported")
    await expect(error).to_have_attribute("data-source", "gateway")
    await expect(page.get_by_test_id("form-error")).to_contain_text("UNSUPPORTED_PAIR")
    await expect(page.get_by_test_id("exec-status")).to_have_text("Refused")
    assert len(ui.calls("ExecuteTrade")) == 1
    await ui.shot("06-gateway-unsupported-mint")

    # the same request id with a different amount → ALREADY_EXISTS at request_id
    await page.get_by_label("Sell", exact=True).select_option(label="SOL")
    first_id = await ui.trade("0.25")
    await page.locator("#request-id").fill(first_id)
    await page.locator("#amount").fill("0.5")
    await page.locator("#submit-trade").click()
    await expect(ui.field_error("request_id")).to_contain_text(f"“{first_id}”: already used with a different payload")
    await expect(page.get_by_test_id("form-error")).to_contain_text("DUPLICATE_REQUEST_MISMATCH")
    # the only fix is another id: one is filled in, and it is not the refused one
    await expect(page.locator("#request-id")).not_to_have_value(first_id)
    await expect(page.locator("#request-id")).not_to_have_attribute("aria-invalid", "true")
    # the execution view reports the refusal, not the earlier trade that owns the id
    await expect(page.get_by_test_id("exec-status")).to_have_text("Refused")
    await expect(page.get_by_test_id("exec-error")).to_contain_text("DUPLICATE_REQUEST_MISMATCH")
    await expect(page.get_by_test_id("exec-timeline").locator("li")).to_have_count(0)
    await ui.shot("07-gateway-duplicate-request-id")


async def test_read_only_key_sees_no_trade_form(ui: Dashboard):
    page = ui.page
    await ui.open()
    await page.get_by_label("Remember in this tab").check()
    await ui.sign_in("reader", navigate=False)
    await expect(page.get_by_test_id("read-only")).to_be_visible()
    await expect(page.locator("#trade-form")).to_have_count(0)
    await expect(page.get_by_role("button", name="Execute paper trade")).to_have_count(0)
    await expect(page.get_by_test_id("scopes")).to_have_text("read")
    await expect(page.locator("#history")).to_be_visible()
    await ui.shot("08-read-only")

    # remembered for this tab: a reload stays signed in; signing out forgets the key
    await page.reload()
    await expect(page.get_by_test_id("principal")).to_have_text(ui.gateway.key("reader")[:11])
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("Signed out.")).to_be_visible()
    await page.reload()
    await expect(page.get_by_label("API key or JWT")).to_be_visible()


async def test_history_filters_and_paging(ui: Dashboard, gateway):
    # Eleven SOL→USDC trades and one USDC→BONK, made over HTTP/JSON for this principal.
    headers = {"authorization": f"Bearer {gateway.key('trader')}"}
    async with httpx.AsyncClient(base_url=gateway.http_url, headers=headers, timeout=10) as http:
        for i in range(12):
            body = {"requestId": f"seed-{i}", "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
                    "amount": "0.01", "slippageBps": 100}
            if i == 11:
                body.update(inputMint=USDC, outputMint=BONK, amount="10")
            (await http.post("/v1/trades", json=body)).raise_for_status()
        total = len((await http.get("/v1/trades", params={"pageSize": 500})).json()["trades"])
        bonk = len((await http.get("/v1/trades", params={"pageSize": 500, "mint": BONK})).json()["trades"])

    page = ui.page
    await ui.sign_in("trader")
    await expect(page.locator("#mode option")).to_have_text(["Paper", "Live"])
    rows = page.locator("#history tbody tr")
    await expect(rows).to_have_count(10)
    await expect(page.locator("#history-next")).to_be_enabled()
    await expect(page.locator("#history-prev")).to_be_disabled()
    await page.locator("#history-next").click()
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 2")
    await expect(rows).to_have_count(min(10, total - 10))
    await page.locator("#history-prev").click()
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 1")

    await page.locator("#history-mint").select_option(label="BONK")
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 1")
    await expect(rows).to_have_count(bonk)
    await expect(rows.first).to_contain_text("BONK")
    await ui.shot("09-history-filtered")

    await page.get_by_text("Failed", exact=True).click()  # status filter: none failed
    await expect(page.get_by_test_id("history-empty")).to_be_visible()
    await page.get_by_text("Failed", exact=True).click()
    await page.locator("#history-mint").select_option(label="All tokens")
    await page.locator("#history-mode").select_option(label="Live")
    await expect(page.get_by_test_id("history-empty")).to_be_visible()


async def test_connect_transport_works_too(ui: Dashboard):
    page = ui.page
    await ui.sign_in("trader")  # gRPC-Web by default
    assert ui.calls("HealthCheck")[0].headers["content-type"].startswith("application/grpc-web")
    await page.locator("#transport").select_option(label="Connect")
    await expect(page.get_by_test_id("positions-table")).to_be_visible()
    request_id = await ui.trade("0.1", sell="USDC", buy="SOL")
    execute = ui.calls("ExecuteTrade")
    assert len(execute) == 1 and execute[0].headers["content-type"] == "application/json"
    stream = ui.calls("StreamExecutionStatus")
    assert stream and all(r.headers["content-type"].startswith("application/connect+json") for r in stream)
    await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0.1 USDC")
    assert request_id in await page.locator("#history").inner_text()
    await ui.shot("10-connect-transport")


@pytest.mark.parametrize("viewport", [PHONE], ids=["390px"])
async def test_narrow_window_layout(ui: Dashboard):
    page = ui.page
    await ui.open()
    await ui.shot("11-narrow-sign-in")
    await ui.sign_in("alice")
    await ui.trade("0.5", sell="USDC", buy="SOL")
    # one column, nothing wider than the window
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    trade_box = await page.locator("#trade-form").bounding_box()
    positions_box = await page.locator("#positions").bounding_box()
    assert positions_box["y"] > trade_box["y"] + trade_box["height"]
    await expect(page.get_by_test_id("positions-table").locator("thead")).to_be_hidden()
    await ui.shot("12-narrow-dashboard")
    await page.get_by_test_id("exec-progress").scroll_into_view_if_needed()
    await ui.shot("13-narrow-execution-viewport", full_page=False)


async def test_mev_fees_are_itemised_and_live_refusal_is_explained(ui: Dashboard):
    page = ui.page
    await ui.sign_in("trader")
    await page.locator("#mev-strategy").select_option(label="Priority fee")
    await page.locator("#cu-price").fill("100000")
    await page.locator("#cu-limit").fill("200000")
    await expect(page.locator("#fee-preview")).to_contain_text("Priority fee ≈ 20,000 lamports")
    await ui.trade("0.2")
    fees = page.get_by_test_id("exec-fees")
    await expect(fees.get_by_role("row", name="Priority fee")).to_contain_text("20,000 lamports")

    # a Jito bundle pays with its tip: no CU price to give, none charged
    await page.locator("#mev-strategy").select_option(label="Jito bundle")
    await expect(page.locator("#cu-price")).to_be_hidden()
    await page.locator("#jito-tip").fill("25000")
    await expect(page.locator("#fee-preview")).to_contain_text("no priority fee")
    await ui.trade("0.2")
    await expect(fees.get_by_role("row", name="Jito tip")).to_contain_text("25,000 lamports")
    await expect(fees).not_to_contain_text("20,000 lamports")
    await ui.shot("14-jito-fees")

    # LIVE is allowed by trader's scopes but not configured on this gateway
    await page.locator("#mode").select_option(label="Live")
    await expect(page.locator("#submit-trade")).to_have_text("Execute live trade")
    await page.locator("#amount").fill("0.2")
    await page.locator("#submit-trade").click()
    await expect(page.get_by_test_id("form-error")).to_contain_text("live executor not configured")
    await expect(page.get_by_test_id("exec-status")).to_have_text(re.compile("Refused|Failed|Rejected"))
    await ui.shot("15-live-not-configured")
