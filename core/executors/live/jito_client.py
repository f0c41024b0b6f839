"""Jito block engine JSON-RPC (``/api/v1/bundles``): sendBundle and getInflightBundleStatuses.

A bundle's id is SHA-256 over its transactions' first signatures (base58, joined by commas, as
the block engine derives it), so it is known (and persisted) before the bundle is sent;
re-sending the same bundle gives the same id and the engine never lands it twice. The id an
engine answers ``sendBundle`` with is the one its statuses know, so that one is followed.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tradewire.core.executors.live.solana_rpc import RpcError
from tradewire.core.executors.live.upstreams import Upstream, UpstreamError, reading

MAX_BUNDLE_IDS_PER_CALL = 5
#: The eight mainnet Jito tip accounts.
TIP_ACCOUNTS: tuple[str, ...] = (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
)
TIP_PUBKEYS = frozenset(Pubkey.from_string(a) for a in TIP_ACCOUNTS)
#: A read-only account starting with "jitodontfront": the transaction holding it may only
#: ever be placed first in a bundle, so nothing can be bundled in front of it.
DONT_FRONT_ACCOUNT = Pubkey.from_string("jitodontfront111111111111111111111111111111")


SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
_TRANSFER = (2).to_bytes(4, "little")


def tip_transfers(msg) -> list[tuple[int, int]]:
    """(instruction index, lamports) of each System Program transfer to a tip account."""
    keys = list(msg.account_keys)
    out = []
    for i, ix in enumerate(msg.instructions):
        data, accounts = bytes(ix.data), bytes(ix.accounts)
        if (ix.program_id_index < len(keys) and keys[ix.program_id_index] == SYSTEM_PROGRAM and len(data) >= 12
                and data[:4] == _TRANSFER and len(accounts) >= 2 and accounts[1] < len(keys)
                and keys[accounts[1]] in TIP_PUBKEYS):
            out.append((i, int.from_bytes(data[4:12], "little")))
    return out


def bundle_id(txs: Sequence[VersionedTransaction]) -> str:
    return hashlib.sha256(",".join(str(tx.signatures[0]) for tx in txs).encode()).hexdigest()


class JitoClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._ids = itertools.count(1)

    async def _call(self, method: str, params: list[Any], *, check_breaker: bool = True) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        response = await self.upstream.request("POST", "/api/v1/bundles", json=body, check_breaker=check_breaker)
        try:
            data = response.json()
        except ValueError:
            raise UpstreamError("jito", f"{method}: answer is not JSON") from None
        with reading("jito", method):
            if "error" in data:
                err = data["error"] or {}
                code, message, detail = int(err.get("code", 0)), str(err.get("message", "")), err.get("data")
            else:
                return data.get("result")
        raise RpcError(code, message, detail)

    async def send_bundle(self, wires: Sequence[bytes], *, check_breaker: bool = True) -> str:
        """One sendBundle of these exact transactions (never retried here)."""
        encoded = [base64.b64encode(w).decode() for w in wires]
        return await self._call("sendBundle", [encoded, {"encoding": "base64"}], check_breaker=check_breaker)

    async def inflight_statuses(self, ids: Sequence[str], *, check_breaker: bool = True) -> dict[str, str]:
        """bundle id → Invalid | Pending | Failed | Landed, asked five at a time."""
        out: dict[str, str] = {}
        for start in range(0, len(ids), MAX_BUNDLE_IDS_PER_CALL):
            chunk = list(ids[start:start + MAX_BUNDLE_IDS_PER_CALL])
            result = await self._call("getInflightBundleStatuses", [chunk], check_breaker=check_breaker)
            with reading("jito", "getInflightBundleStatuses"):
                for entry in result["value"]:
                    out[str(entry["bundle_id"])] = str(entry["status"])
        return out
