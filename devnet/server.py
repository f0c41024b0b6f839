"""Assembly: one ``Devnet`` (chain, market, RPC, Jupiter, Jito) served over HTTP by uvicorn.

One port serves everything, at the paths the real services use, so a client configured
with ``rpc_url`` / ``jupiter_url`` / ``jito_url`` cannot tell it from mainnet:

* ``POST /``                       Solana JSON-RPC (``GET /health`` too)
* ``GET /swap/v1/quote``, ``POST /swap/v1/swap``   Jupiter Swap API v1
* ``POST /api/v1/bundles``, ``POST /api/v1/transactions``   Jito block engine
* ``GET /devnet/info``, ``POST /devnet/fund``, ``POST /devnet/advance``   devnet control

``DevnetServer`` runs in-process on the caller's event loop (port 0 → a free port), which
is how tests use it; ``run_devnet`` / ``main`` run it as the ``tradewire devnet`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .chain import Chain
from .config import DevnetConfig
from .constants import JITO_TIP_ACCOUNTS
from .jito import JitoEngine
from .jupiter import Jupiter, routes as jupiter_routes
from .rpc import MAX_REQUEST_BODY_SIZE, SolanaRpc, json_rpc_endpoint
from .seed import Market

log = logging.getLogger("tradewire.devnet")

MAX_ADVANCE_SLOTS = 2**32  # one /devnet/advance: decades of slots, and the slot stays a u64


class Devnet:
    """The whole local Solana environment in one object (no HTTP)."""

    def __init__(self, config: DevnetConfig | None = None) -> None:
        self.config = config or DevnetConfig()
        self.chain = Chain(self.config)
        self.market = Market(self.chain, self.config)
        self.rpc = SolanaRpc(self.chain, self.market)
        self.jupiter = Jupiter(self.chain, self.market)
        self.jito = JitoEngine(self.chain, self.rpc)

    def mint(self, symbol: str) -> Pubkey:
        info = self.market.mint(symbol)
        if info is None:
            raise KeyError(symbol)
        return info.address

    def wallet(self, name: str) -> Keypair:
        """The keypair of a configured wallet (for tests and demos; never served over HTTP)."""
        keypair = self.market.wallets[name].keypair
        if keypair is None:
            raise KeyError(f"wallet {name!r} was configured by pubkey only")
        return keypair

    def fund(self, owner: Pubkey, lamports: int = 0, tokens: dict[str, int] | None = None) -> dict[str, int]:
        """Give ``owner`` lamports and tokens (symbol or mint → atomic units)."""
        self.chain.sync()
        return self.market.fund(owner, lamports, tokens)

    def info(self, base_url: str | None = None) -> dict[str, Any]:
        market = self.market
        out: dict[str, Any] = {
            "slot": self.chain.sync(),
            "blockHeight": self.chain.block_height,
            "mints": [
                {"symbol": m.symbol, "address": str(m.address), "decimals": m.decimals} for m in market.mints.values()
            ],
            "pools": [
                {
                    "ammKey": str(p.amm_key),
                    "label": p.label,
                    "mintA": str(p.mint_a.address),
                    "mintB": str(p.mint_b.address),
                    "vaultA": str(p.vault_a),
                    "vaultB": str(p.vault_b),
                    "reserveA": str(market.vault_amount(p.vault_a)),
                    "reserveB": str(market.vault_amount(p.vault_b)),
                    "feeBps": p.fee_bps,
                }
                for p in market.pools
            ],
            "wallets": [{"name": w.name, "pubkey": str(w.pubkey)} for w in market.wallets.values()],
            "poolAuthority": str(market.pool_authority.pubkey()),
            "tipAccounts": list(JITO_TIP_ACCOUNTS),
        }
        if base_url:
            out.update(rpcUrl=base_url, jupiterUrl=base_url, jupiterSwapApiUrl=f"{base_url}/swap/v1", jitoUrl=base_url)
        return out


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def build_app(devnet: Devnet) -> Starlette:
    """The ASGI app serving all three APIs and the control endpoints."""
    quote, swap = jupiter_routes(devnet.jupiter)

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def info(request: Request) -> Response:
        return JSONResponse(devnet.info(str(request.base_url).rstrip("/")))

    async def fund(request: Request) -> Response:
        try:
            body = await request.json()
            owner = Pubkey.from_string(body["pubkey"])
            lamports = int(body.get("lamports", 0))
            tokens = {str(k): int(v) for k, v in (body.get("tokens") or {}).items()}
            balances = devnet.fund(owner, lamports, tokens)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            return _bad_request(f"invalid fund request: {exc}")
        return JSONResponse({"pubkey": str(owner), "balances": {k: str(v) for k, v in balances.items()}})

    async def advance(request: Request) -> Response:
        try:
            body = await request.json()
            slots = int(body.get("slots", 1))
            if slots > MAX_ADVANCE_SLOTS:
                raise ValueError(f"at most {MAX_ADVANCE_SLOTS} slots at a time")
            devnet.chain.advance_slots(slots)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            return _bad_request(f"invalid advance request: {exc}")
        return JSONResponse({"slot": devnet.chain.slot, "blockHeight": devnet.chain.block_height})

    return Starlette(
        routes=[
            Route("/", json_rpc_endpoint(devnet.rpc.handle_payload, MAX_REQUEST_BODY_SIZE), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/swap/v1/quote", quote, methods=["GET"]),
            Route("/swap/v1/swap", swap, methods=["POST"]),
            Route("/api/v1/bundles", json_rpc_endpoint(devnet.jito.handle_payload), methods=["POST"]),
            Route("/api/v1/transactions", json_rpc_endpoint(devnet.jito.handle_payload), methods=["POST"]),
            Route("/devnet/info", info, methods=["GET"]),
            Route("/devnet/fund", fund, methods=["POST"]),
            Route("/devnet/advance", advance, methods=["POST"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn that leaves signal handling to its host when embedded (tests, other apps)."""

    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class DevnetServer:
    """Serve a ``Devnet`` over HTTP on the running event loop.

    ``await start()`` binds (port 0 picks a free port) and returns the port;
    ``await stop()`` shuts down. Also an async context manager.
    """

    def __init__(
        self,
        devnet: Devnet | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handle_signals: bool = False,
        log_level: str = "warning",
    ) -> None:
        self.devnet = devnet or Devnet()
        self.host = host
        self.port = port
        self._handle_signals = handle_signals
        self._log_level = log_level
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def rpc_url(self) -> str:
        return self.base_url

    @property
    def jupiter_url(self) -> str:
        """Base URL for the Jupiter paths (``{jupiter_url}/swap/v1/quote``)."""
        return self.base_url

    @property
    def jupiter_swap_api_url(self) -> str:
        """The ``/swap/v1`` base (``{jupiter_swap_api_url}/quote``)."""
        return f"{self.base_url}/swap/v1"

    @property
    def jito_url(self) -> str:
        """Block-engine base URL (``{jito_url}/api/v1/bundles``)."""
        return self.base_url

    async def start(self) -> int:
        if self._task is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP; without it every keep-alive response waits ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.devnet),
            lifespan="off",
            log_level=self._log_level,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config, self._handle_signals)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        return self.port

    async def wait(self) -> None:
        """Until the server stops (a signal when ``handle_signals``, or ``stop``)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._server = None
            self._task = None

    async def __aenter__(self) -> DevnetServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_devnet(config: DevnetConfig | None = None, host: str = "127.0.0.1", port: int = 8899) -> None:
    """Run the devnet until interrupted (SIGINT/SIGTERM)."""
    server = DevnetServer(Devnet(config), host, port, handle_signals=True, log_level="info")
    await server.start()
    devnet = server.devnet
    print(
        json.dumps(
            {
                "event": "devnet_started",
                "rpc_url": server.rpc_url,
                "jupiter_url": server.jupiter_url,
                "jito_url": server.jito_url,
                "wallets": {w.name: str(w.pubkey) for w in devnet.market.wallets.values()},
            }
        ),
        flush=True,
    )
    try:
        await server.wait()
    finally:
        await server.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradewire devnet", description="Local Solana devnet (LiteSVM) with "
                                     "Solana JSON-RPC, Jupiter Swap API v1 and Jito block-engine endpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--config", type=Path, help="JSON file with DevnetConfig fields (defaults fill the rest)")
    parser.add_argument("--slot-ms", type=int, help="milliseconds per slot (default 400)")
    parser.add_argument("--blockhash-valid-blocks", type=int, help="blockhash lifetime in blocks (default 150)")
    return parser


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> DevnetConfig:
    data: dict[str, Any] = json.loads(path.read_text()) if path else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return DevnetConfig.model_validate(data)


def main(argv: Sequence[str] | None = None) -> int:
    """``tradewire devnet [--host H] [--port P] [--config FILE] [--slot-ms N]``."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(
            args.config, {"slot_ms": args.slot_ms, "blockhash_valid_blocks": args.blockhash_valid_blocks}
        )
    except (OSError, ValueError) as exc:
        print(f"tradewire devnet: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(run_devnet(config, args.host, args.port))
    except OSError as exc:
        print(f"tradewire devnet: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
