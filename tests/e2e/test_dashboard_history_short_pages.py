"""The history card when the gateway answers a page short, even empty, with a token to go on (a
shared store bounds how much history one call searches): the card follows the token to fill its
page, for a few calls at most, and an empty page with a token says older trades are still to be
searched — never "No trades match these filters" — and searches on when asked.

The gateway is the shared one (SQLite: full pages); the card's calls are answered in flight
(``page.route``) as a store that stops early would answer them."""

from __future__ import annotations

import json

from playwright.async_api import Route, expect

from e2e.dashboard_readings_ui import fresh_key, http_trade, sign_in_with_key
from e2e.dashboard_ui import Dashboard

HISTORY = "**/tradewire.v1.TradeExecutionService/GetTradeHistory"
START = "from-the-top"  # a token this test hands out for the history's first position


def the_cards(body: dict) -> bool:
    """The history card's call (the fill-price chart asks for 200 filled trades of a mint)."""
    return body.get("pageSize", 0) <= 10


async def test_an_empty_page_with_a_token_is_followed_until_the_page_is_full(ui: Dashboard):
    page = ui.page
    key = fresh_key(ui.gateway)
    made = [(await http_trade(ui.gateway, key, amount))["requestId"] for amount in ("0.001", "0.002", "0.003")]
    asked: list[tuple[str, int]] = []

    async def stop_early(route: Route) -> None:
        body = route.request.post_data_json
        if not the_cards(body):
            await route.continue_()
            return
        token = body.get("pageToken", "")
        asked.append((token, body["pageSize"]))
        if token == "":  # nothing found in what the store searched
            await route.fulfill(json={"trades": [], "nextPageToken": START})
        elif token == START:  # one trade found, then the store stopped again
            response = await route.fetch(post_data=json.dumps({**body, "pageToken": "", "pageSize": 1}))
            await route.fulfill(response=response)
        else:
            await route.continue_()

    await page.route(HISTORY, stop_early)
    await sign_in_with_key(ui, key, transport="Connect")  # JSON calls, so the test can answer them

    history = page.locator("#history")
    await expect(history.locator("tbody tr")).to_have_count(3)
    await expect(history.get_by_test_id("history-request-id")).to_have_text(made[::-1])
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 1")
    await expect(page.get_by_role("button", name="Older →")).to_be_disabled()  # the last token was the end
    assert [size for _, size in asked[:3]] == [10, 10, 9]  # what the page still needed
    assert [token for token, _ in asked[:2]] == ["", START]


async def test_a_page_that_found_nothing_in_a_few_calls_offers_to_search_older_trades(ui: Dashboard):
    page = ui.page
    key = fresh_key(ui.gateway)
    made = [(await http_trade(ui.gateway, key, amount))["requestId"] for amount in ("0.001", "0.002")]
    asked: list[str] = []

    async def nothing_for_a_while(route: Route) -> None:
        """Seven empty answers, e1 … e7, before the trades."""
        body = route.request.post_data_json
        if not the_cards(body):
            await route.continue_()
            return
        token = body.get("pageToken", "")
        asked.append(token)
        searched = int(token[1:]) if token.startswith("e") else 0
        if searched < 7:
            await route.fulfill(json={"trades": [], "nextPageToken": f"e{searched + 1}"})
        else:
            response = await route.fetch(post_data=json.dumps({**body, "pageToken": ""}))
            await route.fulfill(response=response)

    await page.route(HISTORY, nothing_for_a_while)
    await sign_in_with_key(ui, key, transport="Connect")

    history = page.locator("#history")
    empty = history.get_by_test_id("history-empty")
    await expect(empty).to_contain_text("not searched yet")
    await expect(empty).not_to_contain_text("No trades match")
    assert asked == ["", "e1", "e2", "e3", "e4"]  # a few calls, then the card says what it has
    await expect(page.get_by_role("button", name="Older →")).to_be_enabled()
    await ui.shot("history-searching")

    await history.get_by_role("button", name="Search older trades").click()
    await expect(history.locator("tbody tr")).to_have_count(2)
    await expect(history.get_by_test_id("history-request-id")).to_have_text(made[::-1])
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 2")
    assert asked[5:] == ["e5", "e6", "e7"]  # on from where page 1 stopped

    await page.get_by_role("button", name="← Newer").click()
    await expect(page.get_by_test_id("history-page")).to_have_text("Page 1")
    await expect(empty).to_contain_text("not searched yet")


async def test_the_fill_price_chart_follows_a_short_page_s_token_to_the_fills(ui: Dashboard):
    page = ui.page
    key = fresh_key(ui.gateway)
    for amount in ("0.001", "0.002"):
        await http_trade(ui.gateway, key, amount)  # SOL → USDC: two SOL/USDC fills
    asked: list[str] = []

    async def nothing_at_first(route: Route) -> None:
        body = route.request.post_data_json
        if the_cards(body):
            await route.continue_()
            return
        asked.append(body.get("pageToken", ""))
        if body.get("pageToken", "") == "":  # the store searched its budget and found no fill yet
            await route.fulfill(json={"trades": [], "nextPageToken": START})
        else:
            response = await route.fetch(post_data=json.dumps({**body, "pageToken": ""}))
            await route.fulfill(response=response)

    await page.route(HISTORY, nothing_at_first)
    await sign_in_with_key(ui, key, transport="Connect")

    chart = page.get_by_test_id("price-chart")
    await expect(chart.locator("circle")).to_have_count(2)  # (it said "No SOL/USDC fills yet")
    assert asked[:2] == ["", START]
