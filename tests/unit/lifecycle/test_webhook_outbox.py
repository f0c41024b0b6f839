"""Webhook signing, the SQLite outbox and the dispatcher (against httpx.MockTransport)."""

import json
import sqlite3

import httpx
import pytest

from lifecycle_support import run_until_nothing_pending
from tradewire.core.config import WebhooksConfig
from tradewire.core.metrics import Metrics
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.webhooks import WebhookDispatcher, sign, verify, webhook_body
from tradewire.core.webhooks.signing import signature
from tradewire.v1 import trade_pb2 as pb

SECRET = b"s3cret"


def test_signature_scheme_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"a":1}'
    header = sign(SECRET, body, timestamp=1700000000)
    assert header == "t=1700000000,v1=" + hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify(SECRET, body, header, now=1700000000 + 10)
    assert not verify(SECRET, body, header, now=1700000000 + 301)  # outside the tolerance: a replay
    assert not verify(SECRET, b'{"a":2}', header, now=1700000000)
    assert not verify(SECRET, body, "t=abc,v1=00", now=1700000000)
    rotated = f"t=1700000000,v1=00,v1={signature(SECRET, body, 1700000000)}"  # any v1 may match
    assert verify(SECRET, body, rotated, now=1700000000)


def entry(request_id: str = "t-1", url: str = "http://hooks.test/a") -> OutboxEntry:
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_FILLED)
    return OutboxEntry(id=f"d-{request_id}-{url[-1]}", principal_id="alice", request_id=request_id, url=url,
                       body=webhook_body(f"d-{request_id}", "alice", result))


def claimed(store: SqliteStore, request_id: str) -> pb.TradeResult:
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    return result


def test_a_terminal_status_and_its_webhooks_are_saved_together():
    store = SqliteStore(":memory:")
    result = claimed(store, "t-1")
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), [entry(), entry(url="http://hooks.test/b")])
    store.save("alice", result, (), [entry()])  # saved again (e.g. a recovery): no second webhook
    assert store.outbox_counts() == {"pending": 2, "delivered": 0, "dead": 0}
    due = store.outbox_take_due(now_ns=2**62, limit=10, lease_until_ns=2**62 + 1)
    assert [e.url for e in due] == ["http://hooks.test/a", "http://hooks.test/b"]
    store.outbox_update(due[0].id, "delivered", 1, 0, "")
    store.outbox_update(due[1].id, "pending", 1, 2**61, "HTTP 500")
    assert store.outbox_take_due(now_ns=2**60, limit=10, lease_until_ns=2**62) == []
    assert store.outbox_next_due_ns() == 2**61
    assert store.outbox_counts()["delivered"] == 1


def test_a_failed_transaction_keeps_neither(monkeypatch):
    store = SqliteStore(":memory:")
    result = claimed(store, "t-1")
    result.status = pb.TRADE_STATUS_FILLED
    bad = entry()
    bad = OutboxEntry(id=bad.id, principal_id="alice", request_id="t-1", url=bad.url, body=None)  # NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.save("alice", result, (), [bad])
    assert store.get("alice", "t-1").result.status == pb.TRADE_STATUS_UNSPECIFIED
    assert store.outbox_counts()["pending"] == 0


def test_an_old_database_gains_the_request_column(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE trades (seq INTEGER PRIMARY KEY AUTOINCREMENT, principal TEXT NOT NULL,"
                     " request_id TEXT NOT NULL, fingerprint TEXT NOT NULL, mode INTEGER NOT NULL,"
                     " status INTEGER NOT NULL, input_mint TEXT NOT NULL, output_mint TEXT NOT NULL,"
                     " created_ns INTEGER NOT NULL, result BLOB NOT NULL, events BLOB,"
                     " UNIQUE (principal, request_id));")
    db.execute("INSERT INTO trades (principal, request_id, fingerprint, mode, status, input_mint, output_mint,"
               " created_ns, result) VALUES ('alice', 'old', 'fp', 1, 4, 'a', 'b', 1, ?)",
               (pb.TradeResult(request_id="old", status=pb.TRADE_STATUS_QUOTED).SerializeToString(),))
    db.commit()
    db.close()
    store = SqliteStore(path)
    [unfinished] = store.unfinished()
    assert unfinished.request is None and unfinished.record.result.status == pb.TRADE_STATUS_QUOTED


def config(**overrides) -> WebhooksConfig:
    # allow_private_request_urls: these tests are about delivery, not destinations (resolution
    # is skipped); tests/unit/lifecycle/test_webhook_destinations.py covers those.
    values = dict(allowed_schemes=("http", "https"), concurrency=2, allow_private_request_urls=True,
                  retry={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02})
    values.update(overrides)
    return WebhooksConfig.model_validate(values)


async def test_dispatcher_retries_then_delivers_and_dead_letters():
    answers = {"http://hooks.test/a": [500, 503, 200], "http://hooks.test/b": [500, 500, 500, 200]}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers[str(request.url)].pop(0))

    store = SqliteStore(":memory:")
    result = claimed(store, "t-1")
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), [entry(url="http://hooks.test/a"), entry(url="http://hooks.test/b")])
    metrics = Metrics()
    dispatcher = WebhookDispatcher(store, config(), SECRET, metrics,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await run_until_nothing_pending(dispatcher, store)
    by_url = {e.url: e for e in store.outbox_entries()}
    assert by_url["http://hooks.test/a"].state == "delivered" and by_url["http://hooks.test/a"].attempts == 3
    assert by_url["http://hooks.test/b"].state == "dead" and by_url["http://hooks.test/b"].last_error == "HTTP 500"
    assert len(seen) == 6
    for request in seen:
        assert verify(SECRET, request.content, request.headers["tradewire-signature"])
        assert json.loads(request.content)["requestId"] == "t-1"
    assert metrics.webhook_deliveries.labels("retry")._value.get() == 4  # a: 2, b: 2 (its third is dead)
    assert metrics.webhook_deliveries.labels("delivered")._value.get() == 1
    assert metrics.webhook_deliveries.labels("dead")._value.get() == 1
    assert metrics.webhook_outbox_depth.labels("dead")._value.get() == 1


async def test_a_timed_out_delivery_says_so_in_its_last_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("")  # what httpx raises: no message of its own

    store = SqliteStore(":memory:")
    result = claimed(store, "t-1")
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), [entry(url="http://hooks.test/slow")])
    dispatcher = WebhookDispatcher(store, config(timeout_s=2.5), SECRET,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await run_until_nothing_pending(dispatcher, store)
    (dead,) = store.outbox_entries()
    assert dead.state == "dead" and dead.last_error == "ReadTimeout: no answer within 2.5 s"


async def test_endpoint_secrets_targets_and_request_urls():
    cfg = config(endpoints=[{"principal": "alice", "url": "http://hooks.test/alice", "secret": "own"}],
                 allowed_schemes=("https",))
    dispatcher = WebhookDispatcher(SqliteStore(":memory:"), cfg, lambda: SECRET)
    assert dispatcher.targets("alice", "https://x.test/y") == ["http://hooks.test/alice", "https://x.test/y"]
    assert dispatcher.targets("bob", "") == []
    assert dispatcher._secret("alice", "http://hooks.test/alice") == b"own"
    assert dispatcher._secret("alice", "https://x.test/y") == SECRET
    dispatcher.check_request_url("https://x.test/y")
    with pytest.raises(Exception) as failure:
        dispatcher.check_request_url("http://x.test/y")
    assert failure.value.field_violations[0].field == "webhook_url"
    await dispatcher.close()


async def test_flush_delivers_what_is_due_and_leaves_the_rest():
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    store = SqliteStore(":memory:")
    result = claimed(store, "t-1")
    result.status = pb.TRADE_STATUS_FILLED
    later = entry(url="http://hooks.test/b")
    later = OutboxEntry(**{**later.__dict__, "next_attempt_ns": 2**62})
    store.save("alice", result, (), [entry(), later])
    dispatcher = WebhookDispatcher(store, config(), SECRET,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    assert await dispatcher.flush(2.0)
    await dispatcher.close()
    assert {e.url: e.state for e in store.outbox_entries()} == {"http://hooks.test/a": "delivered",
                                                                "http://hooks.test/b": "pending"}
