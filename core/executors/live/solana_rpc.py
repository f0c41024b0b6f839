"""Solana JSON-RPC over the RPC upstream's pooled client (mainnet request/response shapes).

Only the methods LIVE needs. ``get_signature_statuses`` takes any number of signatures and
asks in chunks of 256 (the RPC's limit): one call covers every in-flight trade.

Why not solana-py's AsyncClient (a dependency: the tests use it as an independent client of
the devnet): it keeps an HTTP pool of its own and raises or returns an answer's error as typed
values, where the executor needs every upstream call to go through upstreams.py (one bounded
pool, the circuit breaker, bounded retries only before a send) and each error object's code and
data as the node sent them — a -32002 whose ``data.err`` is BlockhashNotFound decides whether
anything was forwarded.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tradewire.core.executors.live.upstreams import Upstream, UpstreamError, reading

MAX_STATUSES_PER_CALL = 256
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
# JSON-RPC errors that mean "this node is not fit to answer now" rather than an answer.
_TRANSIENT_CODES = {-32005, -32603, -32016, -32004, -32007, -32014}


class RpcError(Exception):
    """A JSON-RPC error object: the node answered, and refused."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class SignatureStatus:
    slot: int
    err: Any
    confirmation_status: str | None  # processed | confirmed | finalized


class SolanaRpc:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any] | None = None, *, check_breaker: bool = True) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        response = await self.upstream.request("POST", "", json=body, check_breaker=check_breaker)
        try:
            data = response.json()
        except ValueError:
            self.upstream.breaker.record_failure()
            raise UpstreamError("rpc", f"{method}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError("rpc", f"{method}: unexpected answer")
        if "error" in data:
            with reading("rpc", f"{method} error"):
                err = data["error"] or {}
                code, message, detail = int(err.get("code", 0)), str(err.get("message", "")), err.get("data")
            if code in _TRANSIENT_CODES:
                self.upstream.breaker.record_failure()
                raise UpstreamError("rpc", f"{method}: node not ready ({code})")
            raise RpcError(code, message, detail)
        return data.get("result")

    async def retrying(self, method: str, params: list[Any] | None = None) -> Any:
        return await self.upstream.retrying(lambda: self.call(method, params))

    # -- reads -------------------------------------------------------------------------

    async def get_balance(self, pubkey: str) -> int:
        return (await self.balance_at(pubkey))[0]

    async def balance_at(self, pubkey: str) -> tuple[int, int]:
        """(lamports at ``confirmed``, the slot the node read them at)."""
        result = await self.retrying("getBalance", [pubkey, {"commitment": "confirmed"}])
        with reading("rpc", "getBalance"):
            return _u64(result["value"]), _context_slot(result)

    async def token_balances_at(self, owner: str) -> tuple[dict[str, int], int]:
        """(raw token amounts of ``owner`` per mint at ``confirmed``, SPL Token accounts summed
        per mint; the slot the node read them at)."""
        result = await self.retrying("getTokenAccountsByOwner", [
            owner, {"programId": TOKEN_PROGRAM}, {"encoding": "jsonParsed", "commitment": "confirmed"}])
        out: dict[str, int] = {}
        with reading("rpc", "getTokenAccountsByOwner"):
            for entry in result["value"]:
                info = entry["account"]["data"]["parsed"]["info"]
                out[info["mint"]] = out.get(info["mint"], 0) + _u64(int(info["tokenAmount"]["amount"]))
            return out, _context_slot(result)

    async def block_height_at(self, commitment: str = "confirmed") -> tuple[int, int]:
        """(block height, the slot of the bank it was read from): one bank answers both
        (getEpochInfo), so later reads can be held to a node at least that far along."""
        result = await self.call("getEpochInfo", [{"commitment": commitment}])
        with reading("rpc", "getEpochInfo"):
            return _u64(result["blockHeight"]), _u64(result["absoluteSlot"])

    async def get_signature_statuses(self, signatures: Sequence[str], *, search_history: bool = False,
                                     check_breaker: bool = True) -> list[SignatureStatus | None]:
        """Statuses from the node's recent status cache (it spans every still-valid blockhash);
        ``search_history`` also searches its ledger, for transactions the cache does not show."""
        return (await self.signature_statuses_at(signatures, search_history=search_history,
                                                 check_breaker=check_breaker))[0]

    async def signature_statuses_at(self, signatures: Sequence[str], *, search_history: bool = False,
                                    check_breaker: bool = True) -> tuple[list[SignatureStatus | None], int]:
        """The statuses, and the slot the answers vouch for (the lowest context slot of the
        calls; 0 when a node does not say): a node behind that slot may not know of a
        transaction that landed before it."""
        out: list[SignatureStatus | None] = []
        slots: list[int] = []
        for start in range(0, len(signatures), MAX_STATUSES_PER_CALL):
            chunk = list(signatures[start:start + MAX_STATUSES_PER_CALL])
            result = await self.call("getSignatureStatuses", [chunk, {"searchTransactionHistory": search_history}],
                                     check_breaker=check_breaker)
            with reading("rpc", "getSignatureStatuses"):
                values = list(result["value"])
                if len(values) != len(chunk):
                    raise ValueError(f"{len(values)} statuses for {len(chunk)} signatures")
                out.extend(None if value is None else SignatureStatus(
                    _u64(value["slot"]), value.get("err"), value.get("confirmationStatus")) for value in values)
                slots.append(_context_slot(result))
        return out, min(slots, default=0)

    async def get_transaction(self, signature: str, commitment: str = "confirmed") -> dict[str, Any] | None:
        return await self.call("getTransaction", [signature, {
            "encoding": "json", "commitment": commitment, "maxSupportedTransactionVersion": 0}])

    # -- transactions ------------------------------------------------------------------

    async def simulate(self, wire: bytes) -> dict[str, Any]:
        result = await self.retrying("simulateTransaction", [base64.b64encode(wire).decode(), {
            "encoding": "base64", "sigVerify": True, "commitment": "processed"}])
        with reading("rpc", "simulateTransaction"):
            value = result["value"]
            value.get("err")  # a mapping
            return value

    async def send(self, wire: bytes, *, skip_preflight: bool, check_breaker: bool = True) -> str:
        """One sendTransaction of these exact bytes; never retried here (the caller
        re-broadcasts the same bytes on its own schedule)."""
        return await self.call("sendTransaction", [base64.b64encode(wire).decode(), {
            "encoding": "base64", "skipPreflight": skip_preflight, "preflightCommitment": "processed",
            "maxRetries": 0}], check_breaker=check_breaker)


def _context_slot(result: Any) -> int:
    """The slot an answer was read at; 0 when the node does not say (then it vouches for nothing)."""
    slot = (result.get("context") or {}).get("slot")
    return 0 if slot is None else _u64(slot)


def _u64(value: Any) -> int:
    """An amount, slot or height as the RPC sends it: a JSON integer, not negative."""
    if type(value) is not int or value < 0:
        raise ValueError(f"expected an unsigned integer, got {type(value).__name__}")
    return value
