"""A webhook's trace context is kept with it in the SQLite outbox: a delivery made after a
restart (a new dispatcher over the reopened store) carries the trade's trace, and a database
from before it was kept opens and delivers (httpx.MockTransport)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from support.trace_context import CALLER_SPAN, TRACE_ID, TRACEPARENT, TRACESTATE
from tradewire.core.config import TracingConfig, WebhooksConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.tracing import Tracing, current_trace, trace_from_text, trace_to_text
from tradewire.core.webhooks import WebhookDispatcher, webhook_body
from tradewire.v1 import trade_pb2 as pb

HOOK_URL = "http://hooks.test/alice"
SECRET = b"s3cret"

# webhook_outbox as created before the trace context was kept
OLD_OUTBOX_TABLE = """
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    UNIQUE (principal, request_id, url)
);
"""


def call(**headers: str) -> CallContext:
    return CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", headers=headers)


def traceparent_parts(request: httpx.Request) -> tuple[str, str, str, str]:
    version, trace_id, span_id, flags = request.headers["traceparent"].split("-")
    return version, trace_id, span_id, flags


def dispatcher_over(store: SqliteStore, posts: list[httpx.Request], tracer=None) -> WebhookDispatcher:
    """A dispatcher for alice's endpoint, recording what it POSTs (answered 200)."""
    def answer(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200)

    config = WebhooksConfig.model_validate({"endpoints": [{"principal": "alice", "url": HOOK_URL}]})
    return WebhookDispatcher(store, config, SECRET, client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                             tracer=tracer)


def finished(store: SqliteStore, request_id: str, outbox) -> pb.TradeResult:
    """Claim a trade and save it FILLED with ``outbox`` (``outbox(result)`` makes the entries)."""
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), outbox(result))
    return result


async def deliver_all(dispatcher: WebhookDispatcher) -> None:
    assert await dispatcher.flush(timeout=5)
    await dispatcher.close()


def test_the_stored_form_reads_back_as_the_same_span():
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        text = trace_to_text(current_trace())
    assert text == f"{TRACEPARENT} {TRACESTATE}"
    restored = trace_from_text(text).span_context
    assert (format(restored.trace_id, "032x"), format(restored.span_id, "016x")) == (TRACE_ID, CALLER_SPAN)
    assert restored.trace_state.to_header() == TRACESTATE and int(restored.trace_flags) == 1
    assert trace_to_text(trace_from_text(TRACEPARENT)) == TRACEPARENT  # no tracestate: none made up
    assert trace_to_text(None) is None and trace_from_text(None) is None
    assert trace_from_text("not a traceparent") is None


def test_an_entry_keeps_its_trace_context_when_the_store_is_closed_and_reopened(tmp_path: Path):
    path = tmp_path / "trades.db"
    store = SqliteStore(path)
    traced = OutboxEntry(id="d-traced", principal_id="alice", request_id="t-1", url=HOOK_URL, body=b"{}",
                         trace=f"{TRACEPARENT} {TRACESTATE}")
    untraced = OutboxEntry(id="d-untraced", principal_id="alice", request_id="t-2", url=HOOK_URL, body=b"{}")
    finished(store, "t-1", lambda result: [traced])
    finished(store, "t-2", lambda result: [untraced])
    store.close()

    reopened = SqliteStore(path)
    assert {e.id: e.trace for e in reopened.outbox_entries()} == {"d-traced": traced.trace, "d-untraced": None}
    taken = reopened.outbox_take_due(now_ns=2**62, limit=10, lease_until_ns=2**62 + 1)
    assert {e.id: e.trace for e in taken} == {"d-traced": traced.trace, "d-untraced": None}


async def test_a_database_from_before_the_trace_column_opens_and_delivers(tmp_path: Path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_OUTBOX_TABLE)
    body = webhook_body("d-old", "alice", pb.TradeResult(request_id="t-old", status=pb.TRADE_STATUS_FILLED))
    old.execute("INSERT INTO webhook_outbox (id, principal, request_id, url, body, next_attempt_ns, created_ns,"
                " updated_ns) VALUES ('d-old', 'alice', 't-old', ?, ?, 1, 1, 1)", (HOOK_URL, body))
    old.commit()
    old.close()

    store = SqliteStore(path)
    assert [(e.id, e.trace) for e in store.outbox_entries()] == [("d-old", None)]
    finished(store, "t-new", lambda result: [OutboxEntry(id="d-new", principal_id="alice", request_id="t-new",
                                                         url=HOOK_URL, body=b"{}", trace=TRACEPARENT)])
    posts: list[httpx.Request] = []
    await deliver_all(dispatcher_over(store, posts))

    by_delivery = {post.headers["tradewire-delivery"]: post for post in posts}
    assert by_delivery.keys() == {"d-old", "d-new"}
    assert "traceparent" not in by_delivery["d-old"].headers and "tracestate" not in by_delivery["d-old"].headers
    assert traceparent_parts(by_delivery["d-new"])[1] == TRACE_ID
    assert store.outbox_counts() == {"pending": 0, "delivered": 2, "dead": 0}


async def test_a_delivery_after_a_restart_carries_the_trades_trace_with_a_span_id_of_its_own(tmp_path: Path):
    path = tmp_path / "trades.db"
    store = SqliteStore(path)
    before_restart = dispatcher_over(store, [])
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        finished(store, "t-1", lambda result: before_restart.entries("alice", "", result))
    await before_restart.close()  # never started: the process stopped before delivering
    store.close()

    posts: list[httpx.Request] = []
    reopened = SqliteStore(path)
    await deliver_all(dispatcher_over(reopened, posts))

    (post,) = posts
    version, trace_id, span_id, flags = traceparent_parts(post)
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != CALLER_SPAN
    assert post.headers["tracestate"] == TRACESTATE
    assert TRACE_ID.encode() not in post.content  # a header only, never in the signed body


async def test_with_tracing_on_a_delivery_after_a_restart_continues_the_calls_span(tmp_path: Path):
    path = tmp_path / "trades.db"
    store = SqliteStore(path)
    before_restart = dispatcher_over(store, [])
    tracing = Tracing(TracingConfig(enabled=True))  # no OTLP endpoint: nothing exported
    ctx = call(traceparent=TRACEPARENT)
    with tracing.call_span(ctx):
        finished(store, "t-1", lambda result: before_restart.entries("alice", "", result))
        [stored] = store.outbox_entries()
    tracing.shutdown()
    await before_restart.close()
    store.close()

    posts: list[httpx.Request] = []
    await deliver_all(dispatcher_over(SqliteStore(path), posts))

    (post,) = posts
    server_span = stored.trace.split("-")[2]  # the call's span (the caller's child) is what is kept
    _, trace_id, span_id, _ = traceparent_parts(post)
    assert trace_id == TRACE_ID == ctx.trace_id and server_span != CALLER_SPAN
    assert span_id not in (server_span, CALLER_SPAN)


async def test_given_the_process_tracer_each_post_is_a_client_span_of_the_trades_trace(tmp_path: Path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    store = SqliteStore(tmp_path / "trades.db")
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT)):
        finished(store, "t-1", lambda result: dispatcher_over(store, []).entries("alice", "", result))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    posts: list[httpx.Request] = []
    await deliver_all(dispatcher_over(store, posts, provider.get_tracer("test")))  # as build_webhooks passes it

    (post,) = posts
    (span,) = spans.get_finished_spans()
    _, trace_id, span_id, _ = traceparent_parts(post)
    assert span.kind is SpanKind.CLIENT and span.name == "POST"
    assert format(span.context.trace_id, "032x") == trace_id == TRACE_ID
    assert format(span.context.span_id, "016x") == span_id and format(span.parent.span_id, "016x") == CALLER_SPAN
