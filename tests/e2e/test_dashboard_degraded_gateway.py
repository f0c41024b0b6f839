"""The dashboard with a gateway that is only partly there: its status stream cannot be reached,
or stalls, while its unary calls answer; a health check that never answers; a script of the
page that failed to load once.

The gateway is the shared one; the browser's requests are intercepted (``page.route``) to
break the stream or hold a call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Route, expect

from e2e.dashboard_ui import Dashboard, submit

STREAM = "**/tradewire.v1.TradeExecutionService/StreamExecutionStatus"
HEALTH = "**/tradewire.v1.TradeExecutionService/HealthCheck"


async def break_status_stream(ui: Dashboard) -> None:
    """Every StreamExecutionStatus call fails as a cut connection; other calls go through."""
    ui.expect_network_errors()
    await ui.page.route(STREAM, lambda route: route.abort())


@asynccontextmanager
async def calls_hang(ui: Dashboard, url: str) -> AsyncIterator[None]:
    """Calls to ``url`` get no answer for the block (a gateway or network path that hangs)."""
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        try:
            await route.abort()
        except Exception:  # the page (and its request) may be gone by then
            pass

    ui.expect_network_errors()
    await ui.page.route(url, hold)
    try:
        yield
    finally:
        release.set()
        await ui.page.unroute(url)


async def test_a_fill_is_shown_when_the_status_stream_cannot_be_reached(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await break_status_stream(ui)
    request_id = await submit(ui, "0.01")

    # ExecuteTrade answered FILLED: that is shown, not a stream reconnecting for minutes
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
    await expect(page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuenow", "100")
    await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0.01 SOL")
    await expect(page.get_by_test_id("exec-timeline")).to_contain_text("the gateway has answered how the trade ended")
    await expect(page.locator("#submit-trade")).to_be_enabled()
    await expect(page.locator("#request-id")).not_to_have_value(request_id)
    await expect(page.locator(f'#history tr[data-request-id="{request_id}"]')).to_be_visible()


async def test_a_rejection_is_labelled_rejected_when_the_status_stream_cannot_be_reached(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await break_status_stream(ui)
    request_id = await submit(ui, "1000.5")  # more SOL than the paper wallet holds

    # as the history labels it, not "Failed"
    await expect(page.get_by_test_id("exec-status")).to_have_text("Rejected")
    await expect(page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuetext", re.compile("^Rejected at"))
    await expect(page.get_by_test_id("exec-error")).to_contain_text("INSUFFICIENT_FUNDS")
    await expect(ui.field_error("amount")).to_have_attribute("data-source", "gateway")
    await expect(page.locator("#request-id")).not_to_have_value(request_id)
    row = page.locator(f'#history tr[data-request-id="{request_id}"]')
    await expect(row).to_contain_text("Rejected")


async def test_a_fill_is_shown_when_the_status_stream_stalls(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    async with calls_hang(ui, STREAM):  # connected, but nothing ever comes (a buffering proxy)
        request_id = await submit(ui, "0.01")
        await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0.01 SOL")
        await expect(page.locator("#submit-trade")).to_be_enabled()
        await expect(page.locator("#request-id")).not_to_have_value(request_id)


async def test_a_past_trade_opens_when_the_status_stream_cannot_be_reached(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    request_id = await ui.trade("0.01")
    await break_status_stream(ui)

    await page.locator(f'#history tr[data-request-id="{request_id}"]').click()
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
    # the stored trade says how it ended
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
    await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0.01 SOL")
    assert len(ui.calls("GetTrade")) >= 1


async def test_a_health_check_that_hangs_shows_the_gateway_unreachable(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    pill = page.get_by_test_id("health-pill")
    await expect(pill).to_have_text("Serving")

    async with calls_hang(ui, HEALTH):
        await page.get_by_role("button", name="Refresh health").click()
        # not "Serving" for as long as the call hangs
        await expect(pill).to_have_text("Unreachable", timeout=20_000)
        await expect(page.get_by_test_id("health-unreachable")).to_be_visible()

        # a sign-in is not left "Signing in…" either
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_label("API key or JWT").fill(ui.gateway.key("bob"))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#credential-error")).to_contain_text("Could not reach the gateway", timeout=20_000)
        await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()

    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("principal")).to_have_text(ui.gateway.key("bob")[:11])
    await expect(pill).to_have_text(re.compile("Serving|Degraded"))


async def test_a_validator_chunk_that_failed_to_load_is_fetched_again_at_submit(ui: Dashboard):
    page = ui.page
    attempts: list[str] = []

    async def fail_first(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) == 1:
            await route.abort()  # as if the gateway was restarting when the form loaded it
        else:
            await route.continue_()

    ui.expect_network_errors()
    # the form's rules (protovalidate) are the page's only separately loaded script
    await page.route(re.compile(r"/assets/esm-[^/]*\.js$"), fail_first)
    await ui.sign_in("bob")
    request_id = await submit(ui, "0.01")
    await ui.wait_filled(request_id)
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    assert len(attempts) == 2, attempts
