"""Edges of the logs, traces and audit rows: what a caller's malformed trace headers may write to
the log, the status a refused call's span ends with, how long an unanswering span collector may
hold a shutdown, and the audit rows of the trades carried inside one call."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import uuid

import pytest

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from support.clients import PROTOCOLS, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import trade
from tradewire.core.audit.journal import read_journal
from tradewire.core.config import TracingConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, TradewireError
from tradewire.core.logs import configure_logging
from tradewire.core.tracing import Tracing, current_trace
from tradewire.v1 import service_pb2 as spb

# A tracestate member past the W3C's 256 characters of value, and a traceparent past 512: both
# malformed, so ignored; neither is the log's business.
MARKER = "quotedbythelog"
BAD_TRACESTATE = f"ok=1,big={MARKER}{'d' * 300}"
LONG_TRACEPARENT = f"01-{'a' * 32}-{'b' * 16}-01-{MARKER}{'x' * 600}"


@pytest.fixture(scope="module")
def traced_gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("traced-edges"), env={"TRADEWIRE_TRACING__ENABLED": "true"}).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def _lines(gateway: GatewayProcess) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_callers_malformed_trace_headers_are_ignored_without_a_log_line(traced_gateway, protocol):
    correlation = f"bad-trace-{protocol}-{uuid.uuid4().hex[:8]}"
    client = make_client(protocol, traced_gateway)
    try:
        for headers in ({"traceparent": f"00-{uuid.uuid4().hex}-{'c' * 16}-01", "tracestate": BAD_TRACESTATE},
                        {"traceparent": LONG_TRACEPARENT}):
            await client.unary("GetPositions", spb.GetPositionsRequest(), traced_gateway.key("alice"),
                               headers={**headers, "x-correlation-id": correlation})
    finally:
        await client.close()

    def calls() -> list[dict]:
        return [line for line in _lines(traced_gateway)
                if line["msg"] == "call" and line.get("correlation_id") == correlation]

    wait_until(lambda: len(calls()) == 2, what="both access lines")
    assert MARKER not in traced_gateway.log_text()
    assert not [line for line in _lines(traced_gateway) if line["logger"].startswith("opentelemetry.trace")]


def test_with_tracing_off_a_trades_malformed_tracestate_is_dropped_without_a_log_line():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        tracing = Tracing(TracingConfig())
        ctx = CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", headers={
            "traceparent": f"00-{uuid.uuid4().hex}-{'c' * 16}-01", "tracestate": BAD_TRACESTATE})
        with tracing.call_span(ctx):
            parent = current_trace()  # (what a trade's quote request or webhook is sent with)
    finally:
        configure_logging("INFO")
    assert parent is not None and len(parent.span_context.trace_state) == 0
    assert stream.getvalue() == ""


def test_a_refused_calls_span_has_its_outcome_for_status_not_the_errors_text():
    tracing = Tracing(TracingConfig(enabled=True))
    spans = InMemorySpanExporter()
    tracing._provider.add_span_processor(SimpleSpanProcessor(spans))
    ctx = CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", headers={})
    with pytest.raises(TradewireError):
        with tracing.call_span(ctx):  # as the pipeline ends a refused call: its outcome, then the error goes on
            try:
                raise TradewireError("VALIDATION_FAILED", f"amount: not a decimal ({MARKER})")
            finally:
                tracing.set_outcome(ctx, Code.INVALID_ARGUMENT, "VALIDATION_FAILED")
    (span,) = spans.get_finished_spans()
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "INVALID_ARGUMENT")


@pytest.fixture
def unanswering_collector():
    """A listener that takes connections and never answers them."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                taken.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"
    listener.close()
    for connection in taken:
        connection.close()


def test_a_collector_that_does_not_answer_does_not_hold_the_shutdown(unanswering_collector):
    tracing = Tracing(TracingConfig(enabled=True, otlp_endpoint=unanswering_collector))
    now = time.time_ns()
    tracing.stage_span("TRADE_STATUS_FILLED", now - 1_000_000, now, {"tradewire.request_id": "held"})
    started = time.monotonic()
    tracing.shutdown()
    # (the exporter alone waits out its 10 s timeout: past a shutdown deadline of a few seconds)
    assert time.monotonic() - started < 3


def _item_rows(gateway: GatewayProcess, correlation_id: str) -> list:
    """The audit rows of the trades and cancels carried inside the call with ``correlation_id``."""
    return [event for event in read_journal(gateway.workdir / "data" / "audit.jsonl")
            if event.table == "tw_requests" and event.columns.get("correlation_id") == correlation_id
            and "." in event.symbols["method"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_trade_of_a_batch_is_an_audit_row_of_its_own_id(gateway, protocol):
    correlation = f"batch-items-{protocol}-{uuid.uuid4().hex[:8]}"
    twice = f"twice-{uuid.uuid4().hex[:8]}"
    # refused request ids (none is recorded) and one trade sent twice: rows alike but for their order
    items = [trade(f"bad id {i}") for i in range(20)] + [trade(twice), trade(twice)]
    client = make_client(protocol, gateway)
    try:
        await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items), gateway.key("alice"),
                           headers={"x-correlation-id": correlation})
    finally:
        await client.close()
    wait_until(lambda: len(_item_rows(gateway, correlation)) == len(items), what="a row per batch item")
    # QuestDB keeps one row per (ts, event_id), its ts in microseconds: each item's must be its own
    assert len({event.event_id for event in _item_rows(gateway, correlation)}) == len(items)


async def test_each_message_of_a_session_is_an_audit_row_of_its_own_id(gateway):
    correlation = f"session-items-{uuid.uuid4().hex[:8]}"
    twice = f"twice-{uuid.uuid4().hex[:8]}"
    messages = [spb.TradeSessionRequest(trade=trade(twice)), spb.TradeSessionRequest(trade=trade(twice)),
                spb.TradeSessionRequest(trade=trade("bad id")), spb.TradeSessionRequest(trade=trade("bad id"))]
    client = make_client("grpc", gateway)
    try:
        await client.session(messages, gateway.key("alice"), headers={"x-correlation-id": correlation})
    finally:
        await client.close()
    wait_until(lambda: len(_item_rows(gateway, correlation)) == len(messages), what="a row per session message")
    assert len({event.event_id for event in _item_rows(gateway, correlation)}) == len(messages)
