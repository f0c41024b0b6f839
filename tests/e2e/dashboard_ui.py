"""What the e2e tests share: browser settings and a small page object for the dashboard."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
from playwright.async_api import Browser, ConsoleMessage, Page, Request, expect

from support.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
MSOL = "mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So"  # a real mint the gateway does not trade
PHONE = {"width": 390, "height": 844}
ENDED = {"TRADE_STATUS_FILLED", "TRADE_STATUS_REJECTED", "TRADE_STATUS_FAILED", "TRADE_STATUS_CANCELLED",
         "TRADE_STATUS_EXPIRED"}


def shown_decimal(text: str) -> Decimal:
    """A number as the dashboard shows it (en-US: "1,234.5 SOL") as an exact Decimal."""
    return Decimal(text.split()[0].replace(",", "").replace("\u2212", "-"))


_NETWORK_ERROR = re.compile(r"^Failed to load resource: (net::ERR_|the server responded with a status of 50[23])")


class Dashboard:
    """One browser context on the dashboard, with the steps the tests share."""

    def __init__(self, page: Page, gateway: GatewayProcess) -> None:
        self.page = page
        self.gateway = gateway
        self.problems: list[str] = []
        self.rpc_calls: list[Request] = []
        self.network_errors_expected = False
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.problems.append(f"pageerror: {err}"))
        page.on("request", self._on_request)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        if self.network_errors_expected and _NETWORK_ERROR.search(msg.text):
            return  # the browser's own log of a call to a gateway the test stopped
        self.problems.append(f"console.error: {msg.text} ({msg.location})")

    def expect_network_errors(self) -> None:
        """The test stops the gateway: calls that fail meanwhile are logged by the browser
        ("Failed to load resource"), and are not page errors."""
        self.network_errors_expected = True

    def _on_request(self, request: Request) -> None:
        if "/tradewire.v1.TradeExecutionService/" in request.url:
            self.rpc_calls.append(request)

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.rpc_calls if r.url.endswith(f".TradeExecutionService/{method}")]

    # -- steps ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self.page.goto(self.gateway.http_url + "/")
        await expect(self.page.get_by_label("API key or JWT")).to_be_visible()

    async def pick_unsupported_pair(self) -> None:
        """Sell a well-formed, real mint the gateway does not trade (mSOL) for USDC."""
        await self.page.get_by_label("Sell", exact=True).select_option(label="Other mint…")
        await self.page.get_by_label("Sell mint address").fill(MSOL)
        await self.page.get_by_label("Buy", exact=True).select_option(label="USDC")

    async def sign_in(self, who: str, transport: str | None = None, navigate: bool = True) -> None:
        if navigate:
            await self.open()
        await self.page.get_by_label("API key or JWT").fill(self.gateway.key(who))
        if transport:
            await self.page.locator("#signin-transport").select_option(label=transport)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_test_id("principal")).to_have_text(self.gateway.key(who)[:11])
        await expect(self.page.get_by_test_id("positions-table").or_(self.page.get_by_text("No positions yet."))).to_be_visible()

    def field_error(self, path: str):
        """The error line shown under the input for the proto field ``path``."""
        return self.page.locator(f'.field-error[data-field="{path}"]')

    async def trade(self, amount: str, sell: str = "SOL", buy: str = "USDC") -> str:
        """Submit a trade and wait for it to fill; returns its request id."""
        page = self.page
        await page.get_by_label("Sell", exact=True).select_option(label=sell)
        await page.get_by_label("Buy", exact=True).select_option(label=buy)
        await page.locator("#amount").fill(amount)
        request_id = await page.locator("#request-id").input_value()
        await page.locator("#submit-trade").click()
        await self.wait_filled(request_id)
        return request_id

    async def wait_filled(self, request_id: str) -> None:
        await expect(self.page.get_by_test_id("exec-request-id")).to_have_text(request_id)
        await expect(self.page.get_by_test_id("exec-progress")).to_have_attribute("aria-valuenow", "100")
        await expect(self.page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(self.page.locator(f'#history tr[data-request-id="{request_id}"]')).to_be_visible()

    async def position(self, symbol: str, mode: str = "Paper") -> Decimal:
        """The amount held, as shown (thousands separators removed), or 0 when no row."""
        row = self.page.locator(f'#positions tr[data-symbol="{symbol}"][data-mode="{mode}"]')
        if await row.count() == 0:
            return Decimal(0)
        return shown_decimal(await row.get_by_test_id("position-amount").inner_text())

    async def settle(self) -> None:
        """Wait until CSS transitions/animations have finished (for faithful screenshots)."""
        await self.page.wait_for_function(
            "() => document.getAnimations().every(a => a.playState !== 'running')", timeout=10_000)

    async def shot(self, name: str, full_page: bool = True) -> Path:
        """Screenshot under test-artifacts/e2e/; a full page is taken from the top, so the
        sticky header sits where a person sees it rather than over the scrolled-to content."""
        if full_page:
            await self.page.evaluate("window.scrollTo(0, 0)")
        await self.settle()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path


@asynccontextmanager
async def open_dashboard(browser: Browser, gateway: GatewayProcess, viewport: dict[str, int] = DESKTOP,
                         locale: str = "en-US", timezone: str = "UTC") -> AsyncIterator[Dashboard]:
    """The dashboard of ``gateway`` in a fresh browser context; the page must log no errors."""
    context = await browser.new_context(viewport=viewport, locale=locale, timezone_id=timezone)
    dashboard = Dashboard(await context.new_page(), gateway)
    try:
        yield dashboard
    finally:
        await context.close()
    assert dashboard.problems == [], "the page logged errors:\n" + "\n".join(dashboard.problems)


def api(gateway: GatewayProcess, who: str) -> httpx.AsyncClient:
    """An HTTP/JSON client of the gateway with ``who``'s key."""
    return httpx.AsyncClient(base_url=gateway.http_url, timeout=10,
                             headers={"authorization": f"Bearer {gateway.key(who)}"})


async def stored_trade(gateway: GatewayProcess, who: str, request_id: str, timeout_s: float = 30) -> dict:
    """The trade as the gateway records it (GET /v1/trades/<id>), once it has ended."""
    deadline = time.monotonic() + timeout_s
    async with api(gateway, who) as http:
        while True:
            response = await http.get(f"/v1/trades/{request_id}")
            if response.status_code == 200 and response.json().get("status") in ENDED:
                return response.json()
            assert time.monotonic() < deadline, f"trade {request_id} did not end: {response.text}"
            await asyncio.sleep(0.1)  # polling interval, bounded by the deadline


async def submit(ui: Dashboard, amount: str) -> str:
    """Submit the form as it stands with this amount, without waiting; returns the request id sent."""
    await ui.page.locator("#amount").fill(amount)
    request_id = await ui.page.locator("#request-id").input_value()
    await ui.page.locator("#submit-trade").click()
    return request_id


@contextmanager
def dashboard_gateway(workdir: Path, dashboard_dist: Path, env: dict[str, str] | None = None,
                      **options) -> Iterator[GatewayProcess]:
    """A gateway serving the built dashboard (``env``: more settings); it must stop cleanly."""
    process = GatewayProcess(workdir, env={"TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist), **(env or {})},
                             **options).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]
