"""A past trade opened from the history when the gateway refuses its status stream (the caller's
stream-open rate limit is used up): the card shows the trade as stored, at the stage it has
reached, not "Loading…".

``stream_limited_gateway``: paper trades that take wall-clock time (6 s, so one is still
running when opened) and a stream-open bucket of one stream, refilled once a minute.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from e2e.dashboard_readings_ui import SOL, USDC, fresh_key, sign_in_with_key
from e2e.dashboard_ui import Dashboard, dashboard_gateway, open_dashboard
from support.gateway_process import GatewayProcess

RUNNING_STAGE = re.compile("^(Received|Validated|Routed|Quoted|Signed|Simulated|Submitted|Confirmed)$")


@pytest.fixture(scope="module")
def stream_limited_gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    with dashboard_gateway(tmp_path_factory.mktemp("e2e-stream-limited"), dashboard_dist, {
            "TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "6000",
            "TRADEWIRE_LIMITS__STREAM_BURST": "1", "TRADEWIRE_LIMITS__STREAM_OPENS_PER_S": "0.016"}) as process:
        yield process


@pytest.fixture
async def stream_limited_ui(browser: Browser, stream_limited_gateway: GatewayProcess) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, stream_limited_gateway) as dashboard:
        yield dashboard


async def test_a_running_trade_whose_stream_is_refused_shows_its_stage(stream_limited_ui: Dashboard):
    ui, page = stream_limited_ui, stream_limited_ui.page
    key = fresh_key(ui.gateway)
    request_id = f"running-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=ui.gateway.http_url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as http:
        trade = asyncio.create_task(http.post("/v1/trades", json={
            "requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
            "amount": "0.01", "slippageBps": 100}))
        try:
            # the key's one stream: following the trade here spends it
            async with http.stream("GET", f"/v1/trades/{request_id}/status") as stream:
                assert stream.status_code == 200
                await sign_in_with_key(ui, key)
                row = page.locator(f'#history tr[data-request-id="{request_id}"]')
                await expect(row).to_be_visible()
                await row.click()
                await expect(page.get_by_test_id("exec-timeline")).to_contain_text("rate limit exceeded for streams")
                await expect(page.get_by_test_id("exec-status")).to_have_text(RUNNING_STAGE)
                # no cancel offered: with no stream, its end would never show here
                await expect(page.get_by_test_id("exec-cancel")).to_be_hidden()
        finally:
            assert (await trade).status_code == 200

