"""Defects from the dashboard's QA pass, each driven through a real browser and gateway:
the remembered gateway, a session whose key is revoked, the execution card under the sticky
header, keyboard focus, a rate-limited sign-in, the history rows' focus ring, PnL that rounds
to zero, a validation error shown once, a consistent picture while the gateway is down, and
the signed-in account and a refused trade's amount.

Two more gateways of their own: ``other_gateway`` (a second gateway to sign in to, also the
one these tests stop) and ``strict_gateway`` (two failed sign-ins per address, then refused).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Route, expect

from e2e.dashboard_ui import PHONE, Dashboard, open_dashboard
from support.gateway_process import GatewayProcess

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture(scope="module")
def other_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("e2e-qa-other"),
                             env={"TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist)}).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("e2e-qa-strict"),
                             env={"TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist),
                                  "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "2"}).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@asynccontextmanager
async def gateway_down(ui: Dashboard) -> AsyncIterator[None]:
    """The dashboard's gateway stopped for the block, then started again (same ports and data)."""
    ui.expect_network_errors()
    assert await asyncio.to_thread(ui.gateway.stop) == 0, ui.gateway.log_text()[-3000:]
    try:
        yield
    finally:
        await asyncio.to_thread(ui.gateway.start)


def keys_cli(gateway: GatewayProcess, *args: str) -> str:
    """`tradewire keys ...` on the gateway's own key database; its stdout."""
    done = subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "keys", *args,
                           "--config", str(gateway.workdir / "tradewire.toml")],
                          capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def wait_scroll_settled(ui: Dashboard) -> None:
    """Until a (smooth) scroll has ended: scrollY unchanged over several frames."""
    await ui.page.wait_for_function("""() => new Promise((resolve) => {
        let last = window.scrollY, still = 0;
        const tick = () => {
            still = window.scrollY === last ? still + 1 : 0;
            last = window.scrollY;
            if (still >= 10) resolve(true); else requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
    })""", timeout=10_000)


# -- 1. the gateway chosen at sign-in -------------------------------------------------------------

async def test_a_remembered_session_keeps_its_gateway_across_reloads(ui: Dashboard, other_gateway: GatewayProcess):
    page, here, there = ui.page, ui.gateway.http_url, other_gateway.http_url
    await ui.open()
    await page.get_by_label("Gateway").fill(there + "/")
    await page.get_by_label("Remember in this tab").check()
    await ui.sign_in("alice", navigate=False)
    assert ui.rpc_calls and all(r.url.startswith(there + "/") for r in ui.rpc_calls), [r.url for r in ui.rpc_calls]

    ui.rpc_calls.clear()
    await page.reload()
    await expect(page.get_by_test_id("principal")).to_have_text(ui.gateway.key("alice")[:11])
    await expect(page.get_by_test_id("positions-table").or_(page.get_by_text("No positions yet."))).to_be_visible()
    assert ui.calls("HealthCheck"), "the reload checks the session"
    assert all(r.url.startswith(there + "/") for r in ui.rpc_calls), [r.url for r in ui.rpc_calls]

    # signing out forgets the gateway with the credentials
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("Signed out.")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tradewire.gateway')") is None
    await page.reload()
    await expect(page.get_by_label("Gateway")).to_have_value(here)


async def test_the_gateway_field_takes_only_an_absolute_http_url(ui: Dashboard):
    page = ui.page
    await ui.open()
    await page.get_by_label("API key or JWT").fill(ui.gateway.key("bob"))
    gateway = page.get_by_label("Gateway")
    error = page.locator("#base-url-error")
    for bad in ["foo", "127.0.0.1:8080", "ftp://127.0.0.1/"]:
        await gateway.fill(bad)
        await page.get_by_role("button", name="Sign in").click()
        await expect(error).to_contain_text("full address, starting with http:// or https://")
        await expect(gateway).to_have_attribute("aria-invalid", "true")
        await expect(gateway).to_be_focused()
        await expect(page.locator("#credential-error")).to_be_empty()
    assert ui.rpc_calls == [], "nothing is sent to an address that is not one"

    await gateway.fill(ui.gateway.http_url)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("principal")).to_have_text(ui.gateway.key("bob")[:11])


# -- 2. a key revoked while signed in -------------------------------------------------------------

async def test_a_revoked_key_ends_the_session(ui: Dashboard):
    page = ui.page
    key = keys_cli(ui.gateway, "create", "--owner", f"qa-{uuid.uuid4().hex[:8]}", "--scopes", "read,trade:paper")
    await ui.open()
    await page.get_by_label("Remember in this tab").check()
    await page.get_by_label("API key or JWT").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#trade-form")).to_be_visible()

    keys_cli(ui.gateway, "revoke", key[:11])
    await page.locator("#amount").fill("0.01")
    await page.locator("#submit-trade").click()

    notice = page.locator(".notice")
    await expect(notice).to_contain_text("Your session has ended")
    await expect(notice).to_contain_text("API_KEY_REVOKED")
    await expect(page.get_by_label("API key or JWT")).to_be_visible()
    await expect(page.locator("#trade-form")).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('tradewire.credentials')") is None
    await ui.shot("qa-02-revoked-key-signed-out")


# -- 3. the execution card scrolled to, below the sticky header -----------------------------------

@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, PHONE], ids=["desktop", "phone"])
async def test_opening_a_history_row_shows_the_execution_card_below_the_header(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    request_id = await ui.trade("0.01")
    await page.get_by_role("button", name="New request id").click()
    await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    await wait_scroll_settled(ui)
    await page.locator(f'#history tr[data-request-id="{request_id}"]').click()
    await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
    await wait_scroll_settled(ui)

    header = await page.locator("header.topbar").bounding_box()
    card = await page.locator("#execution").bounding_box()
    assert header and card
    viewport = page.viewport_size
    assert header["y"] + header["height"] <= card["y"] < viewport["height"], (header, card)
    await expect(page.get_by_test_id("exec-status")).to_be_in_viewport()
    await expect(page.get_by_test_id("exec-request-id")).to_be_in_viewport()


# -- 4. keyboard focus after a submit -------------------------------------------------------------

async def test_focus_returns_to_the_submit_button_after_a_keyboard_submit(ui: Dashboard):
    page = ui.page
    await ui.sign_in("alice")
    await page.locator("#amount").fill("0.01")
    request_id = await page.locator("#request-id").input_value()
    submit = page.locator("#submit-trade")
    await submit.focus()
    await page.keyboard.press("Enter")
    await ui.wait_filled(request_id)
    await expect(submit).to_be_enabled()
    await expect(submit).to_be_focused()


# -- 5. a sign-in refused because the address failed too often ------------------------------------

async def test_a_rate_limited_sign_in_says_so_and_when_to_retry(browser: Browser, strict_gateway: GatewayProcess):
    async with open_dashboard(browser, strict_gateway) as ui:
        page = ui.page
        await ui.open()
        error = page.locator("#credential-error")
        await page.get_by_label("API key or JWT").fill("tw_nobody00_" + "x" * 40)
        for _ in range(2):  # the address's budget of failed sign-ins
            await page.get_by_role("button", name="Sign in").click()
            await expect(error).to_have_text("These credentials were not accepted by the gateway. (AUTH_INVALID)")
            await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
            await page.evaluate("document.getElementById('credential-error').textContent = ''")
        await page.get_by_role("button", name="Sign in").click()
        await expect(error).to_have_text(re.compile(r"^Too many failed sign-ins from this address; retry in \d+ s\.$"))
        await ui.shot("qa-05-rate-limited-sign-in")


# -- 6. a visible focus indicator on history rows -------------------------------------------------

async def test_a_keyboard_focused_history_row_has_a_visible_outline(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await ui.trade("0.01")
    await page.locator("#history .status-filters input").last.focus()
    await page.keyboard.press("Tab")
    row = page.locator("#history tbody tr").first
    await expect(row).to_be_focused()
    style = await row.evaluate("""(r) => {
        const s = getComputedStyle(r);
        return { visible: r.matches(':focus-visible'), outline: s.outlineStyle, width: parseFloat(s.outlineWidth) };
    }""")
    assert style["visible"], style
    assert style["outline"] not in ("none", "hidden") and style["width"] >= 2, style
    await ui.shot("qa-06-history-row-focus", full_page=False)


# -- 7. PnL that rounds to zero ------------------------------------------------------------------

async def test_pnl_that_rounds_to_zero_is_shown_neutral(ui: Dashboard):
    page = ui.page

    async def tiny_pnl(route: Route) -> None:
        """The gateway's answer with PnL the paper market does not produce on demand."""
        response = await route.fetch()
        body = await response.json()
        body["positions"] = [{
            "mode": "TRADING_MODE_PAPER", "mint": SOL, "symbol": "SOL", "amount": "1", "averageCost": "100",
            "costBasis": "100", "marketPrice": "100", "marketValue": "100",
            "realizedPnl": "-0.000004", "unrealizedPnl": "0.004",
        }]
        body.update(totalMarketValue="100", totalPnl="-0.004999", unvaluedPositions=0)
        await route.fulfill(response=response, json=body)

    await page.route("**/tradewire.v1.TradeExecutionService/GetPositions", tiny_pnl)
    await ui.sign_in("alice", transport="Connect")  # JSON answers, so the test can edit one
    row = page.locator('#positions tr[data-symbol="SOL"]')
    realized, unrealized = row.locator("td").nth(4), row.locator("td").nth(5)
    await expect(realized).to_have_text("0.00")
    await expect(unrealized).to_have_text("0.00")
    await expect(page.get_by_test_id("total-pnl")).to_have_text(re.compile(r"^0\.00 "))
    for cell in (realized, unrealized, page.get_by_test_id("total-pnl")):
        await expect(cell).not_to_have_class(re.compile(r"\b(neg|pos)\b"))


# -- 8. one validation error, shown once ----------------------------------------------------------

async def test_a_gateway_validation_error_is_shown_once(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    await page.locator("#amount").fill("1000000")
    await page.locator("#submit-trade").click()
    field = ui.field_error("amount")
    await expect(field).to_have_attribute("data-source", "gateway")
    await expect(page.get_by_test_id("exec-status")).to_have_text("Refused")
    await expect(page.get_by_test_id("form-error")).to_be_visible()
    description = (await field.inner_text()).strip()
    assert description
    body = await page.locator("body").inner_text()
    assert body.count(description) == 1, body
    await expect(page.get_by_test_id("exec-error").locator("li")).to_have_count(0)
    await ui.shot("qa-08-validation-error-once")


# -- 9. a consistent picture while the gateway is down --------------------------------------------

async def test_while_the_gateway_is_down_every_panel_says_so(browser: Browser, other_gateway: GatewayProcess):
    # two pages of history (10 a page), made over HTTP/JSON
    headers = {"authorization": f"Bearer {other_gateway.key('trader')}"}
    async with httpx.AsyncClient(base_url=other_gateway.http_url, headers=headers, timeout=10) as http:
        for _ in range(11):
            response = await http.post("/v1/trades", json={
                "requestId": f"qa-{uuid.uuid4().hex[:12]}", "mode": "TRADING_MODE_PAPER", "inputMint": SOL,
                "outputMint": USDC, "amount": "0.001", "slippageBps": 100})
            assert response.status_code == 200, response.text

    async with open_dashboard(browser, other_gateway) as ui:
        page = ui.page
        await ui.sign_in("trader")
        older = page.get_by_role("button", name="Older →")
        await expect(older).to_be_enabled()
        state = page.get_by_test_id("gateway-state")
        await expect(state).to_contain_text("Serving")

        async with gateway_down(ui):
            await page.get_by_role("button", name="Refresh history").click()
            await expect(page.locator("#history")).to_contain_text("History unavailable")
            await expect(older).to_be_disabled()
            await expect(page.get_by_role("button", name="← Newer")).to_be_disabled()

            await page.get_by_role("button", name="Refresh health").click()
            await expect(page.get_by_test_id("health-pill")).to_have_text("Unreachable")
            await expect(state).to_have_text("Unreachable")
            await expect(page.locator("#health")).not_to_contain_text("Serving")

            await page.locator("#amount").fill("0.01")
            await page.locator("#submit-trade").click()
            await expect(page.get_by_test_id("exec-error")).to_contain_text("Could not reach the gateway")
            await expect(page.get_by_test_id("form-error")).to_contain_text("Could not reach the gateway")
            await expect(page.get_by_test_id("form-error")).not_to_contain_text("UNKNOWN")
            await expect(page.locator("#submit-trade")).to_be_enabled()
            await ui.shot("qa-09-gateway-down")

        # back: the service card and the history recover by themselves
        await expect(state).to_contain_text("Serving", timeout=20_000)
        await expect(older).to_be_enabled(timeout=20_000)


# -- 10. who is signed in, and what a refused trade asked for --------------------------------------

async def test_the_account_is_named_and_a_refused_trade_shows_what_it_asked(ui: Dashboard):
    page = ui.page
    request_id = f"too-much-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=ui.gateway.http_url, timeout=10,
                                 headers={"authorization": f"Bearer {ui.gateway.key('bob')}"}) as http:
        refused = await http.post("/v1/trades", json={
            "requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
            "amount": "1000.5", "slippageBps": 50})
    assert refused.status_code == 400 and "INSUFFICIENT_FUNDS" in refused.text, refused.text

    await ui.sign_in("bob")
    await expect(page.get_by_test_id("owner")).to_have_text("bob")
    await expect(page.locator("header .who")).to_have_text("bob")
    row = page.locator(f'#history tr[data-request-id="{request_id}"]')
    await expect(row.get_by_test_id("asked-amount")).to_have_text(re.compile(r"^1,?000\.5 SOL asked$"))
    await expect(row).to_contain_text("Rejected")
