"""Jito-compatible block engine JSON-RPC (POST /api/v1/bundles, /api/v1/transactions).

``sendBundle`` validates synchronously (encoding, 1–5 transactions, signatures, a
transaction carrying a ``jitodontfront`` account only at index 0, a tip of at least
``jito_min_tip_lamports`` transferred to one of the 8 tip accounts) and queues
the bundle; it executes at the start of the next slot, atomically: if any transaction
fails, every account it touched is restored and nothing lands (no fees, like Jito).
``getInflightBundleStatuses`` reports Invalid (unknown id) / Pending / Failed / Landed.
``sendTransaction`` is the RPC's sendTransaction with preflight forced off.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from solders.transaction import VersionedTransaction

from .chain import Chain
from .constants import JITO_TIP_ACCOUNTS, JITO_TIP_PUBKEYS, SYSTEM_PROGRAM_ID
from .rpc import JsonRpcService, RpcError, SolanaRpc, invalid_params
from .txutil import DecodeError, decode_transaction, err_json, err_message

log = logging.getLogger("tradewire.devnet.jito")

MAX_STATUS_IDS = 5
DONT_FRONT_PREFIX = "jitodontfront"


@dataclass
class Bundle:
    bundle_id: str
    txs: list[VersionedTransaction]
    submitted_slot: int
    status: str = "Pending"  # Pending | Landed | Failed
    landed_slot: int | None = None
    error: str | None = None
    err: Any = None  # the failing transaction's error, RPC-shaped
    signatures: list[str] = field(default_factory=list)


def bundle_id(txs: list[VersionedTransaction]) -> str:
    """Jito's bundle id: SHA-256, hex, over the transactions' first signatures in base58 joined
    by commas (as the block engine derives it)."""
    return hashlib.sha256(",".join(str(tx.signatures[0]) for tx in txs).encode()).hexdigest()


def tip_lamports(tx: VersionedTransaction) -> int:
    """Lamports a transaction transfers to Jito tip accounts (System Transfer, tag 2)."""
    msg = tx.message
    keys = list(msg.account_keys)
    total = 0
    for ix in msg.instructions:
        if ix.program_id_index >= len(keys) or keys[ix.program_id_index] != SYSTEM_PROGRAM_ID:
            continue
        data = bytes(ix.data)
        accounts = bytes(ix.accounts)
        if len(data) >= 12 and struct.unpack_from("<I", data)[0] == 2 and len(accounts) >= 2:
            if accounts[1] < len(keys) and keys[accounts[1]] in JITO_TIP_PUBKEYS:
                total += struct.unpack_from("<Q", data, 4)[0]
    return total


def carries_dont_front(tx: VersionedTransaction) -> bool:
    """Whether the transaction names an account starting with ``jitodontfront`` (the block
    engine's marker for "nothing may be bundled in front of me")."""
    return any(str(key).startswith(DONT_FRONT_PREFIX) for key in tx.message.account_keys)


class JitoEngine(JsonRpcService):
    """Bundle queue, atomic execution at slot boundaries, and status reporting."""

    def __init__(self, chain: Chain, rpc: SolanaRpc) -> None:
        super().__init__(chain)
        self.rpc = rpc
        self.bundles: dict[str, Bundle] = {}
        self._queue: deque[Bundle] = deque()
        chain.add_slot_hook(self._on_slot)
        self.methods = {
            "sendBundle": self.send_bundle,
            "getInflightBundleStatuses": self.get_inflight_bundle_statuses,
            "getBundleStatuses": self.get_bundle_statuses,
            "getTipAccounts": lambda _p: list(JITO_TIP_ACCOUNTS),
            "sendTransaction": lambda p: self.rpc.send_transaction(p, force_skip_preflight=True),
        }

    # ----- execution -------------------------------------------------------------------

    def _on_slot(self, slot: int) -> None:
        while self._queue and self._queue[0].submitted_slot < slot:
            self._land(self._queue.popleft())

    def _land(self, bundle: Bundle) -> None:
        results, failed = self.chain.execute_bundle(bundle.txs)
        if failed is None:
            bundle.status = "Landed"
            bundle.landed_slot = self.chain.slot
        else:
            bundle.status = "Failed"
            bundle.error = f"transaction {failed} ({results[failed].signature}) failed: {err_message(results[failed].err)}"
            bundle.err = err_json(results[failed].err)
            log.info("devnet jito: bundle %s failed: %s", bundle.bundle_id, bundle.error)

    # ----- methods ---------------------------------------------------------------------

    def send_bundle(self, params: list[Any]) -> str:
        if not params or not isinstance(params[0], list):
            raise invalid_params("Invalid params: expected an array of encoded transactions")
        encoded = params[0]
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        encoding = config.get("encoding", "base58")
        limit = self.chain.config.jito_max_bundle_txs
        if not 1 <= len(encoded) <= limit:
            raise invalid_params(f"bundle must contain between 1 and {limit} transactions, got {len(encoded)}")
        txs = []
        for i, raw in enumerate(encoded):
            if not isinstance(raw, str):
                raise invalid_params(f"transaction {i} must be an encoded string")
            try:
                tx = decode_transaction(raw, encoding)
            except DecodeError as exc:
                raise invalid_params(f"transaction {i} could not be decoded: {exc}") from None
            if not all(tx.verify_with_results()):
                raise invalid_params(f"transaction {i} failed signature verification")
            txs.append(tx)
        for i, tx in enumerate(txs[1:], start=1):
            if carries_dont_front(tx):
                raise invalid_params(
                    f"transaction {i} carries a jitodontfront account: such a transaction must be the "
                    "first of its bundle (index 0)"
                )
        sigs = [tx.signatures[0] for tx in txs]
        if len(set(sigs)) != len(sigs):
            raise invalid_params("bundle contains duplicate transactions")
        bid = bundle_id(txs)
        if bid in self.bundles:  # a retry of the same bundle: same id, never executed twice
            return bid
        tip = sum(tip_lamports(tx) for tx in txs)
        minimum = self.chain.config.jito_min_tip_lamports
        if tip == 0:
            raise invalid_params(
                "Bundles must write lock at least one tip account to be eligible for the auction "
                f"(transfer at least {minimum} lamports to one of getTipAccounts)"
            )
        if tip < minimum:
            raise invalid_params(f"bundle tip of {tip} lamports is below the minimum of {minimum} lamports")
        bundle = Bundle(bid, txs, self.chain.slot, signatures=[str(s) for s in sigs])
        self.bundles[bid] = bundle
        self._queue.append(bundle)
        return bid

    def _ids(self, params: list[Any]) -> list[str]:
        if not params or not isinstance(params[0], list) or not all(isinstance(i, str) for i in params[0]):
            raise invalid_params("Invalid params: expected an array of bundle ids")
        ids = params[0]
        if len(ids) > MAX_STATUS_IDS:
            raise invalid_params(f"Too many bundle ids provided; max {MAX_STATUS_IDS}")
        return ids

    def get_inflight_bundle_statuses(self, params: list[Any]) -> dict[str, Any]:
        value = []
        for bid in self._ids(params):
            bundle = self.bundles.get(bid)
            if bundle is None:
                value.append({"bundle_id": bid, "status": "Invalid", "landed_slot": None})
            else:
                value.append({"bundle_id": bid, "status": bundle.status, "landed_slot": bundle.landed_slot})
        return {"context": {"slot": self.chain.slot}, "value": value}

    def get_bundle_statuses(self, params: list[Any]) -> dict[str, Any]:
        value: list[Any] = []
        for bid in self._ids(params):
            bundle = self.bundles.get(bid)
            if bundle is None or bundle.status != "Landed":
                value.append(None)
                continue
            first = self.chain.records.get(bundle.txs[0].signatures[0])
            value.append(
                {
                    "bundle_id": bid,
                    "transactions": bundle.signatures,
                    "slot": bundle.landed_slot,
                    "confirmation_status": self.chain.commitment_of(first) if first else "processed",
                    "err": {"Ok": None},
                }
            )
        return {"context": {"slot": self.chain.slot}, "value": value}


__all__ = ["Bundle", "JitoEngine", "RpcError", "bundle_id", "tip_lamports"]
