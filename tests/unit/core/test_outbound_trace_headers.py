"""The W3C trace context of a call, carried to the HTTP requests made for it: the quote API,
the LIVE upstreams (RPC, Jito, Jupiter swap) and the trade's webhooks (httpx.MockTransport)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from support.trading import eventually
from support.trace_context import CALLER_SPAN, TRACE_ID, TRACEPARENT, TRACESTATE
from tradewire.core.config import PaperConfig, TracingConfig, WebhooksConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.breaker import CircuitBreaker
from tradewire.core.executors.live.upstreams import HttpSettings, Upstream
from tradewire.core.executors.paper import PaperExecutor
from tradewire.core.jupiter_quotes import JupiterQuotes
from tradewire.core.retry import RetryPolicy
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.tracing import Tracing, current_trace, outbound_trace_headers
from tradewire.core.webhooks import WebhookDispatcher, verify
from unit.lifecycle.lifecycle_support import MARKET, order, run_until_nothing_pending, runner

SECRET = b"s3cret"


def call(**headers: str) -> CallContext:
    return CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", headers=headers)


def parts(traceparent: str) -> tuple[str, str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    return version, trace_id, span_id, flags


def headers_sent(parent) -> dict[str, str]:
    with outbound_trace_headers("GET", "example.test", parent) as headers:
        return dict(headers)


def traced() -> tuple[Tracing, InMemorySpanExporter]:
    tracing = Tracing(TracingConfig(enabled=True))  # no OTLP endpoint: spans are kept here only
    exporter = InMemorySpanExporter()
    tracing._provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracing, exporter


# -- the helper ------------------------------------------------------------------------------


def test_tracing_off_the_callers_trace_goes_on_with_a_fresh_span_id_per_request():
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        first, second = headers_sent(current_trace()), headers_sent(current_trace())
    for sent in (first, second):
        assert parts(sent["traceparent"])[:2] == ("00", TRACE_ID)
        assert parts(sent["traceparent"])[3] == "01"  # the caller's sampling decision, kept
        assert sent["tracestate"] == TRACESTATE
    span_ids = {parts(first["traceparent"])[2], parts(second["traceparent"])[2]}
    assert len(span_ids) == 2 and CALLER_SPAN not in span_ids


@pytest.mark.parametrize("headers", [
    {},
    {"traceparent": f"ff-{TRACE_ID}-{CALLER_SPAN}-01"},  # W3C: version ff is invalid
    {"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},
    {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
    {"traceparent": "not a traceparent", "tracestate": TRACESTATE},
])
def test_tracing_off_a_call_without_a_valid_traceparent_sends_none(headers):
    with Tracing(TracingConfig()).call_span(call(**headers)):
        assert headers_sent(current_trace()) == {}


def test_a_malformed_tracestate_is_dropped_and_the_traceparent_still_sent():
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate="congo=ok,no equals sign")):
        sent = headers_sent(current_trace())
    assert parts(sent["traceparent"])[1] == TRACE_ID and "tracestate" not in sent


def test_nothing_is_sent_outside_a_call():
    assert current_trace() is None
    assert headers_sent(current_trace()) == {}


def test_tracing_on_each_request_is_a_client_span_child_of_the_call_span():
    tracing, exporter = traced()
    ctx = call(traceparent=TRACEPARENT, tracestate=TRACESTATE)
    with tracing.call_span(ctx):
        sent = headers_sent(current_trace())
    tracing.shutdown()
    server = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    _, trace_id, span_id, _ = parts(sent["traceparent"])
    assert trace_id == TRACE_ID == ctx.trace_id
    assert span_id == format(client.context.span_id, "016x") != format(server.context.span_id, "016x")
    assert client.parent.span_id == server.context.span_id
    assert client.attributes["http.request.method"] == "GET"
    assert sent["tracestate"] == TRACESTATE


def test_tracing_on_a_call_without_a_traceparent_sends_its_own_trace():
    tracing, _ = traced()
    ctx = call()
    with tracing.call_span(ctx):
        sent = headers_sent(current_trace())
    tracing.shutdown()
    assert ctx.trace_id and parts(sent["traceparent"])[1] == ctx.trace_id
    assert "tracestate" not in sent


# -- the call sites --------------------------------------------------------------------------


def quote_answer(request: httpx.Request) -> httpx.Response:
    amount = int(request.url.params["amount"])
    return httpx.Response(200, json={"inAmount": str(amount), "outAmount": str(amount // 7),
                                     "otherAmountThreshold": "1", "priceImpactPct": "0.0001", "routePlan": []})


def recording(requests: list[httpx.Request], answer=lambda request: httpx.Response(200)):
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer(request)
    return handler


def quotes_answering(handler) -> JupiterQuotes:
    client = httpx.AsyncClient(base_url="http://quotes.test", transport=httpx.MockTransport(handler))
    return JupiterQuotes("http://quotes.test", MARKET, client=client, probe_interval_s=0.01)


def webhooks_config(**overrides) -> WebhooksConfig:
    values = dict(endpoints=[{"principal": "alice", "url": "http://hooks.test/alice"}], concurrency=2,
                  retry={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02})
    values.update(overrides)
    return WebhooksConfig.model_validate(values)


def assert_continues_the_callers_trace(request: httpx.Request) -> str:
    _, trace_id, span_id, _ = parts(request.headers["traceparent"])
    assert trace_id == TRACE_ID and span_id != CALLER_SPAN
    assert request.headers["tracestate"] == TRACESTATE
    return span_id


async def trade_in_a_call(request_id: str, **headers: str) -> tuple[list[httpx.Request], list[httpx.Request]]:
    """A paper trade admitted inside a call with ``headers``, run to its end and its webhook
    delivered: the requests it made to the quote API, and its webhook POSTs."""
    quote_requests: list[httpx.Request] = []
    posts: list[httpx.Request] = []
    store = SqliteStore(":memory:")
    quotes = quotes_answering(recording(quote_requests, quote_answer))
    dispatcher = WebhookDispatcher(store, webhooks_config(), SECRET,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(recording(posts))))
    trades = runner(PaperExecutor(PaperConfig(latency_ms=0), MARKET, quotes, store), store, webhooks=dispatcher)
    # As the pipeline does: the trade is admitted inside its call, and runs on in a task of its own.
    with Tracing(TracingConfig()).call_span(call(**headers)):
        trade = trades.admit(order(request_id))
    await trades.wait(trade)
    await run_until_nothing_pending(dispatcher, store)  # delivered later, from the outbox
    await quotes.close()
    assert quote_requests and posts
    return quote_requests, posts


async def test_a_trade_carries_its_calls_trace_to_the_quote_api_and_to_its_webhook():
    quote_requests, posts = await trade_in_a_call("traced", traceparent=TRACEPARENT, tracestate=TRACESTATE)
    span_ids = [assert_continues_the_callers_trace(r) for r in quote_requests + posts]
    assert len(set(span_ids)) == len(span_ids)
    (post,) = posts
    assert verify(SECRET, post.content, post.headers["tradewire-signature"])
    assert TRACE_ID.encode() not in post.content  # a header only, never in the signed body


async def test_a_trade_without_a_trace_context_sends_none():
    quote_requests, posts = await trade_in_a_call("untraced")
    assert not any("traceparent" in r.headers or "tracestate" in r.headers for r in quote_requests + posts)


async def test_each_webhook_attempt_carries_the_trace_with_a_span_id_of_its_own():
    posts: list[httpx.Request] = []
    answers = [500, 200]
    store = SqliteStore(":memory:")
    dispatcher = WebhookDispatcher(store, webhooks_config(), SECRET, client=httpx.AsyncClient(
        transport=httpx.MockTransport(recording(posts, lambda request: httpx.Response(answers.pop(0))))))
    trades = runner(PaperExecutor(PaperConfig(latency_ms=0), MARKET, quotes_answering(quote_answer), store), store,
                    webhooks=dispatcher)
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        trade = trades.admit(order("retried"))
    await trades.wait(trade)
    await run_until_nothing_pending(dispatcher, store)
    assert len(posts) == 2 and posts[0].content == posts[1].content
    span_ids = {assert_continues_the_callers_trace(post) for post in posts}
    assert len(span_ids) == 2


async def test_the_quote_apis_outage_probe_is_not_the_calls():
    requests: list[httpx.Request] = []
    answers = [503, 503]
    quotes = quotes_answering(recording(
        requests, lambda request: httpx.Response(answers.pop(0)) if answers else quote_answer(request)))
    sol, usdc = MARKET.by_symbol("SOL"), MARKET.by_symbol("USDC")
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        with pytest.raises(TradewireError, match="quote API answered 503"):
            await quotes.quote(sol, usdc, 10**9, exact_out=False, slippage_bps=50)
    await eventually(lambda: quotes.outage is None, timeout=5, interval=0.005, what="the probe to end the outage")
    await quotes.close()
    assert_continues_the_callers_trace(requests[0])
    assert len(requests) >= 3 and not any("traceparent" in r.headers for r in requests[1:])


async def test_live_upstream_requests_carry_the_trace_of_the_call_they_are_made_for():
    requests: list[httpx.Request] = []
    breaker = CircuitBreaker("rpc", failure_threshold=5, cooldown_s=1.0)
    upstream = Upstream("rpc", "http://rpc.test", HttpSettings(), breaker, RetryPolicy(max_attempts=1),
                        wrap_transport=lambda _: httpx.MockTransport(recording(requests)))
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        await asyncio.create_task(upstream.request("POST", "", json={"method": "getBalance"}))
    await upstream.request("POST", "", json={"method": "getBlockHeight"})  # the executor's own (health, polls)
    await upstream.close()
    assert_continues_the_callers_trace(requests[0])
    assert "traceparent" not in requests[1].headers


async def test_a_live_upstream_request_with_headers_of_its_own_sends_them_beside_the_trace():
    requests: list[httpx.Request] = []
    upstream = Upstream("jito", "http://jito.test", HttpSettings(), CircuitBreaker("jito", 5, 1.0),
                        RetryPolicy(max_attempts=1), wrap_transport=lambda _: httpx.MockTransport(recording(requests)))
    with Tracing(TracingConfig()).call_span(call(traceparent=TRACEPARENT, tracestate=TRACESTATE)):
        await upstream.request("POST", "", json={}, headers={"x-jito-auth": "uuid-1"})
    await upstream.close()
    assert requests[0].headers["x-jito-auth"] == "uuid-1"
    assert_continues_the_callers_trace(requests[0])
