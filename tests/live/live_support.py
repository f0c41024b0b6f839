"""Test support for LIVE: the devnet (LiteSVM behind real HTTP) with a fault-injection layer in
front, served on a real socket either on the test's event loop or in a thread of its own (for
a real gateway process), plus helpers to read the chain the way any client would.

The fault layer sits between the gateway and the devnet, at the HTTP level, and can:
answer the next N ``sendTransaction`` calls with the signature without forwarding them (a
transaction lost in flight: slow confirmation), report no recent signature statuses (hold
confirmation: a node whose status cache lags; its history search and ``getTransaction``
still find what landed, unless history is held too), stall a send after forwarding it (a
transport failure after send), run a callback right before a send is forwarded (e.g. move
the pool), swallow the next N bundles and report them Failed (a bundle outbid in the block
engine's auction), answer chosen paths with HTTP 503 (a failing upstream) and chosen JSON-RPC
methods with an error object, hold the block height (getBlockHeight, getEpochInfo) at a height (a
node whose confirmed height lags the tip), and answer getSignatureStatuses and getTransaction as a
node behind the others, at a chosen slot (one behind a load balancer). It records every send's
exact bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from starlette.responses import JSONResponse

from tradewire.devnet import Devnet, DevnetConfig, sign_partial
from tradewire.devnet.jito import bundle_id
from tradewire.devnet.server import build_app
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"  # BONK/USDC is its only pool: one route
LAMPORTS = 10**9


@dataclass
class FaultRules:
    drop_sends: int = 0  # next N sendTransaction: answered, not forwarded
    hold_statuses: bool = False  # getSignatureStatuses without searchTransactionHistory answers null
    hold_history: bool = False  # ... and with it too (getTransaction still answers)
    fail_methods: dict[str, int] = field(default_factory=dict)  # JSON-RPC method → N error answers (-1: forever)
    stall_sends: int = 0  # next N sendTransaction: forwarded, then no answer until the client gives up
    fail_paths: dict[str, int] = field(default_factory=dict)  # path → N answers of HTTP 503 (-1: forever)
    before_send: Callable[[], None] | None = None  # one-shot, right before a send is forwarded
    drop_bundles: int = 0  # next N sendBundle: answered with the id, never forwarded, then reported Failed
    refuse_bundles: int = 0  # next N sendBundle: refused as invalid (-32602), never forwarded
    hold_height: int | None = None  # getBlockHeight (and getEpochInfo's blockHeight) answers this height
    lag_slot: int | None = None  # getSignatureStatuses and getTransaction answer as a node at this slot
    # What went by.
    sends: list[bytes] = field(default_factory=list)  # every sendTransaction's transaction bytes
    bundles: list[list[bytes]] = field(default_factory=list)  # every sendBundle's transactions
    dropped_bundles: set[str] = field(default_factory=set)  # ids of the bundles drop_bundles swallowed
    status_batches: list[int] = field(default_factory=list)  # signatures per getSignatureStatuses
    requests: dict[str, int] = field(default_factory=dict)  # path/method → count

    def reset(self) -> None:
        self.__init__()


class FaultyDevnetApp:
    """ASGI: the devnet's own app behind the fault layer."""

    def __init__(self, devnet: Devnet, rules: FaultRules) -> None:
        self.devnet = devnet
        self.rules = rules
        self.inner = build_app(devnet)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        rules = self.rules
        path = scope["path"]
        rules.requests[path] = rules.requests.get(path, 0) + 1
        left = rules.fail_paths.get(path, 0)
        if left:
            rules.fail_paths[path] = left - 1 if left > 0 else left
            return await JSONResponse({"error": "injected failure"}, status_code=503)(scope, receive, send)
        if scope["method"] != "POST" or path not in ("/", "/api/v1/bundles"):
            return await self.inner(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        stall = False
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            method, params = payload.get("method"), payload.get("params") or []
            rules.requests[method] = rules.requests.get(method, 0) + 1
            left = rules.fail_methods.get(method, 0)
            if left:
                rules.fail_methods[method] = left - 1 if left > 0 else left
                error = {"code": -32011, "message": "Transaction history is not available from this node"}
                return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "error": error})(
                    scope, receive, send)
            if method == "sendTransaction" and path == "/":
                raw = base64.b64decode(params[0])
                rules.sends.append(raw)
                if rules.drop_sends:
                    rules.drop_sends -= 1
                    signature = str(VersionedTransaction.from_bytes(raw).signatures[0])
                    return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": signature})(
                        scope, receive, send)
                self._before_send()
                if rules.stall_sends:
                    rules.stall_sends -= 1
                    stall = True
            elif method == "sendBundle":
                rules.bundles.append([base64.b64decode(t) for t in params[0]])
                if rules.refuse_bundles:
                    rules.refuse_bundles -= 1
                    error = {"code": -32602, "message": "bundle contains an already processed transaction"}
                    return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "error": error})(
                        scope, receive, send)
                if rules.drop_bundles:  # a bundle that loses the block engine's auction: nothing lands
                    rules.drop_bundles -= 1
                    txs = [VersionedTransaction.from_bytes(base64.b64decode(t)) for t in params[0]]
                    dropped = bundle_id(txs)
                    rules.dropped_bundles.add(dropped)
                    return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": dropped})(
                        scope, receive, send)
                self._before_send()
            elif method == "getInflightBundleStatuses" and rules.dropped_bundles & set(params[0]):
                result = self.devnet.jito.get_inflight_bundle_statuses(params)  # the others as they are
                for entry in result["value"]:
                    if entry["bundle_id"] in rules.dropped_bundles:
                        entry["status"] = "Failed"
                return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": result})(
                    scope, receive, send)
            elif method == "getBlockHeight" and rules.hold_height is not None:
                return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": rules.hold_height})(
                    scope, receive, send)
            elif method == "getEpochInfo" and rules.hold_height is not None:
                answer = self.devnet.rpc.handle_one(payload)
                info = answer["result"]
                info["absoluteSlot"] -= info["blockHeight"] - rules.hold_height  # that height's slot
                info["blockHeight"] = rules.hold_height
                return await JSONResponse(answer)(scope, receive, send)
            elif method == "getSignatureStatuses":
                rules.status_batches.append(len(params[0]))
                config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
                if rules.hold_statuses and (rules.hold_history or not config.get("searchTransactionHistory")):
                    value = {"context": {"slot": self.devnet.chain.sync()}, "value": [None] * len(params[0])}
                    return await JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": value})(
                        scope, receive, send)
                if rules.lag_slot is not None:  # what landed after that slot is not there yet
                    answer = self.devnet.rpc.handle_one(payload)
                    result = answer.get("result")
                    if result is not None:
                        result["context"]["slot"] = rules.lag_slot
                        result["value"] = [v if v is None or v["slot"] <= rules.lag_slot else None
                                           for v in result["value"]]
                    return await JSONResponse(answer)(scope, receive, send)
            elif method == "getTransaction" and rules.lag_slot is not None:
                answer = self.devnet.rpc.handle_one(payload)
                if (answer.get("result") or {}).get("slot", 0) > rules.lag_slot:
                    answer["result"] = None
                return await JSONResponse(answer)(scope, receive, send)

        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        if stall:  # forward to the chain, then never answer: the client's read times out
            async def swallow(_message) -> None:
                pass

            await self.inner(scope, replay, swallow)
            await asyncio.sleep(1.5)  # well past the client's timeout in these tests
            return await JSONResponse({"error": "too late"}, status_code=504)(scope, receive, send)
        await self.inner(scope, replay, send)

    def _before_send(self) -> None:
        hook, self.rules.before_send = self.rules.before_send, None
        if hook is not None:
            hook()


class DevnetHost:
    """A devnet + fault layer on a real socket: on the running loop, or in its own thread."""

    def __init__(self, config: DevnetConfig) -> None:
        self.devnet = Devnet(config)
        self.rules = FaultRules()
        self.app = FaultyDevnetApp(self.devnet, self.rules)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # older uvicorn
        server.capture_signals = _no_signals  # the host process owns its signals
        return server

    # -- on the test's loop ---------------------------------------------------------------

    async def start(self) -> DevnetHost:
        sock = self._socket()
        self._server = self._make_server()
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task

    # -- in a thread (a gateway process talks to it while the test blocks) ----------------------

    def start_thread(self) -> DevnetHost:
        sock = self._socket()
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._server = self._make_server()
                task = asyncio.create_task(self._server.serve(sockets=[sock]))
                while not self._server.started:
                    await asyncio.sleep(0.005)
                ready.set()
                await task

            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="devnet-host", daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("devnet host did not start")
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run ``fn`` on the devnet's own thread (LiteSVM is used from one thread only)."""
        if self._loop is None:
            return fn()

        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop_thread(self) -> None:
        if self._server is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
        if self._thread is not None:
            self._thread.join(10)


@contextlib.asynccontextmanager
async def still_devnet(**config: Any) -> AsyncIterator[DevnetHost]:
    """A devnet of the test's own, behind the fault layer, whose slots advance only with
    ``devnet.chain.advance_slots``: the block heights a trade sees are the ones the test sets."""
    host = await DevnetHost(DevnetConfig(slot_ms=3_600_000, finalize_depth=4, **config)).start()
    try:
        yield host
    finally:
        await host.stop()


def _no_signals():
    return contextlib.nullcontext()


# -- chain helpers (they run on the devnet's thread) ----------------------------------------


def fund(devnet: Devnet, lamports: int = 10 * LAMPORTS, tokens: dict[str, int] | None = None) -> Keypair:
    keypair = Keypair()
    devnet.fund(keypair.pubkey(), lamports, tokens or {})
    return keypair


def move_pool(devnet: Devnet, input_mint: str, output_mint: str, amount: int) -> None:
    """A whale swap that lands now: the pool's price moves before our transaction. Use a pair
    with a single route (USDC/BONK) so the whale moves the very pool our swap goes through."""
    whale = devnet.wallet("whale")
    quote = devnet.jupiter.quote({"inputMint": input_mint, "outputMint": output_mint, "amount": str(amount),
                                  "slippageBps": "10000"})
    swap = devnet.jupiter.swap({"quoteResponse": quote, "userPublicKey": str(whale.pubkey())})
    tx = sign_partial(VersionedTransaction.from_bytes(base64.b64decode(swap["swapTransaction"])), whale)
    result = devnet.chain.execute(tx)
    assert result.err is None and result.record is not None, result.err


def lamports(devnet: Devnet, owner: Pubkey) -> int:
    devnet.chain.sync()
    return devnet.chain.balance(owner)


def token_amount(devnet: Devnet, owner: Pubkey, mint: str) -> int:
    from tradewire.devnet.spl_token import ata

    devnet.chain.sync()
    return devnet.market.vault_amount(ata(owner, Pubkey.from_string(mint)))


def assert_booked_once_as_the_chain_shows(h, host, signature: str) -> None:
    """The LIVE book equals the wallet on chain (seeded from it, then this one fill, once)."""
    owner = h.wallet.pubkey()
    holdings = h.store.holdings("alice", pb.TRADING_MODE_LIVE)
    assert holdings[USDC].amount == token_amount(host.devnet, owner, USDC)
    assert holdings[SOL].amount == lamports(host.devnet, owner)
    assert h.orders.get(signature).booked == 2


def land(host: DevnetHost, wire: bytes) -> None:
    """These signed bytes land on chain by another path (a leader, another relay), now."""
    host.devnet.chain.sync()
    result = host.devnet.chain.execute(VersionedTransaction.from_bytes(wire))
    assert result.err is None and result.record is not None, result.err


def wallet_tx_count(devnet: Devnet, owner: Pubkey) -> int:
    """How many landed transactions this wallet paid for."""
    return sum(1 for r in devnet.chain.records.values() if r.tx.message.account_keys[0] == owner)


def deadline_poll(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not true within {timeout}s (last {value!r})")
        time.sleep(interval)


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` (sync or async) with a deadline; never a blind sleep."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not true within {timeout}s (last {value!r})")
        await asyncio.sleep(interval)
