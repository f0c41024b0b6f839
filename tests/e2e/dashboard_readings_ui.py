"""Steps for dashboard tests that need a trader of their own (a fresh key, so a history no other
test adds to), and trades made over HTTP/JSON."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
from playwright.async_api import expect

from e2e.dashboard_ui import Dashboard
from support.gateway_process import GatewayProcess

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def fresh_key(gateway: GatewayProcess, scopes: str = "read,trade:paper", expires_in: str | None = None) -> str:
    """A new API key of a new owner, made with `tradewire keys create` on the gateway's key store."""
    done = subprocess.run(
        [sys.executable, "-m", "tradewire.gateway.cli", "keys", "create", "--owner", f"owner-{uuid.uuid4().hex[:10]}",
         "--scopes", scopes, "--config", str(gateway.workdir / "tradewire.toml"),
         *(["--expires-in", expires_in] if expires_in else [])],
        capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


async def http_trade(gateway: GatewayProcess, key: str, amount: str, sell: str = SOL, buy: str = USDC) -> dict:
    """A paper trade made over HTTP/JSON with ``key``; the trade as the gateway answers it (filled)."""
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as http:
        response = await http.post("/v1/trades", json={
            "requestId": f"t-{uuid.uuid4().hex[:12]}", "mode": "TRADING_MODE_PAPER", "inputMint": sell,
            "outputMint": buy, "amount": amount, "slippageBps": 100})
    assert response.status_code == 200, response.text
    trade = response.json()
    assert trade["status"] == "TRADE_STATUS_FILLED", trade
    return trade


async def sign_in_with_key(ui: Dashboard, key: str, transport: str | None = None) -> None:
    """Open the dashboard and sign in with ``key`` (optionally over the named transport)."""
    page = ui.page
    await ui.open()
    await page.get_by_label("API key or JWT").fill(key)
    if transport:
        await page.locator("#signin-transport").select_option(label=transport)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("principal")).to_have_text(key[:11])
    await expect(page.get_by_test_id("positions-table").or_(page.get_by_text("No positions yet."))).to_be_visible()

