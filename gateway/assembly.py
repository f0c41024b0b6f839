"""Builds the transport-neutral core from Settings: one instance shared by every protocol."""

from __future__ import annotations

from dataclasses import dataclass

from tradewire.core.audit import AuditSink, open_audit_sink
from tradewire.core.auth.authenticator import Authenticator
from tradewire.core.auth.key_stores import ChainApiKeyStore, StaticApiKeyStore
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.core.config import Settings
from tradewire.core.executors.base import Executor
from tradewire.core.executors.paper import PaperExecutor
from tradewire.core.market import Market
from tradewire.core.metrics import Metrics
from tradewire.core.pipeline import Pipeline
from tradewire.core.jupiter_quotes import JupiterQuotes
from tradewire.core.quotes import PriceTableQuotes, QuoteSource
from tradewire.core.ratelimit import RateLimitConfig, RateLimits
from tradewire.core.recorder import Recorder
from tradewire.core.service import TradeService
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.tracing import Tracing
from tradewire.core.trades import TradeRunner
from tradewire.v1 import trade_pb2 as pb


@dataclass
class Core:
    settings: Settings
    service: TradeService
    metrics: Metrics
    store: SqliteStore
    audit: AuditSink
    tracing: Tracing
    quotes: QuoteSource

    async def start(self) -> None:
        await self.audit.start()

    async def close(self) -> None:
        await self.audit.close()  # drains: every recorded event is written or spooled
        self.tracing.shutdown()
        await self.quotes.close()
        self.store.close()


def build_audit_sink(settings: Settings) -> AuditSink:
    audit = settings.audit
    journal = audit.journal_path or settings.storage.data_dir / "audit.jsonl"
    options = {}
    if audit.questdb_conf:
        options = dict(http_url=audit.questdb_http_url, batch_size=audit.batch_size,
                       flush_interval_s=audit.flush_interval_s, queue_max=audit.queue_max)
    return open_audit_sink(questdb_conf=audit.questdb_conf, journal_path=journal, **options)


def build_authenticator(settings: Settings) -> Authenticator:
    stores = [StaticApiKeyStore([entry.model_dump() for entry in settings.auth.api_keys])]
    if settings.auth.api_key_db is not None:
        stores.append(SqliteApiKeyStore(settings.auth.api_key_db))
    return Authenticator(api_keys=ChainApiKeyStore(*stores))


def build_rate_limits(settings: Settings) -> RateLimits:
    limits = settings.limits
    return RateLimits(RateLimitConfig(
        principal_rate_per_s=limits.requests_per_s, principal_burst=limits.burst,
        live_rate_per_s=limits.live_requests_per_s, live_burst=limits.live_burst,
        stream_rate_per_s=limits.stream_opens_per_s, stream_burst=limits.stream_burst,
        auth_failure_rate_per_s=limits.auth_failures_per_s, auth_failure_burst=limits.auth_failure_burst,
    ))


def build_quotes(settings: Settings, market: Market) -> QuoteSource:
    """Jupiter-compatible quotes when a URL is configured (the devnet's by default in the run
    command), else the self-contained price table."""
    data = settings.market_data
    if data.jupiter_url:
        return JupiterQuotes(data.jupiter_url, market, data.quote_timeout_s, data.valuation_cache_s)
    return PriceTableQuotes(market)


def build_core(settings: Settings) -> Core:
    metrics = Metrics()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    audit = build_audit_sink(settings)
    tracing = Tracing(settings.tracing)
    recorder = Recorder(metrics, audit, tracing, access_log=settings.logging.access_log,
                        transition_log=settings.logging.transition_log, metrics_enabled=settings.metrics.enabled,
                        audit_enabled=settings.audit.enabled)
    market = Market(settings.market)
    store = SqliteStore(settings.storage.data_dir / "trades.db")
    quotes = build_quotes(settings, market)
    executors: dict[int, Executor] = {
        pb.TRADING_MODE_PAPER: PaperExecutor(settings.paper, market, quotes, store),
    }
    pipeline = Pipeline(build_authenticator(settings), build_rate_limits(settings), market, recorder, tracing)
    runner = TradeRunner(store, StatusHub(), executors, recorder)
    service = TradeService(pipeline, runner, store, market, quotes, executors)
    return Core(settings, service, metrics, store, audit, tracing, quotes)
