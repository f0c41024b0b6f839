"""The pipeline's record step: every call, auth attempt, transition and fill goes to the
metrics, the structured log and the audit trail from this one place."""

from __future__ import annotations

import time
from urllib.parse import unquote

from tradewire.core.audit import AuditSink, fill_event
from tradewire.core.audit.events import (REDACTED, looks_like_credential, redacted, trusted_auth_attempt_event,
                                         trusted_request_event, trusted_transition_event)
from tradewire.core.auth.authenticator import AuthOutcome
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, shortened
from tradewire.core.lifecycle import ns_of
from tradewire.core.logs import event_logger
from tradewire.core.metrics import Metrics
from tradewire.core.order import Fill, Order
from tradewire.core.tracing import Tracing
from tradewire.v1 import trade_pb2 as pb

access_log = event_logger("tradewire.access")
trade_log = event_logger("tradewire.trade")

# Stage names once, not pb.TradeStatus.Name (an enum-descriptor lookup) per event.
STAGE_NAMES: dict[int, str] = {number: name for name, number in pb.TradeStatus.items()}


def _stage_name(stage: int) -> str:
    return STAGE_NAMES.get(stage) or pb.TradeStatus.Name(stage)


# An unrouted request's path (or gRPC method name) in its log line: this many characters at most.
# A credential that begins within them is recognised from at most _CREDENTIAL_LOOKAHEAD more (an
# API key takes 28, a JWT its header): the rest of a long path is never searched (64 KiB of it
# would take ~10 ms).
_LOGGED_PATH_CHARS = 128
_CREDENTIAL_LOOKAHEAD = 256
_LOGGED_HTTP_METHOD_CHARS = 16


def _loggable_path(path: str) -> str:
    """``path`` as a log line may carry it: cut to 128 characters, and redacted (as a 404 body
    is) before the cut, so that a key the cut goes through is not logged in part."""
    window = path[:_LOGGED_PATH_CHARS + _CREDENTIAL_LOOKAHEAD]
    if "%" in window and looks_like_credential(unquote(window)):  # (a key with %5F for its underscores)
        return REDACTED
    return shortened(redacted(window), _LOGGED_PATH_CHARS)


# Why a trade may end unfilled through no fault of its executor: its caller cancelled it
# (CancelTrade; a call given up) or the call's deadline passed before it was sent.
_CALLER_REASONS = frozenset({"TRADE_CANCELLED", "CANCELLED", "DEADLINE_EXCEEDED"})


def _ended_by_caller(order: Order, event: pb.ExecutionStatus, at_ns: int) -> bool:
    """A terminal event the caller brought about (not counted as an executor failure): a
    cancellation, the call's deadline, or the order's own deadline passing before anything was
    sent. (TRADE_EXPIRED also names an executor's expiry — a blockhash that ran out after the
    send — which has a signature, or comes before the order's deadline.)"""
    if event.stage == pb.TRADE_STATUS_CANCELLED:
        return True
    reason = event.result.error.reason
    if reason in _CALLER_REASONS:
        return True
    deadline = order.deadline_unix_ns
    return (reason == "TRADE_EXPIRED" and deadline is not None and at_ns >= deadline
            and not event.result.signature)


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
        # Prometheus children per label tuple: labels() hashes, validates and locks on every call.
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def call_started(self, ctx: CallContext) -> None:
        if self.metrics_enabled:
            self._child(self.metrics.in_flight, ctx.protocol.value).inc()

    def call_finished(self, ctx: CallContext, code: Code, reason: str = "") -> None:
        elapsed = time.monotonic() - ctx.started
        if self.metrics_enabled:
            metrics, protocol = self.metrics, ctx.protocol.value
            self._child(metrics.in_flight, protocol).dec()
            self._child(metrics.requests, ctx.method, protocol, code.name).inc()
            self._child(metrics.request_seconds, ctx.method, protocol).observe(elapsed)
        self._on_record(ctx, ctx.method, ctx.trade_request_id, code, reason, elapsed, ctx.started_unix_ns)

    def item_finished(self, ctx: CallContext, part: str, trade_request_id: str, code: Code, reason: str,
                      started: float) -> None:
        """One trade or cancel carried inside a call (a batch's item, a session's message): an audit
        row and an access line of its own, under the call's ids, named ``<method>.<part>`` (e.g.
        ``TradeSession.trade``) — so a refused item is on record as a refused ExecuteTrade is.
        ``started``: time.monotonic() when the item was taken up. The request metrics count calls,
        not items. Each row is the item's by its ordinal in the call (its audit event id)."""
        elapsed = time.monotonic() - started
        ctx.items_recorded += 1  # (kept on the call: a follower recording after the call ended leaves nothing)
        item = ctx.items_recorded
        self._on_record(ctx, f"{ctx.method}.{part}", trade_request_id, code, reason, elapsed,
                        time.time_ns() - int(elapsed * 1e9), item)

    def _on_record(self, ctx: CallContext, method: str, trade_request_id: str, code: Code, reason: str,
                   elapsed: float, started_unix_ns: int, item: int | None = None) -> None:
        protocol = ctx.protocol.value
        # The principal as every audit table and log line names it; its credential's label beside it.
        principal, key_label = (ctx.principal.id, ctx.principal.label) if ctx.principal else ("", "")
        if self.audit_enabled:
            self.audit.emit(trusted_request_event(
                method, protocol, principal or None, ctx.request_id, ctx.correlation_id, code.name,
                int(elapsed * 1e6), reason or None, started_unix_ns or time.time_ns(), key_label or None,
                trade_request_id or None, item,
            ))
        if self.access_log_enabled:
            access_log.info(
                "call", request_id=ctx.request_id, correlation_id=ctx.correlation_id, trace_id=ctx.trace_id,
                method=method, protocol=protocol, code=code.name, reason=reason,
                # (the peer may come from a proxy's X-Forwarded-For: redacted as its audit row is)
                latency_ms=round(elapsed * 1000, 3), peer=redacted(ctx.peer), principal=principal, key_label=key_label,
                trade_request_id=trade_request_id,
            )

    def unrouted(self, protocol: Protocol, code: str, http_method: str, path: str, peer: str) -> None:
        """A request refused before it reached a method: no route took its path (or its HTTP
        method), its headers were too large, or native gRPC has no such method. Counted by
        protocol and the status answered (``code``: "404", "UNIMPLEMENTED"), and logged as a
        line of its own, "unrouted", with the path (a gRPC method name) cut and redacted."""
        if self.metrics_enabled:
            self._child(self.metrics.unrouted_requests, protocol.value, code).inc()
        # No audit row: the audit trail is of calls and the principals who made them, and these
        # reached no method and named none. (No request id of its own: none is given before
        # routing; the logger adds a call's ids, were there one.)
        if self.access_log_enabled:
            access_log.info("unrouted", protocol=protocol.value, code=code,
                            http_method=shortened(http_method, _LOGGED_HTTP_METHOD_CHARS),
                            path=_loggable_path(path), peer=redacted(peer))

    def auth_attempt(self, ctx: CallContext, outcome: AuthOutcome) -> None:
        if self.metrics_enabled:
            self._child(self.metrics.auth_attempts, "success" if outcome.ok else "failure", outcome.reason or "OK").inc()
        if not self.audit_enabled:
            return
        # the key's public id when there is one (a malformed key has none: its reason says so)
        key_prefix = outcome.credential if outcome.credential_kind == "api_key" and \
            outcome.credential.startswith("tw_") else None
        self.audit.emit(trusted_auth_attempt_event(
            ctx.method, ctx.protocol.value, "success" if outcome.ok else "failure", ctx.correlation_id,
            ctx.request_id, outcome.principal.id if outcome.principal else None,
            key_prefix[:16] if key_prefix else None, ctx.peer, outcome.reason, time.time_ns(),
        ))

    def rate_limited(self, bucket: str) -> None:
        if self.metrics_enabled:
            self._child(self.metrics.rate_limited, bucket).inc()

    def transition(self, order: Order, event: pb.ExecutionStatus, at_ns: int | None = None) -> None:
        """``at_ns``: the event's timestamp in ns, when the caller has it (saves reading it back)."""
        stage = _stage_name(event.stage)
        if at_ns is None:
            at_ns = ns_of(event.timestamp)
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
            self.audit.emit(trusted_transition_event(
                order.request_id, order.principal_id, order.mode_name, stage, event.sequence,
                event.percent_complete, event.message, at_ns,
            ))
        if self.transition_log_enabled:
            # (request_id is the call's id on every line; the client's trade id has its own name)
            trade_log.info("transition", trade_request_id=order.request_id, principal=order.principal_id,
                           mode=order.mode_name, stage=stage, sequence=event.sequence,
                           percent=event.percent_complete)

    def forget(self, order: Order) -> None:
        """A trade that ends elsewhere (taken over by another replica, left for the restart): its
        timings, kept until its end, would otherwise stay for good."""
        key = (order.principal_id, order.request_id)
        self._routed_ns.pop(key, None)
        self._last_transition_ns.pop(key, None)

    def _executor_metrics(self, order: Order, event: pb.ExecutionStatus, key: tuple[str, str], at_ns: int) -> None:
        if event.stage == pb.TRADE_STATUS_ROUTED:
            self._routed_ns[key] = at_ns
        if not event.terminal:
            return
        stage = _stage_name(event.stage)
        self._child(self.metrics.trades, order.mode_name, stage).inc()
        executor = order.mode_name.lower()
        routed = self._routed_ns.pop(key, None)
        if routed is not None:
            self._child(self.metrics.executor_seconds, executor).observe((at_ns - routed) / 1e9)
        if event.stage != pb.TRADE_STATUS_FILLED and not _ended_by_caller(order, event, at_ns):
            reason = event.result.error.reason or stage
            self._child(self.metrics.executor_failures, executor, reason).inc()

    def fill(self, order: Order, fill: Fill, result: pb.TradeResult) -> None:
        if not self.audit_enabled:
            return
        self.audit.emit(fill_event(
            request_id=order.request_id, principal=order.principal_id, mode=order.mode_name,
            input_mint=order.input_mint.address, output_mint=order.output_mint.address,
            amount_in=fill.amount_in, amount_out=fill.amount_out, fee_lamports=fill.fees.total_lamports,
            signature=fill.signature or None, slot=fill.slot or None, ts_ns=ns_of(result.updated_at),
        ))
