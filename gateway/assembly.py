"""Builds the transport-neutral core from Settings: one instance shared by every protocol."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis
import redis.asyncio as redis_async
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from tradewire.core.audit import AuditSink, audit_journal_path, open_configured_sink
from tradewire.core.audit.metrics import register_audit_metrics
from tradewire.core.auth.authenticator import Authenticator
from tradewire.core.auth.jwt_verifier import JwtConfig, JwtVerifier
from tradewire.core.auth.key_stores import ChainApiKeyStore, StaticApiKeyStore
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.core.config import Settings, admin_spool_path, key_db_path
from tradewire.core.executors.base import Executor
from tradewire.core.executors.paper import PaperExecutor
from tradewire.core.inflight import InFlightRegistry
from tradewire.core.market import Market
from tradewire.core.metrics import Metrics
from tradewire.core.pipeline import Pipeline
from tradewire.core.jupiter_quotes import JupiterQuotes
from tradewire.core.quotes import PriceTableQuotes, QuoteSource
from tradewire.core.ratelimit import RateLimitConfig, RateLimits
from tradewire.core.recorder import Recorder
from tradewire.core.retry import RetryPolicy
from tradewire.core.service import ServiceOptions, TradeService
from tradewire.core.shared import STORE_OUTAGES, not_answering, streaming_client
from tradewire.core.shared.fail_fast import fail_fast_client
from tradewire.core.shared.redis_cancel import RemoteCancel
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.shared.redis_inflight import RedisInFlight
from tradewire.core.shared.redis_key_store import RedisApiKeyStore
from tradewire.core.shared.redis_limiter import RedisTokenBucketLimiter
from tradewire.core.shared.redis_outbox import SharedWebhookSecret
from tradewire.core.shared.redis_replicas import ReplicaPresence
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import TradeStore
from tradewire.core.store.live_orders import LiveOrderStore
from tradewire.core.store.retention import FillIdRetention
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.tracing import Tracing
from tradewire.core.trades import TradeRunner
from tradewire.core.webhooks import WebhookDispatcher, load_or_create_secret
from tradewire.v1 import trade_pb2 as pb

T = TypeVar("T")

log = logging.getLogger("tradewire.server")


@dataclass
class Core:
    settings: Settings
    service: TradeService
    metrics: Metrics
    store: TradeStore
    audit: AuditSink
    tracing: Tracing
    quotes: QuoteSource
    runner: TradeRunner | None = None
    hub: StatusHub | None = None
    webhooks: WebhookDispatcher | None = None
    live: Executor | None = None  # the LIVE executor when settings.live.enabled
    shared: SharedBackends | None = None  # Redis, when several replicas share state
    presence: ReplicaPresence | None = None  # with Redis: this replica's beat; adopts dead replicas' trades
    remote_cancel: RemoteCancel | None = None  # with Redis: CancelTrade for trades running on other replicas
    retention: FillIdRetention | None = None  # forgets fill ids long settled

    async def start(self) -> None:
        await self.audit.start()
        loop = asyncio.get_running_loop()
        self.metrics.event_loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        if self.presence is not None:
            self.presence.start()  # alive before recovering: nobody adopts what this replica resumes
        if self.remote_cancel is not None and self.runner is not None:
            await self.remote_cancel.start(self.runner.cancel_for_a_peer)
        if self.runner is not None:
            self.runner.inflight.start()  # renews this replica's shared in-flight leases (with Redis)
            recovered = await self.runner.recover()  # unfinished trades of the previous run
            if any(recovered.values()):
                log.info("unfinished trades recovered", extra=recovered)
        if self.live is not None:
            await self.live.start()  # reconciles LIVE transactions left pending, then confirms
        if self.hub is not None:
            self.hub.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        if self.retention is not None:
            self.retention.start()  # after recovery: what it settles may still need its fill ids

    # -- graceful shutdown, in this order (gateway/server.py drives it) ----------------------

    def begin_drain(self) -> None:
        """No new calls (UNAVAILABLE, SHUTTING_DOWN); HealthCheck says NOT_SERVING; no other
        replica's trades taken over."""
        self.service.begin_drain()
        if self.presence is not None:
            self.presence.stop_adopting()

    async def drain_trades(self, timeout: float) -> int:
        """Let running trades finish for up to ``timeout``; the rest are kept unfinished (they
        resume or are reconciled at the next start). Returns how many were interrupted."""
        if self.runner is None or await self.runner.drain(timeout):
            return 0
        interrupted = await self.runner.interrupt_all()
        log.warning("shutdown: %d trades left unfinished", interrupted)
        return interrupted

    async def close_streams(self, timeout: float) -> int:
        """Every open stream gets its final SHUTDOWN message; returns how many had to be cut."""
        if self.hub is None:
            return 0
        self.hub.shutdown()
        if await self.hub.wait_streams_closed(timeout):
            return 0
        return self.hub.drop_all()

    async def close(self, flush_timeout: float | None = None) -> None:
        """Flush and release: webhooks due now (what is left stays in the outbox), audit, store.

        ``flush_timeout`` bounds the flushes together: webhooks first, then the audit trail (what
        QuestDB has not taken by then stays in the local spool). None: webhooks are not waited
        for and the audit trail is drained whatever it takes."""
        flush_until = None if flush_timeout is None else time.monotonic() + flush_timeout
        if self.webhooks is not None:
            await self.webhooks.close(flush_timeout or 0.0)
        if self.hub is not None:
            await self.hub.stop()
        if self.live is not None:
            await self.live.close()
        # drains: every recorded event is written, or spooled once the time is up
        await self.audit.close(None if flush_until is None else max(0.0, flush_until - time.monotonic()))
        self.tracing.shutdown()
        await self.quotes.close()
        if self.remote_cancel is not None:
            await self.remote_cancel.stop()
        if self.presence is not None:  # after its unfinished trades were saved: the others take them now
            await self.presence.stop(leave=True)
        if self.retention is not None:
            await self.retention.stop()
        self.store.close()
        if self.runner is not None:
            await self.runner.inflight.stop()
        if self.shared is not None:
            await self.shared.close()


def build_audit_sink(settings: Settings) -> AuditSink:
    setting = "audit.journal_path" if settings.audit.journal_path else "storage.data_dir"
    return opened(setting, audit_journal_path(settings),
                  lambda _journal: open_configured_sink(settings, adopt=[admin_spool_path(settings)]))


def build_authenticator(settings: Settings, shared: SharedBackends | None = None) -> Authenticator:
    keys = _shared_keys(settings, shared) if shared else _key_database(settings)
    stores = [StaticApiKeyStore([entry.model_dump() for entry in settings.auth.api_keys]), keys]
    jwt = JwtVerifier(JwtConfig.from_mapping(settings.auth.jwt)) if settings.auth.jwt else None
    return Authenticator(api_keys=ChainApiKeyStore(*stores), jwt=jwt)


def _shared_keys(settings: Settings, shared: SharedBackends) -> RedisApiKeyStore:
    """The keys every replica reads, in Redis; a local key database's keys are copied in first
    (a prefix Redis has is left as it is there)."""
    keys = RedisApiKeyStore(shared.client)
    path = key_db_path(settings)
    if path.exists():
        local = opened("auth.api_key_db" if settings.auth.api_key_db else "storage.data_dir", path, SqliteApiKeyStore)
        try:
            copied = keys.copy_in(local.entries())
        except STORE_OUTAGES as exc:
            raise StartupError(not_answering(exc)) from None
        finally:
            local.close()
        if copied:
            log.info("copied %d API key(s) from %s into the shared store", copied, path)
    return keys


def _key_database(settings: Settings) -> SqliteApiKeyStore:
    """The key database, created empty when it is not there yet — but a configured path whose
    folder does not exist is a typo, not a place to start an empty database in."""
    path = key_db_path(settings)
    if settings.auth.api_key_db is not None and not path.parent.is_dir():
        raise StartupError(f"auth.api_key_db: the folder {path.parent} does not exist")
    if not path.exists():  # a warning only when no key at all can call (none in the settings either)
        log.log(logging.INFO if settings.auth.api_keys else logging.WARNING,
                "no API-key database at %s yet: starting an empty one (add keys with "
                "`tradewire keys create --db %s`)", path, path)
    return opened("auth.api_key_db" if settings.auth.api_key_db else "storage.data_dir", path, SqliteApiKeyStore)


def _check_kill_switch_file(settings: Settings) -> None:
    """The emergency brake must be one `tradewire kill-switch` can pull: found out at start, not
    when the command fails to write it (a typo'd folder) or a folder there halts LIVE for good."""
    path = settings.live.kill_switch_file
    if path is None:
        return
    if not path.parent.is_dir():
        raise StartupError(f"live.kill_switch_file: the folder {path.parent} does not exist")
    if path.is_dir():
        raise StartupError(f"live.kill_switch_file: {path} is a folder, not a file")


@dataclass
class SharedBackends:
    """The Redis connections of a scale-out deployment (one sync, one async)."""

    client: redis.Redis
    async_client: redis_async.Redis
    replica_id: str

    async def close(self) -> None:
        await self.async_client.aclose()
        self.client.close()


class StartupError(Exception):
    """Something the gateway needs at start-up is not there; the message says what."""


def opened(setting: str, path: Path, open_it: Callable[[Path], T]) -> T:
    """``open_it(path)``, a file that cannot be opened named with the setting that placed it:
    SQLite says only "unable to open database file", the OS "File exists" or "Permission denied"."""
    try:
        return open_it(path)
    except (sqlite3.Error, OSError) as exc:
        raise StartupError(f"{setting}: cannot open {path}: {getattr(exc, 'strerror', None) or exc}") from None


def build_shared(settings: Settings) -> SharedBackends | None:
    shared = settings.shared
    if not shared.redis_url:
        return None
    client = fail_fast_client(shared.redis_url, shared.store_timeout_s, shared.store_cooldown_s)
    try:
        client.ping()  # fail at start-up, not on the first trade
    except STORE_OUTAGES as exc:
        raise StartupError(not_answering(exc)) from None
    replica = shared.replica_id or hashlib.sha256(
        f"{socket.gethostname()}:{settings.storage.data_dir.resolve()}".encode()).hexdigest()[:16]
    async_client = streaming_client(shared.redis_url)
    return SharedBackends(client, async_client, replica)


def build_rate_limits(settings: Settings, shared: SharedBackends | None = None) -> RateLimits:
    limits = settings.limits
    # With Redis, one bucket per caller across every replica; else in-process buckets.
    factory = (lambda name, rate, burst: RedisTokenBucketLimiter(shared.client, name, rate, burst)) if shared else None
    return RateLimits(RateLimitConfig(
        principal_rate_per_s=limits.requests_per_s, principal_burst=limits.burst,
        live_rate_per_s=limits.live_requests_per_s, live_burst=limits.live_burst,
        stream_rate_per_s=limits.stream_opens_per_s, stream_burst=limits.stream_burst,
        auth_failure_rate_per_s=limits.auth_failures_per_s, auth_failure_burst=limits.auth_failure_burst,
    ), limiter_factory=factory)


def build_webhooks(settings: Settings, store: TradeStore, metrics: Metrics,
                   shared: SharedBackends | None = None, tracer=None) -> WebhookDispatcher | None:
    config = settings.webhooks
    if not config.enabled:
        return None
    if config.secret is not None:
        secret = config.secret.get_secret_value().encode()
    elif shared is not None:  # every replica delivers every webhook: one key for all of them
        secret = SharedWebhookSecret(shared.client)
    else:  # created on first use, kept next to the data (never logged)
        secret = functools.cache(functools.partial(load_or_create_secret, settings.storage.data_dir / "webhook-secret"))
    return WebhookDispatcher(store, config, secret, metrics, tracer=tracer)


def build_quotes(settings: Settings, market: Market) -> QuoteSource:
    """Jupiter-compatible quotes when a URL is configured (the devnet's by default in the run
    command), else the self-contained price table."""
    data = settings.market_data
    if data.jupiter_url:
        return JupiterQuotes(data.jupiter_url, market, data.quote_timeout_s, data.valuation_cache_s)
    return PriceTableQuotes(market)


def build_live_orders(settings: Settings, shared: SharedBackends | None = None) -> LiveOrderStore:
    """The LIVE executor's journal of signed transactions (its own SQLite file)."""
    from tradewire.core.executors.live import open_live_orders, orders_db_path

    return opened("live.orders_db" if settings.live.orders_db else "storage.data_dir", orders_db_path(settings),
                  lambda path: open_live_orders(path, shared.client if shared else None,
                                                shared.replica_id if shared else ""))


def build_core(settings: Settings) -> Core:
    metrics = Metrics()
    # the process's own figures (RSS, CPU, open files, GC) beside the service's, as a default
    # prometheus_client registry would have them
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=metrics.registry)
    opened("storage.data_dir", settings.storage.data_dir, lambda path: path.mkdir(parents=True, exist_ok=True))
    audit = build_audit_sink(settings)
    register_audit_metrics(metrics.registry, audit)
    tracing = Tracing(settings.tracing)
    recorder = Recorder(metrics, audit, tracing, access_log=settings.logging.access_log,
                        transition_log=settings.logging.transition_log, metrics_enabled=settings.metrics.enabled,
                        audit_enabled=settings.audit.enabled)
    market = Market(settings.market)
    shared = build_shared(settings)
    store = (RedisTradeStore(shared.client, shared.replica_id) if shared
             else opened("storage.data_dir", settings.storage.data_dir / "trades.db", SqliteStore))
    quotes = build_quotes(settings, market)
    executors: dict[int, Executor] = {
        pb.TRADING_MODE_PAPER: PaperExecutor(settings.paper, market, quotes, store),
    }
    live = None
    if settings.live.enabled:
        _check_kill_switch_file(settings)
        from tradewire.core.executors.live import build_live_executor

        from tradewire.core.executors.live.metrics import register_breaker_metrics, register_kill_switch_metric

        live = executors[pb.TRADING_MODE_LIVE] = build_live_executor(
            settings, market, quotes, store, recorder, orders=build_live_orders(settings, shared),
            shared_client=shared.client if shared else None, replica_id=shared.replica_id if shared else "")
        if shared:
            store.settles_live = True  # it adopts a dead replica's LIVE trades past the point of no return
        register_breaker_metrics(metrics.registry, lambda: live.breakers)
        register_kill_switch_metric(metrics.registry, live.safety.kill_switch)
    pipeline = Pipeline(build_authenticator(settings, shared), build_rate_limits(settings, shared), market, recorder,
                        tracing)
    execution, streams = settings.execution, settings.streams
    hub = StatusHub(keep_finished=streams.keep_finished, heartbeat_s=streams.heartbeat_s,
                    slow_consumer_s=streams.slow_consumer_s, metrics=metrics,
                    max_open_per_caller=streams.max_open_per_caller, max_open_total=streams.max_open_total,
                    bus=RedisEventBus(shared.async_client, settings.shared.events_retain_s)
                    if shared else None)
    inflight = InFlightRegistry(execution.max_in_flight_per_principal, execution.max_in_flight_total, metrics,
                                RedisInFlight(shared.client, shared.replica_id, settings.shared.inflight_lease_s)
                                if shared else None)
    webhooks = build_webhooks(settings, store, metrics, shared, tracing.tracer)
    runner = TradeRunner(store, hub, executors, recorder, inflight, RetryPolicy.from_config(execution.retry),
                         webhooks, market)
    if shared:
        pipeline.store_outages = runner.store_outages = STORE_OUTAGES
    options = ServiceOptions(heartbeat_s=streams.heartbeat_s, await_trade_s=streams.await_trade_s,
                             session_max_lag=streams.session_max_lag, max_batch_items=settings.limits.max_batch_items,
                             batch_concurrency=execution.batch_concurrency)
    service = TradeService(pipeline, runner, store, market, quotes, executors, options, webhooks)
    presence = remote_cancel = None
    if shared:
        presence = ReplicaPresence(shared.client, shared.replica_id, settings.shared.replica_ttl_s, store.adopt,
                                   runner.recover, metrics)
        runner.remote_cancel = remote_cancel = RemoteCancel(shared.async_client, shared.replica_id, store.owner)
    return Core(settings, service, metrics, store, audit, tracing, quotes, runner, hub, webhooks, live, shared,
                presence, remote_cancel, FillIdRetention(store, settings.storage.fill_ids_keep_s))
