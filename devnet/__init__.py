"""Local Solana devnet: LiteSVM behind mainnet wire formats.

Solana JSON-RPC, a Jupiter-compatible Swap API v1 and a Jito-compatible block engine,
all on one port, so LIVE-mode code runs unchanged against it with no network.

    async with DevnetServer(Devnet(DevnetConfig(slot_ms=50))) as server:
        client = AsyncClient(server.rpc_url)
        ...

``main(argv)`` is the ``tradewire devnet`` command.
"""

from .chain import Chain, sign_partial
from .config import DevnetConfig, MintSpec, PoolSpec, WalletSpec
from .server import Devnet, DevnetServer, build_app, main, run_devnet

__all__ = [
    "Chain",
    "Devnet",
    "DevnetConfig",
    "DevnetServer",
    "MintSpec",
    "PoolSpec",
    "WalletSpec",
    "build_app",
    "main",
    "run_devnet",
    "sign_partial",
]
