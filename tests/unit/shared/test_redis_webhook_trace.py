"""A webhook's trace context is kept with it in the Redis outbox: another replica delivers it
with the trade's trace, and an entry written before the field was kept still goes out,
without one (a real redis-server; the POSTs on httpx.MockTransport)."""

from __future__ import annotations

import httpx
import pytest
import redis

from support.trace_context import CALLER_SPAN, TRACE_ID, TRACEPARENT, TRACESTATE
from tradewire.core.config import TracingConfig, WebhooksConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.tracing import Tracing
from tradewire.core.webhooks import WebhookDispatcher
from tradewire.v1 import trade_pb2 as pb

TRACE_DB = 10  # the outbox keys are global to the store: a database of its own
HOOK_URL = "http://hooks.test/alice"
SECRET = b"s3cret"


@pytest.fixture
def client(redis_server) -> redis.Redis:
    c = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{TRACE_DB}")
    c.flushdb()
    return c


def call(**headers: str) -> CallContext:
    return CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", headers=headers)


def dispatcher_over(store: RedisTradeStore, posts: list[httpx.Request]) -> WebhookDispatcher:
    """A dispatcher for alice's endpoint, recording what it POSTs (answered 200)."""
    def answer(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200)

    config = WebhooksConfig.model_validate({"endpoints": [{"principal": "alice", "url": HOOK_URL}]})
    return WebhookDispatcher(store, config, SECRET, client=httpx.AsyncClient(transport=httpx.MockTransport(answer)))


async def finished_on(store: RedisTradeStore, request_id: str, **caller_headers: str) -> None:
    """A trade ended on ``store``'s replica within a call sending ``caller_headers``, its
    webhook saved with it but not delivered there (that replica stopped)."""
    dispatcher = dispatcher_over(store, [])
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    result.status = pb.TRADE_STATUS_FILLED
    with Tracing(TracingConfig()).call_span(call(**caller_headers)):
        store.save("alice", result, (), dispatcher.entries("alice", "", result))
    await dispatcher.close()


async def delivered_by(store: RedisTradeStore) -> dict[str, httpx.Request]:
    """What a dispatcher on ``store``'s replica POSTs for the due entries, by trade request id."""
    posts: list[httpx.Request] = []
    dispatcher = dispatcher_over(store, posts)
    assert await dispatcher.flush(timeout=5)
    await dispatcher.close()
    ids = {e.id: e.request_id for e in store.outbox_entries()}
    return {ids[post.headers["tradewire-delivery"]]: post for post in posts}


async def test_another_replica_delivers_with_the_trades_trace_and_a_span_id_of_its_own(client):
    await finished_on(RedisTradeStore(client, "replica-a"), "t-1", traceparent=TRACEPARENT, tracestate=TRACESTATE)
    await finished_on(RedisTradeStore(client, "replica-a"), "t-2")  # a call without a trace context
    replica_b = RedisTradeStore(client, "replica-b")

    posts = await delivered_by(replica_b)

    version, trace_id, span_id, flags = posts["t-1"].headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01") and span_id != CALLER_SPAN
    assert posts["t-1"].headers["tracestate"] == TRACESTATE
    assert "traceparent" not in posts["t-2"].headers and "tracestate" not in posts["t-2"].headers
    assert replica_b.outbox_counts() == {"pending": 0, "delivered": 2, "dead": 0}


async def test_an_entry_written_before_the_trace_was_kept_delivers_without_one(client):
    store = RedisTradeStore(client, "replica-a")
    await finished_on(store, "t-old", traceparent=TRACEPARENT, tracestate=TRACESTATE)
    [entry] = store.outbox_entries()
    assert client.hdel(f"tw:outbox:e:{entry.id}", "trace") == 1  # as an earlier version wrote it

    assert [e.trace for e in store.outbox_entries()] == [None]
    posts = await delivered_by(RedisTradeStore(client, "replica-b"))

    assert posts.keys() == {"t-old"}
    assert "traceparent" not in posts["t-old"].headers and "tracestate" not in posts["t-old"].headers
    assert store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 0}
