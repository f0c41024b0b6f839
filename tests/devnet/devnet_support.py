"""Helpers for the devnet tests: raw wire-format clients and polling with a deadline.

Tests talk to the devnet only through public wire formats (solana-py AsyncClient, plain
HTTP for Jupiter and Jito, the /devnet/fund control endpoint for funding).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from tradewire.devnet import Devnet, DevnetConfig, DevnetServer, sign_partial

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``check`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


class Api:
    """Thin raw clients for the three HTTP APIs plus the devnet control endpoints."""

    def __init__(self, server: DevnetServer, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http
        self._id = 0

    async def rpc_raw(self, method: str, params: list[Any] | None = None, path: str = "/") -> dict[str, Any]:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []}
        resp = await self.http.post(path, json=body)
        assert resp.status_code == 200
        return resp.json()

    async def rpc(self, method: str, params: list[Any] | None = None, path: str = "/") -> Any:
        data = await self.rpc_raw(method, params, path)
        assert "error" not in data, data
        return data["result"]

    async def jito(self, method: str, params: list[Any] | None = None) -> dict[str, Any]:
        return await self.rpc_raw(method, params, "/api/v1/bundles")

    async def quote(self, input_mint: str, output_mint: str, amount: int, **extra: Any) -> httpx.Response:
        params = {"inputMint": input_mint, "outputMint": output_mint, "amount": str(amount), **extra}
        return await self.http.get("/swap/v1/quote", params=params)

    async def swap_tx(
        self, user: Keypair, input_mint: str, output_mint: str, amount: int, **quote_extra: Any
    ) -> tuple[dict[str, Any], dict[str, Any], VersionedTransaction]:
        """Quote, build, and sign (the user's slot) a swap; returns (quote, swap response, tx)."""
        swap_extra = quote_extra.pop("swap_body", {})
        resp = await self.quote(input_mint, output_mint, amount, **quote_extra)
        assert resp.status_code == 200, resp.text
        quote = resp.json()
        body = {"quoteResponse": quote, "userPublicKey": str(user.pubkey()), **swap_extra}
        built = await self.http.post("/swap/v1/swap", json=body)
        assert built.status_code == 200, built.text
        swap = built.json()
        tx = VersionedTransaction.from_bytes(base64.b64decode(swap["swapTransaction"]))
        return quote, swap, sign_partial(tx, user)

    async def fund(self, owner: Pubkey, lamports: int = 0, tokens: dict[str, int] | None = None) -> dict[str, Any]:
        resp = await self.http.post(
            "/devnet/fund", json={"pubkey": str(owner), "lamports": lamports, "tokens": tokens or {}}
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def new_wallet(self, lamports: int = 10 * 10**9, tokens: dict[str, int] | None = None) -> Keypair:
        kp = Keypair()
        await self.fund(kp.pubkey(), lamports, tokens)
        return kp

    async def token_amount(self, account: Pubkey) -> int:
        """Raw token amount via getTokenAccountBalance (0 when the account does not exist)."""
        data = await self.rpc_raw("getTokenAccountBalance", [str(account)])
        if "error" in data:
            assert data["error"]["code"] == -32602, data
            return 0
        return int(data["result"]["value"]["amount"])

    async def balance(self, owner: Pubkey) -> int:
        return (await self.rpc("getBalance", [str(owner)]))["value"]

    async def latest_blockhash(self) -> tuple[str, int]:
        value = (await self.rpc("getLatestBlockhash"))["value"]
        return value["blockhash"], value["lastValidBlockHeight"]

    async def status(self, signature: str) -> dict[str, Any] | None:
        return (await self.rpc("getSignatureStatuses", [[signature]]))["value"][0]

    async def wait_confirmed(self, signature: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            st = await self.status(signature)
            return st if st and st["confirmationStatus"] in ("confirmed", "finalized") else None

        return await wait_until(check)

    async def transaction(self, signature: str) -> dict[str, Any]:
        await self.wait_confirmed(signature)
        return await self.rpc(
            "getTransaction",
            [signature, {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}],
        )

    async def send(self, tx: VersionedTransaction, skip_preflight: bool = False) -> dict[str, Any]:
        encoded = base64.b64encode(bytes(tx)).decode()
        return await self.rpc_raw(
            "sendTransaction", [encoded, {"encoding": "base64", "skipPreflight": skip_preflight}]
        )


@contextlib.asynccontextmanager
async def own_devnet(config: DevnetConfig) -> AsyncIterator[Api]:
    """A devnet of its own (its clock or settings are the test's), and an Api on it."""
    async with DevnetServer(Devnet(config)) as srv:
        async with httpx.AsyncClient(base_url=srv.rpc_url, timeout=10) as http:
            yield Api(srv, http)


def system_transfer(payer: Keypair, to: Pubkey, lamports: int, blockhash: str) -> VersionedTransaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash)), [payer])


def token_delta(meta: dict[str, Any], owner: Pubkey, mint: str) -> int:
    """post - pre raw amount of ``owner``'s ``mint`` accounts from getTransaction meta."""

    def total(entries: list[dict[str, Any]]) -> int:
        return sum(
            int(e["uiTokenAmount"]["amount"]) for e in entries if e["owner"] == str(owner) and e["mint"] == mint
        )

    return total(meta["postTokenBalances"]) - total(meta["preTokenBalances"])
