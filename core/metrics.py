"""Prometheus metrics (prometheus-client), named and labelled by Prometheus conventions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# A LIVE trade waits for its confirmation (seconds to a minute; a blockhash lasts ~60-90 s):
# past 10 s every one would be in +Inf alone.
_EXECUTOR_BUCKETS = (*_LATENCY_BUCKETS, 20, 30, 60, 120)
# A webhook attempt lasts up to [webhooks] timeout_s (at most MAX_WEBHOOK_TIMEOUT_S): slow
# receivers must not all land in +Inf.
_WEBHOOK_BUCKETS = (*_LATENCY_BUCKETS, 20, 30, 60)
# A call lasts as long: a LIVE ExecuteTrade waits for its trade's end, and a stream's duration is
# its whole life (minutes to hours).
_REQUEST_BUCKETS = (*_EXECUTOR_BUCKETS, 300, 900, 3600)


class Metrics:
    """All of tradewire's metrics, in their own registry (one per service instance)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("tradewire_requests_total", "RPCs answered", ["method", "protocol", "code"], registry=r)
        self.request_seconds = Histogram("tradewire_request_duration_seconds", "RPC latency",
                                         ["method", "protocol"], buckets=_REQUEST_BUCKETS, registry=r)
        self.in_flight = Gauge("tradewire_requests_in_flight", "RPCs being served", ["protocol"], registry=r)
        # Requests no method received (no route, no such gRPC method, headers too large): by the
        # status answered only, never by path or method name, so a scanner adds no series.
        self.unrouted_requests = Counter("tradewire_unrouted_requests_total",
                                         "Requests refused before they reached a method, by the status answered",
                                         ["protocol", "code"], registry=r)
        self.auth_attempts = Counter("tradewire_auth_attempts_total", "Authentication attempts",
                                     ["outcome", "reason"], registry=r)
        self.rate_limited = Counter("tradewire_rate_limited_total", "Requests refused by a rate limit",
                                    ["bucket"], registry=r)
        self.trades = Counter("tradewire_trades_total", "Trades by final status", ["mode", "status"], registry=r)
        self.trades_running = Gauge("tradewire_trades_in_flight", "Trades executing now", registry=r)
        self.executor_seconds = Histogram("tradewire_executor_duration_seconds", "Executor time per trade",
                                          ["executor"], buckets=_EXECUTOR_BUCKETS, registry=r)
        self.executor_failures = Counter(
            "tradewire_executor_failures_total",
            "Trades that ended unfilled (failed, rejected or expired) because of their executor or its upstreams, "
            "by the error's reason; a caller's cancellation or deadline is not counted (see tradewire_trades_total)",
            ["executor", "reason"], registry=r)
        self.stream_subscribers = Gauge("tradewire_stream_subscribers", "Open status streams", registry=r)
        # in-flight registry, cancellation, retries, batches (issue 7)
        self.in_flight_limit = Gauge("tradewire_trades_in_flight_limit", "Limit on running trades",
                                     ["scope"], registry=r)
        self.in_flight_refused = Counter("tradewire_trades_refused_total",
                                         "Trades refused because an in-flight limit was reached", ["scope"],
                                         registry=r)
        self.cancel_requests = Counter("tradewire_cancel_requests_total", "Cancellation requests by outcome",
                                       ["source", "outcome"], registry=r)
        self.executor_retries = Counter("tradewire_executor_retries_total",
                                        "Executor attempts retried after a transient error before send",
                                        ["executor", "reason"], registry=r)
        self.batch_items = Counter("tradewire_batch_items_total", "ExecuteTradeBatch items by outcome",
                                   ["outcome"], registry=r)
        # streams and sessions
        self.sessions_open = Gauge("tradewire_sessions_open", "Open TradeSession streams", registry=r)
        self.stream_closes = Counter("tradewire_stream_closes_total", "Streams ended, by why",
                                     ["kind", "reason"], registry=r)
        self.event_loop_tasks = Gauge("tradewire_event_loop_tasks", "asyncio tasks alive in the serving loop",
                                      registry=r)
        self.memory_releases = Counter("tradewire_memory_releases_total",
                                       "Freed heap returned to the OS after a burst of streams closed", registry=r)
        # webhooks
        self.webhook_deliveries = Counter("tradewire_webhook_deliveries_total",
                                          "Webhook delivery attempts by outcome", ["outcome"], registry=r)
        self.webhook_outbox_depth = Gauge("tradewire_webhook_outbox_depth", "Webhooks in the outbox", ["state"],
                                          registry=r)
        self.webhook_seconds = Histogram("tradewire_webhook_delivery_duration_seconds", "Webhook POST latency",
                                         buckets=_WEBHOOK_BUCKETS, registry=r)
        # replicas on a shared store (core/shared/redis_replicas.py), and its outages
        self.replicas_alive = Gauge("tradewire_replicas_alive",
                                    "Replicas beating on the shared store, this one included "
                                    "(0 without a shared store: [shared] redis_url)", registry=r)
        self.trades_handed_over = Counter("tradewire_trades_handed_over_total",
                                          "Running trades moved between replicas: adopted here from one presumed "
                                          "dead, or lost by this one to another", ["direction"], registry=r)
        self.trades_awaiting_store = Gauge("tradewire_trades_awaiting_store",
                                           "Trades cut off by a shared-store outage (their callers were answered "
                                           "STORE_UNAVAILABLE) that end once the store answers again", registry=r)
        # shutdown
        self.draining = Gauge("tradewire_draining", "1 while shutting down (new calls are refused)", registry=r)
