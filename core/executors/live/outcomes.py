"""Outcomes of LIVE transactions: how chain results become trade statuses and errors, how an
outcome is persisted (JSON in the live-order journal) and how a trade record is completed
when no executor call is waiting for it (after a restart)."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from tradewire.core.errors import Code, TradewireError
from tradewire.core.executors.base import Outcome
from tradewire.core.market import format_units
from tradewire.core.order import FeeBreakdown, Fill, Order, Quote
from tradewire.v1 import trade_pb2 as pb

SLIPPAGE_PROGRAM_ERROR = 6001  # Jupiter's SlippageToleranceExceeded (0x1771)
TOKEN_INSUFFICIENT_FUNDS = 1  # SPL Token's InsufficientFunds
_FUNDS_ERRORS = {"InsufficientFundsForFee", "AccountNotFound", "InsufficientFundsForRent"}


def custom_code(err: Any) -> int | None:
    """The custom program error number of an RPC-shaped InstructionError, if any."""
    if isinstance(err, dict) and "InstructionError" in err:
        try:
            _, inner = err["InstructionError"]
        except (TypeError, ValueError):
            return None
        if isinstance(inner, dict) and "Custom" in inner:
            return int(inner["Custom"])
    return None


def is_funds_error(err: Any) -> bool:
    if isinstance(err, str):
        return err in _FUNDS_ERRORS
    if isinstance(err, dict):
        if "InsufficientFundsForRent" in err:
            return True
        if "InstructionError" in err:
            try:
                _, inner = err["InstructionError"]
            except (TypeError, ValueError):
                return False
            # SPL Token's InsufficientFunds and the System program's ResultWithNegativeLamports are both 1.
            return inner == "InsufficientFunds" or custom_code(err) == TOKEN_INSUFFICIENT_FUNDS
    return False


def describe_err(err: Any) -> str:
    return json.dumps(err, separators=(",", ":"), sort_keys=True)


def chain_error(order: Order, err: Any, *, where: str, charged: bool) -> tuple[int, TradewireError]:
    """(status, error) for a transaction error reported by the chain (simulation or landing)."""
    paid = "; the network fee was charged" if charged else "; nothing was charged"
    if custom_code(err) == SLIPPAGE_PROGRAM_ERROR:
        return pb.TRADE_STATUS_FAILED, TradewireError(
            "SLIPPAGE_EXCEEDED",
            f"price moved beyond the {order.slippage_bps} bps slippage tolerance {where} "
            f"(program error 6001){paid}")
    if is_funds_error(err):
        status = pb.TRADE_STATUS_FAILED if charged else pb.TRADE_STATUS_REJECTED
        return status, TradewireError("INSUFFICIENT_FUNDS", f"the wallet cannot pay for this swap {where} "
                                                            f"({describe_err(err)}){paid}")
    return pb.TRADE_STATUS_FAILED, TradewireError("INTERNAL", f"the swap transaction failed {where}: "
                                                              f"{describe_err(err)}{paid}")


# -- persistence ---------------------------------------------------------------------------


def quote_to_json(quote: Quote) -> dict[str, Any]:
    return asdict(quote)


def quote_from_json(data: dict[str, Any]) -> Quote:
    return Quote(**data)


def outcome_to_json(status: int, error: TradewireError | None, fill: Fill | None, confirmed: bool) -> dict[str, Any]:
    return {
        "status": status,
        "confirmed": confirmed,
        "error": None if error is None else {"reason": error.reason, "message": error.message},
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
        error=None if error is None else TradewireError(error["reason"], error["message"]),
    ), bool(data.get("confirmed"))


# -- completing a trade record -----------------------------------------------------------------


def apply_outcome(result: pb.TradeResult, order: Order, outcome: Outcome) -> None:
    """The TradeResult fields of an outcome (the same fields TradeRunner fills in)."""
    fill = outcome.fill
    if fill is not None:
        quote = fill.quote
        result.amount_in = order.input_mint.to_units(fill.amount_in) if fill.amount_in else "0"
        result.amount_out = order.output_mint.to_units(fill.amount_out) if fill.amount_out else "0"
        result.quoted_amount_out = order.output_mint.to_units(quote.out_amount)
        threshold_mint = order.input_mint if order.exact_out else order.output_mint
        result.other_amount_threshold = threshold_mint.to_units(quote.other_amount_threshold)
        result.price_impact_pct = quote.price_impact_pct
        result.fees.CopyFrom(fill.fees.to_proto())
        result.signature = fill.signature
        result.slot = fill.slot
        if fill.amount_in and fill.amount_out:
            price = (Decimal(fill.amount_out).scaleb(-order.output_mint.decimals)
                     / Decimal(fill.amount_in).scaleb(-order.input_mint.decimals))
            result.executed_price = format_units(price.quantize(Decimal(1).scaleb(-12)))
            if order.exact_out:
                slip = (fill.amount_in - quote.in_amount) * 10_000 / quote.in_amount
            else:
                slip = (quote.out_amount - fill.amount_out) * 10_000 / quote.out_amount
            result.realized_slippage_bps = round(slip)
    if outcome.error is not None:
        err = outcome.error
        result.error.CopyFrom(pb.TradeError(code=int(err.code if err.code != Code.OK else Code.INTERNAL),
                                            reason=err.reason, message=err.message))
    result.status = outcome.status
