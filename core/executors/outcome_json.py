"""An executor's outcome and its quote as JSON: what the LIVE journal keeps for each transaction
and a paper fill's receipt keeps with its fill id, so the outcome can be read back after the
process that reached it is gone."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import Outcome
from tradewire.core.order import FeeBreakdown, Fill, Quote


def quote_to_json(quote: Quote) -> dict[str, Any]:
    return asdict(quote)


def quote_from_json(data: dict[str, Any]) -> Quote:
    return Quote(**data)


def outcome_to_json(status: int, error: TradewireError | None, fill: Fill | None, confirmed: bool) -> dict[str, Any]:
    return {
        "status": status,
        "confirmed": confirmed,
        "error": None if error is None else {"reason": error.reason, "message": error.message,
                                             **({"metadata": dict(error.metadata)} if error.metadata else {})},
        "fill": None if fill is None else {
            "amount_in": fill.amount_in, "amount_out": fill.amount_out, "signature": fill.signature,
            "slot": fill.slot, "fees": asdict(fill.fees),
        },
    }


def outcome_from_json(data: dict[str, Any], quote: Quote) -> tuple[Outcome, bool]:
    error = data.get("error")
    fill = data.get("fill")
    return Outcome(
        status=int(data["status"]),
        fill=None if fill is None else Fill(quote, int(fill["amount_in"]), int(fill["amount_out"]),
                                            FeeBreakdown(**fill["fees"]), fill.get("signature", ""),
                                            int(fill.get("slot", 0))),
        error=None if error is None else TradewireError(error["reason"], error["message"],
                                                        metadata=error.get("metadata") or {}),
    ), bool(data.get("confirmed"))
