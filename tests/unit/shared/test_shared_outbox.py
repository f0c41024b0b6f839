"""The webhook outbox contract on both stores (SQLite, Redis), and what sharing it in Redis
adds: replicas never take the same entry at once, and an entry whose taker died is due
again for every replica when its lease ends."""

import threading
import uuid

import pytest
import redis

from tradewire.core.shared.redis_outbox import SharedWebhookSecret
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb

OUTBOX_DB = 7  # a Redis database of its own: the outbox keys are global to the store


@pytest.fixture
def redis_url(redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + f"/{OUTBOX_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "trades.db")
    else:
        yield RedisTradeStore(redis.Redis.from_url(request.getfixturevalue("redis_url")), "replica-a")


def entry(request_id: str, url: str, due_ns: int = 1_000) -> OutboxEntry:
    return OutboxEntry(id=uuid.uuid4().hex, principal_id="alice", request_id=request_id, url=url,
                       body=b'{"requestId": "%s"}' % request_id.encode(), next_attempt_ns=due_ns)


def finished(store, request_id: str, entries: list[OutboxEntry]) -> None:
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), entries)


def test_entries_are_saved_with_the_trade_once_per_url(store):
    first = [entry("t-1", "http://a.test/"), entry("t-1", "http://b.test/")]
    finished(store, "t-1", first)
    result = store.get("alice", "t-1").result
    store.save("alice", result, (), [entry("t-1", "http://a.test/")])  # saved again: no second webhook
    assert store.outbox_counts() == {"pending": 2, "delivered": 0, "dead": 0}
    listed = store.outbox_entries("t-1")
    assert {(e.id, e.url, e.body, e.state, e.attempts) for e in listed} == {
        (e.id, e.url, e.body, "pending", 0) for e in first}
    assert store.outbox_entries("t-2") == []


def test_taking_leases_until_the_lease_ends(store):
    finished(store, "t-1", [entry("t-1", "http://a.test/", due_ns=1_000)])
    finished(store, "t-2", [entry("t-2", "http://a.test/", due_ns=5_000)])
    assert store.outbox_next_due_ns() == 1_000
    taken = store.outbox_take_due(now_ns=2_000, limit=10, lease_until_ns=9_000)
    assert [e.request_id for e in taken] == ["t-1"]  # t-2 is not due yet
    assert taken[0].body == b'{"requestId": "t-1"}' and taken[0].attempts == 0
    # t-1 is leased: not due again before its lease ends, whoever asks
    assert [e.request_id for e in store.outbox_take_due(6_000, 10, 20_000)] == ["t-2"]
    assert store.outbox_take_due(8_999, 10, 30_000) == []
    assert store.outbox_next_due_ns() == 9_000
    # the taker never reported back (it died): due again once the lease ended
    assert [e.request_id for e in store.outbox_take_due(9_000, 10, 40_000)] == ["t-1"]


def test_updates_move_entries_between_states_and_delivered_ones_are_pruned(store):
    entries = [entry(f"t-{i}", "http://a.test/") for i in range(3)]
    for e in entries:
        finished(store, e.request_id, [e])
    taken = store.outbox_take_due(2_000, 10, 9_000)
    assert len(taken) == 3
    store.outbox_update(entries[0].id, "delivered", 1, 0, "")
    store.outbox_update(entries[1].id, "dead", 10, 0, "HTTP 500")
    store.outbox_update(entries[2].id, "pending", 1, 50_000, "timeout")
    assert store.outbox_counts() == {"pending": 1, "delivered": 1, "dead": 1}
    assert store.outbox_take_due(49_999, 10, 60_000) == []
    retry = store.outbox_take_due(50_000, 10, 60_000)
    assert [(e.id, e.attempts, e.last_error) for e in retry] == [(entries[2].id, 1, "timeout")]
    assert store.outbox_prune_delivered(before_ns=0) == 0  # delivered just now: kept
    assert store.outbox_prune_delivered(before_ns=2**62) == 1
    assert store.outbox_counts() == {"pending": 1, "delivered": 0, "dead": 1}
    assert {e.state for e in store.outbox_entries()} == {"pending", "dead"}


def test_two_replicas_never_take_the_same_entry(redis_url):
    stores = [RedisTradeStore(redis.Redis.from_url(redis_url), f"replica-{i}") for i in range(4)]
    n = 200
    for i in range(n):
        finished(stores[i % 4], f"t-{i}", [entry(f"t-{i}", "http://a.test/")])
    taken: list[list[str]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def drain(i: int) -> None:
        start.wait()
        while batch := stores[i].outbox_take_due(2_000, 7, 2**62):
            taken[i] += [e.id for e in batch]

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    every = [entry_id for ids in taken for entry_id in ids]
    assert len(every) == n and len(set(every)) == n  # each entry taken exactly once
    assert sum(1 for ids in taken if ids) >= 2  # and the race really was shared


def test_replicas_share_one_generated_signing_key(redis_url):
    a, b = SharedWebhookSecret(redis.Redis.from_url(redis_url)), SharedWebhookSecret(redis.Redis.from_url(redis_url))
    key = a()
    assert len(key) == 64 and b() == key == a()


def test_a_signing_key_redis_lost_is_put_back_by_a_replica_that_knows_it(redis_url):
    """Redis restarted empty: the replicas (and the receivers) keep the key they had, rather than
    one replica signing with the old key and the next one made with a new one."""
    client = redis.Redis.from_url(redis_url)
    a, b = SharedWebhookSecret(client), SharedWebhookSecret(redis.Redis.from_url(redis_url))
    key = a()
    client.flushdb()
    assert a() == key and b() == key


async def test_a_replica_s_outbox_depth_follows_what_other_replicas_deliver(redis_url):
    """The depth a replica reports was refreshed only after its own attempts: one whose last
    attempt failed went on reporting that entry pending after another replica delivered it."""
    from support.trading import eventually
    from tradewire.core.config import WebhooksConfig
    from tradewire.core.metrics import Metrics
    from tradewire.core.webhooks import WebhookDispatcher

    mine, other = (RedisTradeStore(redis.Redis.from_url(redis_url), r) for r in ("replica-a", "replica-b"))
    metrics = Metrics()
    config = WebhooksConfig.model_validate({"allowed_schemes": ("http", "https"), "idle_poll_s": 0.05})
    dispatcher = WebhookDispatcher(mine, config, b"s3cret", metrics)
    waiting = entry("t-1", "http://a.test/", due_ns=2**62)  # due far ahead: this replica only counts it
    finished(other, "t-1", [waiting])

    def pending() -> float:
        return metrics.webhook_outbox_depth.labels("pending")._value.get()

    await dispatcher.start()
    try:
        await eventually(lambda: pending() == 1, timeout=5, what="the entry counted pending")
        other.outbox_update(waiting.id, "delivered", 1, 0, "")  # the other replica delivered it
        await eventually(lambda: pending() == 0, timeout=5, what="the depth following the other replica")
    finally:
        await dispatcher.close(1.0)
