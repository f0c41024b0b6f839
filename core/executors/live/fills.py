"""The real fill of a landed transaction, read from getTransaction's meta — never from the quote.

* Token amounts: post − pre of the wallet's token accounts per mint (``pre/postTokenBalances``,
  owner = wallet; an account absent on one side counts as 0).
* Native SOL: wrapped SOL is unwrapped inside the swap, so it is read from lamports: the
  lamports of the wallet plus those of every token account it owns (rent moved into a new
  account, or back out of a closed one, stays inside that set), plus the fee and the tip that
  left it.
* Fees: ``meta.fee`` is what the chain charged (base + priority); the priority part is
  ceil(CU price × CU limit / 1e6) from the transaction's own compute-budget instructions,
  the base part the rest. Tip: what the tip accounts received.
* Rent: a token account's lamports that are not wrapped SOL are its rent reserve. Reserves
  that grew (a token account created) are rent paid; reserves that shrank (a token account
  closed, e.g. a wrapped-SOL account the swap unwraps) are rent refunded to the wallet. An
  account created and closed within the transaction never shows, and costs nothing.

So the wallet's SOL as the book counts it (native lamports + wrapped SOL) changes by exactly
``sol_change − fee − tip − rent + rent_refund``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tradewire.core.executors.live.jito_client import TIP_ACCOUNTS
from tradewire.core.executors.live.upstreams import MalformedAnswer

COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
WSOL_MINT = "So11111111111111111111111111111111111111112"
DEFAULT_INSTRUCTION_CU = 200_000
MAX_CU = 1_400_000
_TIPS = frozenset(TIP_ACCOUNTS)


@dataclass(frozen=True)
class ComputeBudget:
    unit_limit: int
    unit_price: int  # micro-lamports

    @property
    def priority_fee(self) -> int:
        return -(-self.unit_price * self.unit_limit // 1_000_000)


def compute_budget(tx: VersionedTransaction) -> ComputeBudget:
    msg = tx.message
    keys = list(msg.account_keys)
    limit, price, others = None, 0, 0
    for ix in msg.instructions:
        program = keys[ix.program_id_index] if ix.program_id_index < len(keys) else None
        data = bytes(ix.data)
        if program == COMPUTE_BUDGET_PROGRAM and data:
            if data[0] == 2 and len(data) >= 5:
                limit = struct.unpack_from("<I", data, 1)[0]
            elif data[0] == 3 and len(data) >= 9:
                price = struct.unpack_from("<Q", data, 1)[0]
        else:
            others += 1
    if limit is None:
        limit = DEFAULT_INSTRUCTION_CU * others
    return ComputeBudget(min(limit, MAX_CU), price)


@dataclass(frozen=True)
class ChainFill:
    """What one landed transaction did to the wallet."""

    signature: str
    slot: int
    err: Any
    fee: int  # meta.fee: what the chain charged
    base_fee: int
    priority_fee: int
    tip: int
    rent: int  # paid into token accounts of the wallet
    rent_refund: int  # returned to the wallet from token accounts it closed
    sol_change: int  # native + wrapped SOL received (−: spent) by the swap itself, fees and rent excluded
    token_changes: dict[str, int] = field(default_factory=dict)  # mint → post − pre

    def change(self, mint: str) -> int:
        return self.sol_change if mint == WSOL_MINT else self.token_changes.get(mint, 0)


class UnreadableTransaction(MalformedAnswer):
    """A getTransaction answer the fill cannot be read from (the node's fault, or not there yet)."""

    def __init__(self, what: str) -> None:
        super().__init__("rpc", f"getTransaction: {what}")


def read_transaction(result: dict[str, Any], wallet: str, wire: bytes) -> ChainFill:
    """Read one getTransaction (encoding json) result; ``wire`` is the transaction we signed."""
    try:
        return _read_transaction(result, wallet, wire)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__} {exc}"
        raise UnreadableTransaction(f"answer {what}"[:200]) from None


def _read_transaction(result: dict[str, Any], wallet: str, wire: bytes) -> ChainFill:
    meta = result["meta"]
    message = result["transaction"]["message"]
    keys = list(message["accountKeys"])
    loaded = meta.get("loadedAddresses") or {}
    keys += list(loaded.get("writable") or []) + list(loaded.get("readonly") or [])
    pre, post = list(meta["preBalances"]), list(meta["postBalances"])
    signature = result["transaction"]["signatures"][0]
    fee = int(meta["fee"])
    if not keys or keys[0] != wallet:
        raise UnreadableTransaction("the fee payer is not the LIVE wallet")
    budget = compute_budget(VersionedTransaction.from_bytes(wire))
    priority = min(budget.priority_fee, fee)

    def balances(entries) -> dict[int, tuple[str, int]]:
        return {int(e["accountIndex"]): (e["mint"], int(e["uiTokenAmount"]["amount"]))
                for e in entries or () if e.get("owner") == wallet}

    pre_tokens, post_tokens = balances(meta.get("preTokenBalances")), balances(meta.get("postTokenBalances"))
    token_changes: dict[str, int] = {}
    for index, (mint, amount) in pre_tokens.items():
        token_changes[mint] = token_changes.get(mint, 0) - amount
    for index, (mint, amount) in post_tokens.items():
        token_changes[mint] = token_changes.get(mint, 0) + amount
    owned = {0} | set(pre_tokens) | set(post_tokens)
    lamport_change = sum(post[i] - pre[i] for i in owned)
    tip = max(0, sum(post[i] - pre[i] for i, key in enumerate(keys) if key in _TIPS and i < len(post)))
    rent, rent_refund = _rent_moves(owned - {0}, pre, post, pre_tokens, post_tokens)
    token_changes.pop(WSOL_MINT, None)  # wrapped SOL is in lamport_change already (its lamports)
    return ChainFill(
        signature=signature, slot=int(result.get("slot", 0)), err=meta.get("err"), fee=fee,
        base_fee=fee - priority, priority_fee=priority, tip=tip, rent=rent, rent_refund=rent_refund,
        sol_change=lamport_change + fee + tip, token_changes=token_changes,
    )


TokenBalances = dict[int, tuple[str, int]]  # account index → (mint, raw amount)


def _rent_moves(accounts: set[int], pre: list[int], post: list[int], pre_tokens: TokenBalances,
                post_tokens: TokenBalances) -> tuple[int, int]:
    """(rent paid, rent refunded): the growth and the shrinking of these accounts' reserves."""
    paid = refunded = 0
    for i in accounts:
        change = _reserve(post[i], post_tokens.get(i)) - _reserve(pre[i], pre_tokens.get(i))
        paid += max(0, change)
        refunded += max(0, -change)
    return paid, refunded


def _reserve(lamports: int, token: tuple[str, int] | None) -> int:
    """An account's lamports that are not wrapped SOL (a closed account has none left)."""
    mint, amount = token or ("", 0)
    return lamports - (amount if mint == WSOL_MINT else 0)
