"""Outcomes of LIVE transactions: how chain results become trade statuses and errors (kept in
the live-order journal as core/executors/outcome_json.py writes them); completing a trade
record from an outcome is TradeRunner's apply_outcome, shared by both modes."""

from __future__ import annotations

import json
import re
from typing import Any

from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.safety import risk
from tradewire.core.order import Order
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


# Agave's words (TransactionError's Display) for the errors a built swap is refused for.
_CUSTOM_ERROR_TEXT = re.compile(r"Instruction (\d+): custom program error: 0x([0-9a-fA-F]+)")
_FIELDLESS_TEXT = {"Insufficient funds for fee": "InsufficientFundsForFee",
                   "Attempt to debit an account but found no record of a prior credit": "AccountNotFound"}
# Jupiter's errorCode for the two refusals a caller is told apart (when the text says neither).
_ERROR_CODES = {"SLIPPAGE_TOLERANCE_EXCEEDED": {"InstructionError": [0, {"Custom": SLIPPAGE_PROGRAM_ERROR}]},
                "INSUFFICIENT_FUNDS": "InsufficientFundsForFee"}


def swap_simulation_err(sim: Any) -> Any:
    """The transaction error of Jupiter's ``simulationError``, which it documents as
    ``{errorCode, error}`` (``error``: the simulation's error in the node's words) and some
    deployments extend with the RPC's ``err``: RPC-shaped where the words name a program error
    or a funds error, else those words themselves (``sim`` when it has none)."""
    if not isinstance(sim, dict):
        return sim
    if sim.get("err") is not None:
        return sim["err"]
    text = sim.get("error") if isinstance(sim.get("error"), str) else ""
    if found := _CUSTOM_ERROR_TEXT.search(text):
        return {"InstructionError": [int(found[1]), {"Custom": int(found[2], 16)}]}
    for words, name in _FIELDLESS_TEXT.items():
        if words in text:
            return name
    return _ERROR_CODES.get(sim.get("errorCode")) or text or sim


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


def explain(err: Any) -> str:
    """A transaction error in words: {"InstructionError":[3,"InvalidAccountData"]} →
    "instruction 3 failed: invalid account data"."""
    if isinstance(err, dict) and "InstructionError" in err:
        try:
            index, inner = err["InstructionError"]
        except (TypeError, ValueError):
            return describe_err(err)
        code = custom_code(err)
        return f"instruction {index} failed: " + (f"program error {code}" if code is not None else explain(inner))
    if isinstance(err, str):
        return _words(err)
    if isinstance(err, dict) and len(err) == 1:
        return _words(next(iter(err)))
    return describe_err(err)


def _words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def is_blockhash_not_found(err: Any) -> bool:
    """The transaction's blockhash is unknown to the node: past its validity (or never seen)."""
    return err == "BlockhashNotFound"


def blockhash_expired(where: str) -> tuple[int, TradewireError]:
    """A transaction that can never land now: its blockhash is past its last valid block height."""
    return pb.TRADE_STATUS_EXPIRED, TradewireError(
        "TRADE_EXPIRED", f"blockhash expired {where}: it can never land; nothing was charged. Submit the trade "
                         f"again under a new request id")


def chain_error(order: Order, err: Any, *, where: str, charged: bool, sent: bool = True) -> tuple[int, TradewireError]:
    """(status, error) for a transaction error reported by the chain (simulation or landing);
    ``sent`` False: a simulation before anything was sent, so a refusal (REJECTED)."""
    paid = "; the network fee was charged" if charged else "; nothing was charged"
    if is_blockhash_not_found(err):
        if sent:
            return blockhash_expired(where)
        # The chain moved past the blockhash while the swap was built and signed: nothing is
        # wrong with the trade, and the runner retries it from a fresh quote (core/retry.py).
        return pb.TRADE_STATUS_REJECTED, TradewireError(
            "UPSTREAM_UNAVAILABLE", f"the transaction's blockhash expired {where}, while it was being built and "
                                    f"signed; nothing was sent or charged, and the trade can be retried as it is")
    if custom_code(err) == SLIPPAGE_PROGRAM_ERROR:
        return pb.TRADE_STATUS_FAILED if sent else pb.TRADE_STATUS_REJECTED, TradewireError(
            "SLIPPAGE_EXCEEDED",
            f"price moved beyond the {order.slippage_bps} bps slippage tolerance {where} "
            f"(program error 6001){paid if sent else '; nothing was sent or charged'}")
    if is_funds_error(err):
        status = pb.TRADE_STATUS_FAILED if charged else pb.TRADE_STATUS_REJECTED
        return status, TradewireError("INSUFFICIENT_FUNDS", f"the wallet cannot pay for this swap {where} "
                                                            f"({describe_err(err)}){paid}")
    if not sent:  # the swap would fail as built: refused like any other pre-send check
        return pb.TRADE_STATUS_REJECTED, risk("SIMULATION", f"the swap failed simulation {where}: {explain(err)}; "
                                                            f"nothing was sent or charged")
    return pb.TRADE_STATUS_FAILED, TradewireError("INTERNAL", f"the swap transaction failed {where}: "
                                                              f"{describe_err(err)}{paid}")

