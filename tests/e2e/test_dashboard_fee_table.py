"""The fee table of a trade's card: what the transaction paid, its total, and — apart from the
total, as it is no cost — rent a token account it closed gave back (a LIVE swap unwrapping the
wallet's wrapped SOL). The paper market refunds no rent, so the answer is edited in flight."""

from __future__ import annotations

from playwright.async_api import Route, expect

from e2e.dashboard_ui import Dashboard, submit

EXECUTE = "**/tradewire.v1.TradeExecutionService/ExecuteTrade"
STREAM = "**/tradewire.v1.TradeExecutionService/StreamExecutionStatus"


async def test_rent_refunded_is_its_own_row_outside_the_total(ui: Dashboard):
    page = ui.page

    async def with_a_refund(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["fees"]["rentRefundedLamports"] = "2039280"
        await route.fulfill(response=response, json=body)

    await ui.sign_in("bob", transport="Connect")  # JSON answers, so the test can edit one
    ui.expect_network_errors()
    await page.route(STREAM, lambda route: route.abort())  # the card shows ExecuteTrade's answer
    await page.route(EXECUTE, with_a_refund)
    await submit(ui, "0.01")

    fees = page.get_by_test_id("exec-fees")
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
    rows = fees.locator("tbody tr")
    await expect(rows.last).to_contain_text("Rent refunded")
    await expect(rows.last).to_contain_text("2,039,280 lamports")
    total = fees.locator("tr.total")
    await expect(total).not_to_contain_text("2,039,280")
