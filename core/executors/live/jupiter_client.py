"""Jupiter Swap API v1 (``GET /swap/v1/quote``, ``POST /swap/v1/swap``) over the quote
upstream's pooled client, with bounded retries of transient failures (nothing is sent yet)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.upstreams import Upstream, UpstreamError, reading
from tradewire.core.market import Mint
from tradewire.core.order import Quote

log = logging.getLogger("tradewire.live.jupiter")

# Jupiter error codes that mean "this trade cannot be routed", not "we sent a bad request".
_NO_ROUTE_CODES = {"COULD_NOT_FIND_ANY_ROUTE", "NO_ROUTES_FOUND", "TOKEN_NOT_TRADABLE", "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT",
                   "MARKET_NOT_FOUND", "CIRCULAR_ARBITRAGE_IS_DISABLED"}


class JupiterClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def quote(self, input_mint: Mint, output_mint: Mint, amount: int, exact_out: bool,
                    slippage_bps: int) -> dict[str, Any]:
        params = {
            "inputMint": input_mint.address, "outputMint": output_mint.address, "amount": str(amount),
            "slippageBps": str(slippage_bps), "swapMode": "ExactOut" if exact_out else "ExactIn",
            "restrictIntermediateTokens": "true",
        }
        response = await self.upstream.retrying(lambda: self.upstream.request("GET", "/swap/v1/quote", params=params))
        return _answer(response, "quote")

    async def swap(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.upstream.retrying(lambda: self.upstream.request("POST", "/swap/v1/swap", json=body))
        return _answer(response, "swap")


def _answer(response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise UpstreamError("quote", f"{what} answer is not JSON", transient=False) from None
    if response.status_code == 200 and isinstance(body, dict):
        return body
    code = body.get("errorCode") if isinstance(body, dict) else None
    if code in _NO_ROUTE_CODES:
        raise TradewireError("NO_ROUTE", f"no route for this trade ({code})")
    # Anything else means our request was wrong: log it here, tell the caller nothing internal.
    log.error("jupiter %s refused the request", what, extra={"status": response.status_code, "error_code": code,
                                                              "error": (body or {}).get("error") if isinstance(body, dict) else None})
    raise TradewireError("INTERNAL", "internal error")


def to_quote(body: dict[str, Any]) -> Quote:
    """Jupiter's quote → the core Quote (priceImpactPct is a fraction; the API speaks percent)."""
    with reading("quote", "quote"):
        route = " → ".join(step.get("swapInfo", {}).get("label", "") for step in body.get("routePlan", []))
        return Quote(
            in_amount=int(body["inAmount"]),
            out_amount=int(body["outAmount"]),
            other_amount_threshold=int(body["otherAmountThreshold"]),
            price_impact_pct=format((Decimal(str(body.get("priceImpactPct", "0"))) * 100).quantize(Decimal("0.000001")),
                                    "f"),
            route=route,
            context_slot=int(body.get("contextSlot", 0) or 0),
        )
