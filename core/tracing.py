"""OpenTelemetry spans for calls, pipeline steps and executor stages.

Off by default, and then free: every hook returns at once without touching OpenTelemetry.
When enabled, a call's span continues the caller's W3C ``traceparent`` (on every protocol:
the header/metadata reaches core unchanged) and spans are exported over OTLP/HTTP when an
endpoint is configured. Attribute names follow the OpenTelemetry RPC conventions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tradewire.core.config import TracingConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, http_status_of

_RPC_SYSTEM = {Protocol.GRPC: "grpc", Protocol.GRPC_WEB: "grpc", Protocol.CONNECT: "connect_rpc",
               Protocol.HTTP_JSON: "http"}
SERVICE = "tradewire.v1.TradeExecutionService"
# Connect's codes are gRPC's in snake case, CANCELLED spelled the American way.
_CONNECT_ERROR_CODE = {code: "canceled" if code is Code.CANCELLED else code.name.lower() for code in Code}


class Tracing:
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
            yield
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(ctx.headers)
        attributes = {"rpc.system": _RPC_SYSTEM[ctx.protocol], "rpc.service": SERVICE, "rpc.method": ctx.method,
                      "tradewire.protocol": ctx.protocol.value}
        with self._tracer.start_as_current_span(f"{SERVICE}/{ctx.method}", context=parent, kind=SpanKind.SERVER,
                                                attributes=attributes, record_exception=False) as span:
            ctx.trace_id = format(span.get_span_context().trace_id, "032x")
            yield

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

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # flushes what the batch processor still holds
