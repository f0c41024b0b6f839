"""The dashboard's numbers and paging, through a real browser and gateway: history prices read
the same way whichever side of a pair was sold, the fees column names its unit, a filter change
made while the history cannot load is retried on the new filter's first page, the fill-price
chart dates fills from other days, and percentages and fee hints follow the reader's number
format. Each test trades with a key of its own, so its history holds only its trades."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx

from playwright.async_api import Browser, Route, expect

from e2e.dashboard_readings_ui import SOL, USDC, fresh_key, http_trade, sign_in_with_key
from e2e.dashboard_ui import Dashboard, open_dashboard, shown_decimal
from support.gateway_process import GatewayProcess
from support.trading import eventually


# -- the history's price column ---------------------------------------------------------------------

async def test_history_prices_are_quote_per_base_whichever_side_was_sold(ui: Dashboard):
    key = fresh_key(ui.gateway)
    sold_sol = await http_trade(ui.gateway, key, "0.5", sell=SOL, buy=USDC)
    bought_sol = await http_trade(ui.gateway, key, "100", sell=USDC, buy=SOL)
    await sign_in_with_key(ui, key)

    for trade in (sold_sol, bought_sol):
        amount_in, amount_out = Decimal(trade["amountIn"]), Decimal(trade["amountOut"])
        usdc_per_sol = amount_out / amount_in if trade["inputMint"] == SOL else amount_in / amount_out
        cell = ui.page.locator(f'#history tr[data-request-id="{trade["requestId"]}"]').locator('td[data-label="Price"]')
        await expect(cell).to_have_text(re.compile(r"^[\d,]+\.\d+\s+USDC/SOL$"))
        shown = shown_decimal(await cell.inner_text())
        assert abs(shown - usdc_per_sol) <= Decimal("0.000001"), (trade, shown)


async def test_the_history_fees_column_names_its_unit(ui: Dashboard):
    key = fresh_key(ui.gateway)
    await http_trade(ui.gateway, key, "0.01")
    await sign_in_with_key(ui, key)
    header = ui.page.get_by_test_id("history-table").locator("thead th").last
    await expect(header).to_contain_text("Fees")
    await expect(header).to_contain_text("lamports")
    await expect(header).to_be_visible()


async def test_every_value_column_of_the_positions_names_its_currency(ui: Dashboard):
    key = fresh_key(ui.gateway)
    await http_trade(ui.gateway, key, "0.01")
    await sign_in_with_key(ui, key)
    headers = ui.page.get_by_test_id("positions-table").locator("thead th")
    await expect(headers).to_have_text(["Token", "Amount", "Avg cost (USDC)", "Price (USDC)", "Value (USDC)",
                                        "Realized (USDC)", "Unrealized (USDC)"])


# -- a filter change that could not load -------------------------------------------------------------

async def test_a_filter_change_that_failed_is_retried_on_the_first_page_of_the_new_filter(ui: Dashboard):
    page = ui.page
    key = fresh_key(ui.gateway)
    for _ in range(11):  # two pages (10 a page): the second one is the last
        await http_trade(ui.gateway, key, "0.001")
    await sign_in_with_key(ui, key)
    history = page.locator("#history")
    await page.get_by_role("button", name="Older →").click()
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 2")
    await expect(history.locator("tbody tr")).to_have_count(1)

    ui.expect_network_errors()  # the browser logs the calls cut below

    async def cut(route: Route) -> None:
        await route.abort()

    await page.route("**/tradewire.v1.TradeExecutionService/GetTradeHistory", cut)
    await page.locator("#history-mode").select_option(label="Paper")
    await expect(history).to_contain_text("History unavailable")
    await page.unroute("**/tradewire.v1.TradeExecutionService/GetTradeHistory", cut)

    await page.get_by_role("button", name="Refresh history").click()
    await expect(history.get_by_test_id("panel-notice")).to_be_hidden()
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 1")
    await expect(history.locator("tbody tr")).to_have_count(10)
    await expect(page.get_by_role("button", name="Older →")).to_be_enabled()
    await expect(page.get_by_role("button", name="← Newer")).to_be_disabled()


# -- the fill-price chart's time axis ----------------------------------------------------------------

async def test_the_chart_time_axis_dates_fills_from_other_days(ui: Dashboard):
    page = ui.page
    key = fresh_key(ui.gateway)
    for amount in ("0.01", "0.02"):
        await http_trade(ui.gateway, key, amount)

    async def on_other_days(route: Route) -> None:
        """The trades as if made late one evening and early two days later."""
        response = await route.fetch()
        body = await response.json()
        trades = sorted(body.get("trades", []), key=lambda t: t["createdAt"])
        for trade, when in zip(trades, ["2026-03-01T22:15:00Z", "2026-03-03T06:30:00Z"]):
            trade["createdAt"] = when
        await route.fulfill(response=response, json=body)

    await page.route("**/tradewire.v1.TradeExecutionService/GetTradeHistory", on_other_days)
    await sign_in_with_key(ui, key, transport="Connect")  # JSON answers, so the test can edit one
    chart = page.get_by_test_id("price-chart")
    await expect(chart).to_contain_text("2 fills")
    times = chart.locator("svg text.axis").filter(has_text=re.compile(r"\d:\d\d"))
    await expect(times).to_have_count(2)
    await expect(times.first).to_contain_text("Mar 1")
    await expect(times.last).to_contain_text("Mar 3")


# -- number format of percentages and fee hints ------------------------------------------------------

async def test_percentages_and_fee_hints_follow_the_reader_number_format(browser: Browser, gateway: GatewayProcess):
    key = fresh_key(gateway)
    async with open_dashboard(browser, gateway, locale="de-DE") as ui:
        page = ui.page
        await sign_in_with_key(ui, key)
        form = page.locator("#trade-form")
        await page.locator("#slippage").fill("75")
        await expect(form).to_contain_text("= 0,75 %")
        await expect(form.get_by_role("button", name="0,5 %")).to_be_visible()
        await expect(page.locator("#fee-preview")).to_have_text("Plain send: 5.000 lamports base fee per signature.")

        await page.locator("#amount").fill("1.000")  # one thousand in de-DE, or one: refused at its field
        await page.locator("#submit-trade").click()
        await expect(ui.field_error("amount")).not_to_be_empty()
        await page.locator("#amount").fill("0.5")
        request_id = await page.locator("#request-id").input_value()
        await page.locator("#submit-trade").click()
        await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
        await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(page.get_by_test_id("exec-price-impact")).to_have_text(re.compile(r"^\d+(,\d+)? %$"))
        await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0,5 SOL")


async def test_signing_in_with_an_expired_key_says_it_has_expired(ui: Dashboard, gateway: GatewayProcess):
    key = fresh_key(gateway, scopes="read", expires_in="1s")

    async def refused() -> bool:
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
            answer = await http.get("/v1/health", headers={"authorization": f"Bearer {key}"})
        return answer.json().get("credentialsRefused") == "API_KEY_EXPIRED"

    await eventually(refused, timeout=15, what="the key to expire")
    page = ui.page
    await ui.open()
    await page.get_by_label("API key or JWT").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#credential-error")).to_have_text("This API key has expired. (API_KEY_EXPIRED)")
