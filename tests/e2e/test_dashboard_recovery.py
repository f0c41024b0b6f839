"""The dashboard when things go wrong around a trade: the gateway restarts mid-trade or is
briefly unreachable, the user switches the view, a trade is refused or rejected.

Most tests use their own gateway (``slow_gateway``): paper trades that take wall-clock time,
a short shutdown drain (so a SIGTERM leaves a running trade unfinished, to resume after the
restart), and the production wait of a status stream for its trade (await_trade_s = 10).
Tests stop and start it; ``gateway_down`` always starts it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from e2e.dashboard_ui import Dashboard, dashboard_gateway, open_dashboard, stored_trade, submit
from support.gateway_process import GatewayProcess


SLOW_TRADES = {
    "TRADEWIRE_PAPER__REALTIME": "true",
    # half building, half landing: stopped right after QUOTED, a trade is still building (3 s)
    # when the drain (deadline - final = 2 s) ends, so it resumes after the restart
    "TRADEWIRE_PAPER__LATENCY_MS": "6000",
    "TRADEWIRE_SHUTDOWN__DEADLINE_S": "3",
    "TRADEWIRE_SHUTDOWN__FINAL_S": "1",
}


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    with dashboard_gateway(tmp_path_factory.mktemp("e2e-recovery"), dashboard_dist, SLOW_TRADES,
                           streams_config="[streams]\nawait_trade_s = 10\n") as process:
        yield process


@pytest.fixture
async def slow_ui(browser: Browser, slow_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, slow_gateway) as dashboard:
        yield dashboard


@asynccontextmanager
async def gateway_down(ui: Dashboard) -> AsyncIterator[None]:
    """Stop the gateway (SIGTERM, graceful: exit 0) for the block, then start it again on the
    same ports and data directory."""
    ui.expect_network_errors()
    code = await asyncio.to_thread(ui.gateway.stop)
    assert code == 0, ui.gateway.log_text()[-3000:]
    try:
        yield
    finally:
        await asyncio.to_thread(ui.gateway.start)


# -- 1. a gateway restart in the middle of a trade --------------------------------------------

@pytest.mark.parametrize("transport", ["gRPC-Web", "Connect"])
async def test_restart_mid_trade_keeps_following_to_the_fill(slow_ui: Dashboard, transport: str):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("alice", transport=transport)
    request_id = await submit(ui, "0.1")
    timeline = page.get_by_test_id("exec-timeline")
    await expect(timeline.locator('li[data-stage="QUOTED"]')).to_be_visible()
    assert "FILLED" not in await timeline.inner_text()

    async with gateway_down(ui):
        # ExecuteTrade failed (SHUTTING_DOWN) and the stream got its SHUTDOWN message: still the
        # same trade, still its timeline, no verdict yet
        await expect(page.get_by_test_id("exec-status")).not_to_have_text("Failed")
        await expect(timeline.locator("li.warn")).to_contain_text("Reconnecting")

    # resumed after the restart: the page followed it to the end, from where it was
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled", timeout=30_000)
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
    await expect(page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuenow", "100")
    stages = timeline.locator("li[data-stage]")
    await expect(stages.first).to_have_attribute("data-stage", "RECEIVED")
    await expect(stages.last).to_have_attribute("data-stage", "FILLED")
    await expect(page.get_by_test_id("exec-error")).to_have_count(0)
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    await expect(page.locator("#request-id")).not_to_have_value(request_id)  # it is a trade: next one gets a new id
    await expect(page.locator(f'#history tr[data-request-id="{request_id}"]')).to_contain_text("Filled")
    assert (await stored_trade(ui.gateway, "alice", request_id))["status"] == "TRADE_STATUS_FILLED"
    await ui.shot(f"recovery-01-filled-after-restart-{transport}")


# -- 2. switching the view while one's own trade runs -------------------------------------------

async def test_opening_a_history_row_does_not_cancel_the_running_trade(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("bob")
    older = await submit(ui, "0.01")
    await ui.wait_filled(older)

    running = await submit(ui, "0.02")
    await expect(page.get_by_test_id("exec-timeline").locator('li[data-stage="QUOTED"]')).to_be_visible()
    await page.locator(f'#history tr[data-request-id="{older}"]').click()
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(older)
    await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")

    # the trade ran to its end on the server, and the form got its outcome
    assert (await stored_trade(ui.gateway, "bob", running))["status"] == "TRADE_STATUS_FILLED"
    await expect(page.locator(f'#history tr[data-request-id="{running}"]')).to_contain_text("Filled")
    await expect(page.locator("#request-id")).not_to_have_value(running)
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    await expect(page.locator("#submit-trade")).to_be_enabled()
    # and the view still shows what the user picked
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(older)


# -- 3. which failures use up the request id ---------------------------------------------------

async def test_a_rejected_trade_gets_a_new_request_id_so_the_corrected_one_fills(ui: Dashboard):
    page = ui.page
    await ui.sign_in("alice")
    rejected = await submit(ui, "5000")  # more SOL than the paper wallet holds
    await expect(page.get_by_test_id("exec-status")).to_have_text("Rejected")
    await expect(page.get_by_test_id("form-error")).to_contain_text("INSUFFICIENT_FUNDS")
    await expect(page.locator("#request-id")).not_to_have_value(rejected)

    corrected = await submit(ui, "0.02")
    assert corrected != rejected
    await ui.wait_filled(corrected)
    await expect(page.get_by_test_id("form-error")).to_be_hidden()
    assert (await stored_trade(ui.gateway, "alice", corrected))["status"] == "TRADE_STATUS_FILLED"
    assert (await stored_trade(ui.gateway, "alice", rejected))["status"] == "TRADE_STATUS_REJECTED"


async def test_a_request_refused_before_it_is_a_trade_keeps_its_id(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await ui.pick_unsupported_pair()
    refused = await submit(ui, "1")
    await expect(page.get_by_test_id("form-error")).to_contain_text("UNSUPPORTED_PAIR")
    await expect(page.locator("#request-id")).to_have_value(refused)

    await page.get_by_label("Sell", exact=True).select_option(label="SOL")
    assert await submit(ui, "0.03") == refused  # the corrected request, same idempotency key
    await ui.wait_filled(refused)
    assert (await stored_trade(ui.gateway, "bob", refused))["status"] == "TRADE_STATUS_FILLED"


# -- 4. a refusal is shown as soon as ExecuteTrade answers ------------------------------------

async def test_refusal_is_shown_at_once_not_after_the_stream_wait(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("bob")
    await ui.pick_unsupported_pair()
    await submit(ui, "1")
    # the gateway holds the status stream up to 10 s for a trade that never comes; the
    # refusal must not wait for it
    await expect(page.get_by_test_id("exec-status")).to_have_text("Refused", timeout=4_000)
    await expect(page.get_by_test_id("exec-error")).to_contain_text("UNSUPPORTED_PAIR", timeout=1_000)
    await expect(page.get_by_test_id("form-error")).to_contain_text("UNSUPPORTED_PAIR", timeout=1_000)
    await expect(page.locator("#submit-trade")).to_be_enabled(timeout=1_000)


# -- 5. the rate-limit meter shows the caller's unary bucket -----------------------------------

async def test_rate_limit_meter_ignores_status_stream_headers(ui: Dashboard):
    page = ui.page
    await ui.sign_in("trader")
    request_id = await ui.trade("0.01")
    meter = page.get_by_test_id("rate-limit")
    await expect(meter).to_contain_text(" of 400 left")  # unary bucket (streams: 10,000)
    await page.get_by_role("button", name="New request id").click()

    await page.locator(f'#history tr[data-request-id="{request_id}"]').click()  # a replay: one stream, no unary call
    await expect(page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuenow", "100")
    assert len(ui.calls("StreamExecutionStatus")) >= 2
    # read at once: the next health check (every 10 s) would put the unary bucket back anyway
    assert (await meter.inner_text()).endswith(" of 400 left")


# -- 6. a reload while the gateway is unavailable ----------------------------------------------

async def test_reload_while_gateway_restarts_keeps_the_session_and_retries(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    gateway = ui.gateway
    await ui.open()
    await page.get_by_label("Remember in this tab").check()
    await ui.sign_in("alice", navigate=False)
    # a running trade keeps the gateway draining for a while after SIGTERM: it still serves the
    # page and HealthCheck, and refuses the other calls with UNAVAILABLE (SHUTTING_DOWN)
    await submit(ui, "0.01")
    await expect(page.get_by_test_id("exec-timeline").locator('li[data-stage="QUOTED"]')).to_be_visible()
    ui.expect_network_errors()
    gateway.terminate()
    try:
        await wait_draining(gateway)
        await page.reload()
        notice = page.get_by_test_id("gateway-unreachable")
        await expect(notice).to_contain_text("Cannot reach the gateway")
        assert await asyncio.to_thread(gateway.wait_exit, 30) == 0
        await expect(notice).to_contain_text("Cannot reach the gateway")  # gone now: still retrying
        await expect(page.get_by_text("Your session has ended")).to_have_count(0)
        assert await page.evaluate("sessionStorage.getItem('tradewire.credentials')") == gateway.key("alice")
    finally:
        await asyncio.to_thread(gateway.start)

    # no click: it retries by itself and the remembered session is back
    await expect(page.get_by_test_id("principal")).to_have_text(gateway.key("alice")[:11], timeout=30_000)
    await expect(page.locator("#trade-form")).to_be_visible()


async def wait_draining(gateway: GatewayProcess, timeout_s: float = 5) -> None:
    """Until /v1/health says NOT_SERVING (the gateway drains after SIGTERM)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1) as http:
        while (await http.get(f"{gateway.http_url}/v1/health")).json()["status"] != "SERVING_STATUS_NOT_SERVING":
            assert time.monotonic() < deadline, "the gateway did not start draining"
            await asyncio.sleep(0.05)  # polling interval, bounded by the deadline


async def test_bad_remembered_key_still_signs_out(slow_ui: Dashboard):
    page = slow_ui.page
    await slow_ui.open()
    await page.evaluate("sessionStorage.setItem('tradewire.credentials', 'tw_nobody00_' + 'x'.repeat(40))")
    await page.reload()
    await expect(page.get_by_text("Your session has ended; sign in again.")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tradewire.credentials')") is None



# -- minor: history and positions come back by themselves ---------------------------------------

async def test_history_reloads_when_the_gateway_is_back(slow_ui: Dashboard):
    ui, page = slow_ui, slow_ui.page
    await ui.sign_in("bob")

    async with gateway_down(ui):
        await page.get_by_role("button", name="Refresh history").click()
        await page.get_by_role("button", name="Refresh positions").click()
        await expect(page.locator("#history")).to_contain_text("History unavailable")
        await expect(page.locator("#positions")).to_contain_text("Positions unavailable")

    await expect(page.get_by_test_id("history-table").or_(page.get_by_test_id("history-empty"))).to_be_visible(
        timeout=20_000)
    await expect(page.get_by_test_id("positions-table").or_(page.get_by_text("No positions yet."))).to_be_visible()
    await expect(page.get_by_test_id("health-pill")).to_have_text("Serving")
