"""Quotes from a Jupiter-compatible Swap API (the local devnet's, or Jupiter's own).

One pooled keep-alive HTTP client for every trade. Valuation prices (positions, PnL) are
cached for a short time and dropped on every fill, so a read after a fill never uses a
price from before it.

An outage (the API unreachable, or answering 5xx) is logged once when it starts and once when
it ends, and health shows it meanwhile. Until it ends the API is asked for a price every
``probe_interval_s``, so the outage ends when the API is back, not at the next call that
happens to need a quote (an idle gateway said DEGRADED for as long as no one traded).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from decimal import Decimal

import httpx

from tradewire.core.errors import TradewireError
from tradewire.core.market import Market, Mint
from tradewire.core.order import Quote
from tradewire.core.outage import Outage
from tradewire.core.tracing import current_trace, outbound_trace_headers

log = logging.getLogger("tradewire.quotes")

# The largest reference sale valuing a cheap token, in whole tokens: a token worth less than a
# millionth of the valuation token per whole token is priced from this many.
MAX_REFERENCE_LOTS = 10**6


class JupiterQuotes:
    def __init__(self, base_url: str, market: Market, timeout_s: float = 2.0, valuation_ttl_s: float = 2.0,
                 client: httpx.AsyncClient | None = None, probe_interval_s: float = 2.0) -> None:
        self.market = market
        self.valuation_ttl_s = valuation_ttl_s
        self.probe_interval_s = probe_interval_s
        self._http = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )
        # mint → (expires, valuation atomic units received, atomic units of the mint sold)
        self._prices: dict[str, tuple[float, int, int]] = {}
        # Why the last quote failed for want of the API, until one succeeds (health shows it).
        self.outage: str | None = None
        self._outage_log = Outage(log, "quote API", "trades needing a quote are refused until it answers")
        self._probe: asyncio.Task | None = None

    async def quote(self, input_mint: Mint, output_mint: Mint, amount: int, exact_out: bool,
                    slippage_bps: int) -> Quote:
        params = {
            "inputMint": input_mint.address, "outputMint": output_mint.address, "amount": str(amount),
            "slippageBps": str(slippage_bps), "swapMode": "ExactOut" if exact_out else "ExactIn",
            "restrictIntermediateTokens": "true",
        }
        try:
            with outbound_trace_headers("GET", self._http.base_url.host, current_trace()) as trace_headers:
                response = await self._http.get("/swap/v1/quote", params=params, headers=trace_headers)
        except httpx.HTTPError as exc:
            raise self._unavailable(f"quote API unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise self._unavailable(f"quote API answered {response.status_code}")
        if self.outage is not None:
            self.outage = None
            self._outage_log.answered()
        body = response.json()
        if response.status_code != 200:
            raise TradewireError("NO_ROUTE", f"no route: {body.get('error') or body.get('errorCode') or response.status_code}")
        route = " → ".join(step["swapInfo"].get("label", "") for step in body.get("routePlan", []))
        return Quote(
            in_amount=int(body["inAmount"]),
            out_amount=int(body["outAmount"]),
            other_amount_threshold=int(body["otherAmountThreshold"]),
            # Jupiter reports the impact as a fraction; the API speaks percent.
            price_impact_pct=format((Decimal(body["priceImpactPct"]) * 100).quantize(Decimal("0.000001")), "f"),
            route=route,
            context_slot=int(body.get("contextSlot", 0)),
        )

    async def value(self, mint: Mint, amount: int) -> int:
        valuation = self.market.valuation
        if mint.address == valuation.address or amount == 0:
            return amount
        received, sold = await self._price(mint)
        return amount * received // sold

    async def _price(self, mint: Mint) -> tuple[int, int]:
        """The price of ``mint`` as a reference sale: (valuation atomic units received, atomic units
        sold). One whole token, or for a token worth less than one whole valuation token, as many
        as fetch about one (a cheap token's whole-token answer of a few atomic units is a price
        rounded to its first digits: 5 % low at 19 units, nothing below one)."""
        cached = self._prices.get(mint.address)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1:]
        valuation = self.market.valuation
        whole_valuation_token = 10 ** valuation.decimals
        sold = 10 ** mint.decimals
        received = (await self.quote(mint, valuation, sold, exact_out=False, slippage_bps=0)).out_amount
        lots = min(MAX_REFERENCE_LOTS, whole_valuation_token // max(received, 1))
        if lots > 1:
            sold *= lots
            received = (await self.quote(mint, valuation, sold, exact_out=False, slippage_bps=0)).out_amount
        self._prices[mint.address] = (now + self.valuation_ttl_s, received, sold)
        return received, sold

    def _unavailable(self, why: str) -> TradewireError:
        self._outage_log.failed(why)
        self.outage = why
        if self._probe is None or self._probe.done():
            # The gateway's own requests, not the call's that met the outage: run in no call's
            # context (no trace headers, no log ids of that call).
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back(),
                                                                 context=contextvars.Context())
        return TradewireError("UPSTREAM_UNAVAILABLE", why)

    async def _probe_until_back(self) -> None:
        """While the API is out, ask it for a price now and then: the outage ends when it answers."""
        probe = next((m for m in self.market.mints() if m.address != self.market.valuation.address), None)
        while self.outage is not None and probe is not None:
            await asyncio.sleep(self.probe_interval_s)
            with contextlib.suppress(Exception):  # still out, or an odd answer: asked again later
                await self.quote(probe, self.market.valuation, 10 ** probe.decimals, exact_out=False,
                                 slippage_bps=0)

    def invalidate(self) -> None:
        """Forget cached valuation prices (after a fill moved balances or pools)."""
        self._prices.clear()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._http.aclose()
