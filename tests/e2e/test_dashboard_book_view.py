"""The positions and history cards: every positions column, PnL included, in a 1280 px window
without scrolling sideways, and a keyboard user's place in the history kept across refreshes."""

from __future__ import annotations

from playwright.async_api import expect

from e2e.dashboard_readings_ui import SOL, USDC, fresh_key, http_trade, sign_in_with_key
from e2e.dashboard_ui import DESKTOP, Dashboard

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


async def test_at_1280_px_the_positions_show_every_column(ui: Dashboard):
    assert ui.page.viewport_size == DESKTOP
    page = ui.page
    key = fresh_key(ui.gateway)
    # holdings with wide amounts (BONK), a realised loss (SOL sold) and four rows
    await http_trade(ui.gateway, key, "0.5")
    await http_trade(ui.gateway, key, "250", sell=USDC, buy=BONK)
    await http_trade(ui.gateway, key, "0.25", sell=SOL, buy=JUP)
    await sign_in_with_key(ui, key)
    table = page.get_by_test_id("positions-table")
    await expect(table.locator("tbody tr")).to_have_count(4)

    wrap = await page.locator("#positions .table-wrap").bounding_box()
    assert wrap
    overflow = await page.locator("#positions .table-wrap").evaluate("w => w.scrollWidth - w.clientWidth")
    assert overflow <= 0, f"the positions table is {overflow} px wider than its card"
    for cell in await table.locator("thead th, tbody td").all():
        box = await cell.bounding_box()
        assert box and box["x"] + box["width"] <= wrap["x"] + wrap["width"] + 0.5, (await cell.inner_text(), box, wrap)
    headers = table.locator("thead th")
    await expect(headers.last).to_contain_text("Unrealized")
    await expect(headers.last).to_contain_text("USDC")
    await ui.shot("book-01-positions-1280", full_page=False)


async def test_a_history_refresh_keeps_the_keyboard_focus_on_its_row(ui: Dashboard):
    page = ui.page
    await page.clock.install()  # to bring the 30 s refresh forward
    await ui.sign_in("bob")
    request_id = await ui.trade("0.01")
    row = page.locator(f'#history tr[data-request-id="{request_id}"]')
    await row.focus()
    await row.evaluate("r => r.dataset.before = 'refresh'")  # the rows a refresh replaces

    async with page.expect_response(lambda r: r.url.endswith(".TradeExecutionService/GetTradeHistory")):
        await page.clock.fast_forward("00:31")
    await expect(page.locator("#history tr[data-before]")).to_have_count(0)
    await expect(row).to_be_focused()
