"""The pipeline's record step: every call, auth attempt, transition and fill goes to the
metrics, the structured log and the audit trail from this one place."""

from __future__ import annotations

import time

from tradewire.core.audit import AuditSink, auth_attempt_event, fill_event, request_event, transition_event
from tradewire.core.auth.authenticator import AuthOutcome
from tradewire.core.context import CallContext
from tradewire.core.errors import Code
from tradewire.core.logs import event_logger
from tradewire.core.metrics import Metrics
from tradewire.core.order import Fill, Order
from tradewire.core.tracing import Tracing
from tradewire.v1 import trade_pb2 as pb

access_log = event_logger("tradewire.access")
trade_log = event_logger("tradewire.trade")


class Recorder:
    def __init__(self, metrics: Metrics, audit: AuditSink, tracing: Tracing, *, access_log: bool = True,
                 transition_log: bool = True, metrics_enabled: bool = True, audit_enabled: bool = True) -> None:
        self.metrics = metrics
        self.audit = audit
        self.tracing = tracing
        # Each can be switched off only so bench/ can measure what it costs.
        self.access_log_enabled = access_log
        self.transition_log_enabled = transition_log
        self.metrics_enabled = metrics_enabled
        self.audit_enabled = audit_enabled
        self._last_transition_ns: dict[tuple[str, str], int] = {}  # running trades only (tracing)
        self._routed_ns: dict[tuple[str, str], int] = {}  # when each running trade reached its executor

    def call_started(self, ctx: CallContext) -> None:
        if self.metrics_enabled:
            self.metrics.in_flight.labels(ctx.protocol.value).inc()

    def call_finished(self, ctx: CallContext, code: Code, reason: str = "") -> None:
        elapsed = time.monotonic() - ctx.started
        protocol = ctx.protocol.value
        principal = ctx.principal.label if ctx.principal else ""
        if self.metrics_enabled:
            self.metrics.in_flight.labels(protocol).dec()
            self.metrics.requests.labels(ctx.method, protocol, code.name).inc()
            self.metrics.request_seconds.labels(ctx.method, protocol).observe(elapsed)
        if self.audit_enabled:
            self.audit.emit(request_event(
                method=ctx.method, protocol=protocol, principal=principal or None, request_id=ctx.request_id,
                correlation_id=ctx.correlation_id, code=code.name, latency_us=int(elapsed * 1e6),
                reason=reason or None, ts_ns=ctx.started_unix_ns,
            ))
        if self.access_log_enabled:
            access_log.info(
                "call", request_id=ctx.request_id, correlation_id=ctx.correlation_id, trace_id=ctx.trace_id,
                method=ctx.method, protocol=protocol, code=code.name, reason=reason,
                latency_ms=round(elapsed * 1000, 3), peer=ctx.peer, principal=principal,
            )

    def auth_attempt(self, ctx: CallContext, outcome: AuthOutcome) -> None:
        if self.metrics_enabled:
            self.metrics.auth_attempts.labels("success" if outcome.ok else "failure", outcome.reason or "OK").inc()
        if not self.audit_enabled:
            return
        key_prefix = outcome.credential if outcome.credential_kind == "api_key" else None
        self.audit.emit(auth_attempt_event(
            method=ctx.method, protocol=ctx.protocol.value, outcome="success" if outcome.ok else "failure",
            correlation_id=ctx.correlation_id, request_id=ctx.request_id,
            principal=outcome.principal.id if outcome.principal else None,
            key_prefix=key_prefix[:16] if key_prefix else None, peer=ctx.peer, reason=outcome.reason,
        ))

    def rate_limited(self, bucket: str) -> None:
        if self.metrics_enabled:
            self.metrics.rate_limited.labels(bucket).inc()

    def transition(self, order: Order, event: pb.ExecutionStatus) -> None:
        stage = pb.TradeStatus.Name(event.stage)
        at_ns = event.timestamp.ToNanoseconds()
        key = (order.principal_id, order.request_id)
        if self.tracing.enabled:
            started = self._last_transition_ns.pop(key, at_ns)
            self.tracing.stage_span(stage, started, at_ns, {"tradewire.request_id": order.request_id,
                                                            "tradewire.mode": order.mode_name})
            if not event.terminal:
                self._last_transition_ns[key] = at_ns
        if self.metrics_enabled:
            self._executor_metrics(order, event, key, at_ns)
        if self.audit_enabled:
            self.audit.emit(transition_event(
                request_id=order.request_id, principal=order.principal_id, mode=order.mode_name, stage=stage,
                sequence=event.sequence, percent=event.percent_complete, message=event.message, ts_ns=at_ns,
            ))
        if self.transition_log_enabled:
            trade_log.info("transition", request_id=order.request_id, principal=order.principal_id,
                           mode=order.mode_name, stage=stage, sequence=event.sequence,
                           percent=event.percent_complete)

    def _executor_metrics(self, order: Order, event: pb.ExecutionStatus, key: tuple[str, str], at_ns: int) -> None:
        if event.stage == pb.TRADE_STATUS_ROUTED:
            self._routed_ns[key] = at_ns
        if not event.terminal:
            return
        self.metrics.trades.labels(order.mode_name, pb.TradeStatus.Name(event.stage)).inc()
        executor = order.mode_name.lower()
        routed = self._routed_ns.pop(key, None)
        if routed is not None:
            self.metrics.executor_seconds.labels(executor).observe((at_ns - routed) / 1e9)
        if event.stage != pb.TRADE_STATUS_FILLED:
            reason = event.result.error.reason or pb.TradeStatus.Name(event.stage)
            self.metrics.executor_failures.labels(executor, reason).inc()

    def fill(self, order: Order, fill: Fill, result: pb.TradeResult) -> None:
        if not self.audit_enabled:
            return
        self.audit.emit(fill_event(
            request_id=order.request_id, principal=order.principal_id, mode=order.mode_name,
            input_mint=order.input_mint.address, output_mint=order.output_mint.address,
            amount_in=fill.amount_in, amount_out=fill.amount_out, fee_lamports=fill.fees.total_lamports,
            signature=fill.signature or None, slot=fill.slot or None, ts_ns=result.updated_at.ToNanoseconds(),
        ))
