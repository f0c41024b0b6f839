"""OpenTelemetry spans for calls, pipeline steps and executor stages.

Off by default, and then free: every hook returns at once without touching OpenTelemetry
(only a request going out for a call that sent a ``traceparent`` uses its propagator: below).
When enabled, a call's span continues the caller's W3C ``traceparent`` (on every protocol:
the header/metadata reaches core unchanged) and spans are exported over OTLP/HTTP when an
endpoint is configured. Attribute names follow the OpenTelemetry RPC conventions.

Outbound HTTP requests made for a call or the trade it started (quotes, RPC, webhooks) carry
the call's trace context (:func:`outbound_trace_headers`): with tracing on, the call span's
trace, every call having one; with tracing off, the caller's ``traceparent`` if it sent one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tradewire.core.config import TracingConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, http_status_of

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext, Tracer

_RPC_SYSTEM = {Protocol.GRPC: "grpc", Protocol.GRPC_WEB: "grpc", Protocol.CONNECT: "connect_rpc",
               Protocol.HTTP_JSON: "http"}
SERVICE = "tradewire.v1.TradeExecutionService"
# How long a shutdown waits for the spans not exported yet. The exporter alone would wait out its
# timeout (10 s) and its retries on a collector that does not answer, holding the process past its
# shutdown deadline ([shutdown] deadline_s keeps 0.5 s for what comes after the audit's flush).
SHUTDOWN_WAIT_S = 0.5
# Connect's codes are gRPC's in snake case, CANCELLED spelled the American way.
_CONNECT_ERROR_CODE = {code: "canceled" if code is Code.CANCELLED else code.name.lower() for code in Code}


@dataclass(frozen=True)
class TraceParent:
    """The span a call's outbound requests descend from, and the tracer that gives each request
    a client span of its own (None with tracing off: each request gets a fresh span id)."""

    span_context: SpanContext
    tracer: Tracer | None = None


# Set for the length of a call, and inherited by the tasks it starts (its trade's): the call's
# span (tracing on), or the caller's trace headers, read only if a request goes out (tracing off).
_call_trace: ContextVar[TraceParent | dict[str, str] | None] = ContextVar("tradewire_call_trace", default=None)


def current_trace() -> TraceParent | None:
    """The trace context of the call being served, or of the trade running in this task: to
    pass to :func:`outbound_trace_headers`, now or later (a queued webhook)."""
    found = _call_trace.get()
    return _callers_trace(found) if isinstance(found, dict) else found


def trace_to_text(parent: TraceParent | None) -> str | None:
    """``parent``'s span as one string to store with work done later (a webhook in the outbox):
    its W3C ``traceparent``, then its ``tracestate`` after a space when it has one (a
    traceparent has no spaces). :func:`trace_from_text` reads it back."""
    if parent is None:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    span = trace.NonRecordingSpan(parent.span_context)
    TraceContextTextMapPropagator().inject(headers, trace.set_span_in_context(span))
    return " ".join(headers[name] for name in ("traceparent", "tracestate") if name in headers) or None


def trace_from_text(text: str | None, tracer: Tracer | None = None) -> TraceParent | None:
    """The span :func:`trace_to_text` stored, as a parent for :func:`outbound_trace_headers`:
    each request a client span of ``tracer`` (the process's, tracing on), else a span id of
    its own."""
    if not text:
        return None
    traceparent, _, tracestate = text.partition(" ")
    return _callers_trace({"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}, tracer)


@contextlib.contextmanager
def outbound_trace_headers(method: str, host: str, parent: TraceParent | None) -> Iterator[dict[str, str]]:
    """``traceparent`` (and the caller's ``tracestate``) for one outbound HTTP request made for
    ``parent``'s call: the same trace id, a span id of the request's own. With tracing on the
    block is the request's client span. No headers without a trace context."""
    if parent is None:
        yield {}
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    if parent.tracer is None:
        request_span = trace.NonRecordingSpan(_with_fresh_span_id(parent.span_context))
        TraceContextTextMapPropagator().inject(headers, trace.set_span_in_context(request_span))
        yield headers
        return
    with parent.tracer.start_as_current_span(
            method, context=trace.set_span_in_context(trace.NonRecordingSpan(parent.span_context)),
            kind=trace.SpanKind.CLIENT, attributes={"http.request.method": method, "server.address": host},
            record_exception=False):
        TraceContextTextMapPropagator().inject(headers)
        yield headers


def _with_fresh_span_id(parent: SpanContext) -> SpanContext:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanContext

    return SpanContext(parent.trace_id, RandomIdGenerator().generate_span_id(), is_remote=False,
                       trace_flags=parent.trace_flags, trace_state=parent.trace_state)


def _trace_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The caller's trace headers, if it sent a ``traceparent`` (kept apart from its credentials)."""
    if "traceparent" not in headers:
        return None
    return {name: headers[name] for name in ("traceparent", "tracestate") if name in headers}


def _callers_trace(headers: dict[str, str], tracer: Tracer | None = None) -> TraceParent | None:
    """The caller's span, from a well-formed ``traceparent`` (its ``tracestate`` kept if well-formed);
    ``tracer``: see :class:`TraceParent`."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    span_context = trace.get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    return TraceParent(span_context, tracer) if span_context.is_valid else None


def _end_of_call(token: Token) -> None:
    with contextlib.suppress(ValueError):  # a stream may be closed from another context
        _call_trace.reset(token)


class Tracing:
    @property
    def tracer(self) -> Tracer | None:
        """The process's tracer (None with tracing off): for work that outlives a call's context."""
        return self._tracer

    def __init__(self, config: TracingConfig) -> None:
        self.enabled = config.enabled
        self._tracer = None
        self._provider = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
        if config.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint)))
        self._tracer = self._provider.get_tracer("tradewire")

    @contextlib.contextmanager
    def call_span(self, ctx: CallContext) -> Iterator[None]:
        """The server span of one call, child of the caller's traceparent when there is one."""
        if self._tracer is None:
            token = _call_trace.set(_trace_headers(ctx.headers))
            try:
                yield
            finally:
                _end_of_call(token)
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(ctx.headers)
        attributes = {"rpc.system": _RPC_SYSTEM[ctx.protocol], "rpc.service": SERVICE, "rpc.method": ctx.method,
                      "tradewire.protocol": ctx.protocol.value}
        # (its status is the call's outcome, set_outcome's: not the text of the exception that ends it)
        with self._tracer.start_as_current_span(f"{SERVICE}/{ctx.method}", context=parent, kind=SpanKind.SERVER,
                                                attributes=attributes, record_exception=False,
                                                set_status_on_exception=False) as span:
            ctx.trace_id = format(span.get_span_context().trace_id, "032x")
            token = _call_trace.set(TraceParent(span.get_span_context(), self._tracer))
            try:
                yield
            finally:
                _end_of_call(token)

    def set_outcome(self, ctx: CallContext, code: Code, reason: str) -> None:
        """The call's outcome on its span, as its protocol's convention names it: gRPC's status
        code (gRPC, gRPC-Web), Connect's error code (on errors only) or the HTTP status."""
        if self._tracer is None:
            return
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        span = trace.get_current_span()
        if ctx.protocol is Protocol.HTTP_JSON:
            span.set_attribute("http.response.status_code", http_status_of(code, reason))
        elif ctx.protocol is Protocol.CONNECT:
            if code is not Code.OK:
                span.set_attribute("rpc.connect_rpc.error_code", _CONNECT_ERROR_CODE[code])
        else:
            span.set_attribute("rpc.grpc.status_code", int(code))
        if reason:
            span.set_attribute("tradewire.reason", reason)
        if code is not Code.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))

    @contextlib.contextmanager
    def step_span(self, name: str) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(f"tradewire.{name}", record_exception=False):
            yield

    def stage_span(self, stage: str, start_ns: int, end_ns: int, attributes: dict[str, str | int]) -> None:
        """A finished executor stage: the time from the previous transition to this one."""
        if self._tracer is None:
            return
        span = self._tracer.start_span(f"tradewire.stage.{stage}", start_time=start_ns, attributes=attributes)
        span.end(end_time=end_ns)

    def shutdown(self, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """Flushes what the batch processor still holds, for ``timeout_s`` at most: what a
        collector has not taken by then is dropped (its export goes on in a daemon thread)."""
        if self._provider is None:
            return
        flushing = threading.Thread(target=self._provider.shutdown, name="tradewire-tracing-shutdown", daemon=True)
        flushing.start()
        flushing.join(timeout_s)
