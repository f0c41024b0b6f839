"""LIVE executor: real Solana swaps (Jupiter quote + build, sign, simulate, send by RPC or as a
Jito bundle, confirm, read the real fill). See :mod:`.executor` for the path of a trade and
how double sending is prevented.

Modules: ``upstreams`` (pooled HTTP client + breaker per upstream), ``breaker``,
``jupiter_client``, ``solana_rpc``, ``jito_client``, ``confirmer`` (one poller for every
in-flight signature), ``fills`` (the fill read from the chain), ``safety`` (risk checks),
``wallet`` (the keypair), ``outcomes`` (chain results → statuses and errors).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tradewire.core.config import Settings
from tradewire.core.executors.live.executor import LiveExecutor
from tradewire.core.executors.live.upstreams import TransportWrapper
from tradewire.core.executors.live.wallet import Wallet, WalletError, load_wallet
from tradewire.core.market import Market
from tradewire.core.quotes import QuoteSource
from tradewire.core.store.live_orders import LiveOrderStore

__all__ = ["LiveExecutor", "Wallet", "WalletError", "build_live_executor", "load_wallet", "open_live_orders",
           "orders_db_path"]


def build_live_executor(settings: Settings, market: Market, quotes: QuoteSource, store, recorder, *,
                        wallet: Wallet | None = None, orders: LiveOrderStore | None = None,
                        wrap_transports: dict[str, TransportWrapper] | None = None,
                        shared_client=None, replica_id: str = "") -> LiveExecutor:
    """The LIVE executor from Settings (``settings.live``); the keypair is loaded here, once.
    ``orders``: its journal, opened already (else opened here, see :func:`open_live_orders`).
    ``shared_client`` and ``replica_id`` (Redis, with several replicas): sends are then recorded
    for the other replicas and the daily loss counts every replica's bookings
    (core/shared/redis_live_orders.py); the limits count every replica's trades in flight
    (core/shared/redis_reservations.py); and the kill switch they share holds too
    (core/shared/redis_kill_switch.py)."""
    config = settings.live
    # httpx logs every request's full URL at INFO; RPC URLs often carry an API key.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
    wallet = wallet or load_wallet(config.wallet_path, config.wallet_env)
    if orders is None:
        orders = open_live_orders(orders_db_path(settings), shared_client, replica_id)
    reservations = kill_switch = None
    if shared_client is not None:
        from tradewire.core.shared.redis_kill_switch import SharedKillSwitch
        from tradewire.core.shared.redis_reservations import SharedReservations

        reservations = SharedReservations(shared_client, wallet.address, settings.shared.inflight_lease_s, replica_id)
        kill_switch = SharedKillSwitch(shared_client).state
    return LiveExecutor(config, market, quotes, store, recorder, wallet, orders, wrap_transports=wrap_transports,
                        reservations=reservations, shared_kill_switch=kill_switch)


def orders_db_path(settings: Settings) -> Path:
    """The LIVE executor's journal of signed transactions: ``[live] orders_db``, else in the data folder."""
    return settings.live.orders_db or settings.storage.data_dir / "live_orders.db"


def open_live_orders(path: Path, shared_client=None, replica_id: str = "") -> LiveOrderStore:
    """The journal at ``path``; with Redis (``shared_client``) one that records each send for
    the other replicas too."""
    if shared_client is None:
        return LiveOrderStore(path)
    from tradewire.core.shared.redis_live_orders import SharedLiveOrders

    return SharedLiveOrders(path, shared_client, replica_id)
