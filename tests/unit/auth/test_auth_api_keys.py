"""API keys: format, create/verify/revoke/expire, hash-only storage, stores."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
from datetime import UTC, datetime, timedelta

import pytest
import redis
from support.auth_material import FakeClock
from support.redis_server import RedisServer

from tradewire.core.auth import api_keys
from tradewire.core.auth.api_keys import (
    ApiKeyStore,
    KeyNotFound,
    ReadOnlyStore,
    create_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from tradewire.core.auth.key_stores import ChainApiKeyStore, StaticApiKeyStore
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.core.errors import Code, TradewireError
from tradewire.core.shared.redis_key_store import RedisApiKeyStore

T0 = 1_800_000_000.0
KEYS_DB = 10  # the Redis database of these tests


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, clock: FakeClock):
    """Each store the gateway reads keys from: its own database, or Redis (several replicas)."""
    if request.param == "sqlite":
        with SqliteApiKeyStore(tmp_path / "data" / "auth.db", clock=clock) as s:
            yield s
        return
    client = request.getfixturevalue("keys_redis")
    yield RedisApiKeyStore(client, clock=clock)


@pytest.fixture
def keys_redis(redis_server):
    """A database of the session's Redis for these tests alone, empty at the start of each."""
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{KEYS_DB}")
    client.flushdb()
    yield client
    client.close()


def refusal(store: ApiKeyStore, key: str) -> TradewireError:
    with pytest.raises(TradewireError) as caught:
        store.verify(key)
    return caught.value


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


# -- format --------------------------------------------------------------------------------


def test_key_format_and_entropy() -> None:
    seen = set()
    for _ in range(200):
        prefix, key = generate_key()
        assert re.fullmatch(r"tw_[a-z0-9]{8}_[A-Za-z0-9]{43}", key)
        assert key.startswith(f"tw_{prefix}_")
        seen.add(key)
    assert len(seen) == 200


def test_hash_is_sha256_of_the_whole_key() -> None:
    _, key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


# -- create / verify / revoke / expire -----------------------------------------------------


def test_create_then_verify(store: ApiKeyStore, clock: FakeClock) -> None:
    key, record = create_key(store, "alice", "bot-1", ["read", "trade:paper"], clock=clock)
    assert record.owner == "alice" and record.name == "bot-1"
    assert record.scopes == {"read", "trade:paper"}
    assert record.created_at == datetime.fromtimestamp(T0, UTC)
    assert record.expires_at is None and record.revoked_at is None
    assert record.key_id == f"tw_{record.prefix}" and key.startswith(record.key_id + "_")
    verified = store.verify(key)
    assert verified == record
    assert store.verify(key) == record  # cached path gives the same answer


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "tw_",
        "tw_abcdefgh",
        "tw_abcdefgh_short",
        "tw_ABCDEFGH_" + "a" * 43,  # upper-case prefix
        "xx_abcdefgh_" + "a" * 43,
        "tw_abcdefgh_" + "a" * 43 + "!",
        " tw_abcdefgh_" + "a" * 43,
    ],
)
def test_malformed_key_is_auth_invalid(store: ApiKeyStore, bad: str) -> None:
    err = refusal(store, bad)
    assert err.reason == "AUTH_INVALID" and err.code is Code.UNAUTHENTICATED
    assert err.message == "API key is malformed"


def test_unknown_key_is_auth_invalid(store: ApiKeyStore) -> None:
    prefix, key = generate_key()
    err = refusal(store, key)
    assert err.reason == "AUTH_INVALID"
    assert err.metadata["credential"] == f"tw_{prefix}"


def test_wrong_secret_for_a_known_prefix(store: ApiKeyStore) -> None:
    key, record = create_key(store, "alice", "", ["read"])
    forged = f"{record.key_id}_{'A' * 43}"
    err = refusal(store, forged)
    assert err.reason == "AUTH_INVALID"
    assert err.metadata == {"credential": record.key_id, "credential_kind": "api_key"}
    assert secret_of(key) not in str(err) and "A" * 43 not in str(err.to_status())


def test_revoked_key_is_refused_even_after_being_cached(store: ApiKeyStore) -> None:
    key, record = create_key(store, "alice", "", ["read"])
    store.verify(key)  # now cached
    revoked = revoke_key(store, record.key_id)
    assert revoked.revoked_at is not None
    err = refusal(store, key)
    assert err.reason == "API_KEY_REVOKED"
    assert err.metadata["credential"] == record.key_id
    assert secret_of(key) not in err.message


def test_revocation_by_another_process_is_seen_at_once(tmp_path, clock: FakeClock) -> None:
    """The CLI revokes through its own connection; the gateway's cache must not hide it."""
    path = tmp_path / "auth.db"
    with SqliteApiKeyStore(path, clock=clock) as gateway, SqliteApiKeyStore(path) as cli:
        key, record = create_key(cli, "alice", "", ["read"])
        assert gateway.verify(key).prefix == record.prefix  # cached in the gateway
        revoke_key(cli, record.prefix)
        assert refusal(gateway, key).reason == "API_KEY_REVOKED"


def test_wrong_secret_on_a_revoked_key_reveals_nothing(store: ApiKeyStore) -> None:
    _, record = create_key(store, "alice", "", ["read"])
    revoke_key(store, record.prefix)
    assert refusal(store, f"{record.key_id}_{'B' * 43}").reason == "AUTH_INVALID"


def test_revoke_is_idempotent_and_unknown_raises(store: ApiKeyStore, clock: FakeClock) -> None:
    _, record = create_key(store, "alice", "", ["read"])
    first = revoke_key(store, record.prefix, clock=clock)
    clock.advance(100)
    assert revoke_key(store, record.prefix, clock=clock).revoked_at == first.revoked_at
    with pytest.raises(KeyNotFound):
        revoke_key(store, "zzzzzzzz")
    with pytest.raises(ValueError):
        revoke_key(store, f"{record.key_id}_{'a' * 43}")  # a full key is refused, not used


def test_expiry(store: ApiKeyStore, clock: FakeClock) -> None:
    key, record = create_key(store, "alice", "", ["read"], expires_in=timedelta(hours=1), clock=clock)
    assert record.expires_at == datetime.fromtimestamp(T0 + 3600, UTC)
    clock.advance(3599)
    assert store.verify(key).owner == "alice"  # cached now
    clock.advance(1)
    err = refusal(store, key)
    assert err.reason == "API_KEY_EXPIRED"
    assert record.status(clock()) == "expired"


def test_create_validates_input(store: ApiKeyStore) -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        create_key(store, "alice", "", ["read", "trade:everything"])
    with pytest.raises(ValueError, match="at least one scope"):
        create_key(store, "alice", "", [])
    with pytest.raises(ValueError, match="owner"):
        create_key(store, "alice smith", "", ["read"])
    with pytest.raises(ValueError, match="positive"):
        create_key(store, "alice", "", ["read"], expires_in=0)


def test_cache_is_bounded(tmp_path) -> None:
    with SqliteApiKeyStore(tmp_path / "auth.db", cache_size=2) as s:
        keys = [create_key(s, f"owner{i}", "", ["read"])[0] for i in range(5)]
        for key in keys:
            s.verify(key)
        assert len(s._cache) == 2
        assert all(s.verify(key) for key in keys)  # still correct after eviction


def test_comparison_is_constant_time(store: ApiKeyStore, monkeypatch) -> None:
    key, _ = create_key(store, "alice", "", ["read"])
    calls = []
    real = api_keys.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    store.verify(key)
    assert calls == [(hash_key(key), hash_key(key))]


# -- what is stored ------------------------------------------------------------------------


def test_only_the_hash_is_stored(tmp_path) -> None:
    path = tmp_path / "auth.db"
    with SqliteApiKeyStore(path) as s:
        created = [create_key(s, "alice", f"k{i}", ["read"]) for i in range(3)]
        for key, _ in created:
            s.verify(key)
        files = [p for p in tmp_path.iterdir() if p.name.startswith("auth.db")]
        blob = b"".join(p.read_bytes() for p in files)
    assert any(p.name.endswith("-wal") for p in files)  # the WAL is checked too
    for key, record in created:
        assert secret_of(key).encode() not in blob
        assert key.encode() not in blob
        assert hash_key(key).encode() in blob  # proves we are looking at the right bytes
        assert record.prefix.encode() in blob
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_records_never_carry_secret_or_hash(store: ApiKeyStore) -> None:
    key, _ = create_key(store, "alice", "n", ["read"])
    listed = list_keys(store)
    assert len(listed) == 1
    rendered = repr(listed) + repr(dataclasses.asdict(listed[0]))
    assert secret_of(key) not in rendered
    assert hash_key(key) not in rendered
    assert {f.name for f in dataclasses.fields(listed[0])} == {
        "prefix", "owner", "name", "scopes", "created_at", "expires_at", "revoked_at",
    }


# -- static and chained stores -------------------------------------------------------------


def test_static_store(clock: FakeClock) -> None:
    prefix, key = generate_key()
    prefix2, key2 = generate_key()
    store = StaticApiKeyStore(
        [
            {"prefix": f"tw_{prefix}", "sha256": hash_key(key), "owner": "bot", "scopes": "read,trade:paper"},
            {
                "prefix": prefix2,
                "sha256": hash_key(key2).upper(),
                "owner": "old-bot",
                "scopes": ["read"],
                "expires_at": "2020-01-01T00:00:00Z",
            },
        ],
        clock=clock,
    )
    assert isinstance(store, ApiKeyStore)
    record = store.verify(key)
    assert (record.owner, record.scopes, record.key_id) == ("bot", {"read", "trade:paper"}, f"tw_{prefix}")
    assert refusal(store, key2).reason == "API_KEY_EXPIRED"
    assert refusal(store, f"tw_{prefix}_{'x' * 43}").reason == "AUTH_INVALID"
    assert refusal(store, generate_key()[1]).reason == "AUTH_INVALID"
    with pytest.raises(ReadOnlyStore):
        store.revoke(prefix)
    with pytest.raises(ReadOnlyStore):
        create_key(store, "alice", "", ["read"])


@pytest.mark.parametrize(
    "entry",
    [
        {"prefix": "abcdefgh", "sha256": "nothex", "owner": "x", "scopes": ["read"]},
        {"prefix": "ABC", "sha256": "0" * 64, "owner": "x", "scopes": ["read"]},
        {"prefix": "abcdefgh", "sha256": "0" * 64, "owner": "", "scopes": ["read"]},
        {"prefix": "abcdefgh", "sha256": "0" * 64, "owner": "x", "scopes": ["root"]},
        {"prefix": "abcdefgh", "sha256": "0" * 64, "owner": "x", "scopes": ["read"], "secret": "no"},
    ],
)
def test_static_store_rejects_bad_config(entry) -> None:
    with pytest.raises(ValueError):
        StaticApiKeyStore([entry])


def test_chain_store(store: ApiKeyStore) -> None:
    prefix, static_key = generate_key()
    static = StaticApiKeyStore([{"prefix": prefix, "sha256": hash_key(static_key), "owner": "cfg", "scopes": "read"}])
    chain = ChainApiKeyStore(static, store)
    db_key, db_record = create_key(chain, "alice", "", ["trade:paper"])
    assert store.get(db_record.prefix) is not None  # went to the writable store
    assert chain.verify(static_key).owner == "cfg"
    assert chain.verify(db_key).owner == "alice"
    assert {r.owner for r in list_keys(chain)} == {"cfg", "alice"}
    revoke_key(chain, db_record.prefix)
    assert refusal(chain, db_key).reason == "API_KEY_REVOKED"
    assert refusal(chain, generate_key()[1]).reason == "AUTH_INVALID"
    with pytest.raises(KeyNotFound):
        revoke_key(chain, "zzzzzzzz")


# -- the Redis store (several replicas) ----------------------------------------------------


def test_a_key_created_or_revoked_through_one_replica_is_seen_by_every_other(keys_redis, clock: FakeClock) -> None:
    """Made: at once. Revoked elsewhere: once the replica's copy is a second old; revoked
    through the replica's own store: at once."""
    cached = FakeClock(0.0)  # the replicas' monotonic clock
    cli = RedisApiKeyStore(keys_redis, clock=clock)
    replica_a, replica_b = (RedisApiKeyStore(keys_redis, clock=clock, monotonic=cached) for _ in range(2))
    key, record = create_key(cli, "alice", "bot", ["read", "trade:paper"], clock=clock)
    assert replica_a.verify(key) == replica_b.verify(key) == record
    cached.advance(0.5)
    revoke_key(cli, record.key_id, clock=clock)
    assert replica_a.verify(key) == record  # its copy, read half a second ago
    cached.advance(0.5)
    assert refusal(replica_a, key).reason == refusal(replica_b, key).reason == "API_KEY_REVOKED"

    other, other_record = create_key(cli, "bob", "", ["read"], clock=clock)
    assert replica_a.verify(other) == other_record
    revoke_key(replica_a, other_record.key_id, clock=clock)
    assert refusal(replica_a, other).reason == "API_KEY_REVOKED"
    assert refusal(replica_a, f"{other_record.key_id}_{'C' * 43}").reason == "AUTH_INVALID"  # the copy is gone


def test_a_replica_reads_a_key_from_redis_once_a_second_at_most(keys_redis, clock: FakeClock, monkeypatch) -> None:
    cached = FakeClock(0.0)
    store = RedisApiKeyStore(keys_redis, clock=clock, monotonic=cached)
    key, _ = create_key(store, "alice", "", ["read"], clock=clock)
    reads = []
    real = keys_redis.hgetall
    monkeypatch.setattr(keys_redis, "hgetall", lambda name: reads.append(name) or real(name))
    for _ in range(100):
        store.verify(key)
        cached.advance(0.05)  # 100 calls over 5 s
    assert len(reads) == 5
    assert refusal(store, key[:-1] + ("A" if key[-1] != "A" else "B")).reason == "AUTH_INVALID"  # wrong secret


def test_a_local_key_database_is_copied_in_without_undoing_what_redis_says(tmp_path, keys_redis,
                                                                           clock: FakeClock) -> None:
    with SqliteApiKeyStore(tmp_path / "auth.db", clock=clock) as local:
        kept, kept_record = create_key(local, "alice", "", ["read"], clock=clock)
        revoked_there, revoked_record = create_key(local, "bob", "", ["read"], clock=clock)
        shared = RedisApiKeyStore(keys_redis, clock=clock)
        assert shared.copy_in(local.entries()) == 2
        revoke_key(shared, revoked_record.prefix, clock=clock)  # revoked in Redis, active in the local file
        assert shared.copy_in(local.entries()) == 0  # (a second replica starting on a copy of the file)
    assert shared.verify(kept) == kept_record  # the same record: owner, scopes, times
    assert refusal(shared, revoked_there).reason == "API_KEY_REVOKED"
    assert sorted(r.owner for r in list_keys(shared)) == ["alice", "bob"]  # (made in the same second)
    stored = b"".join(v for k in keys_redis.keys("tw:apikey:*") if keys_redis.type(k) == b"hash"
                      for v in keys_redis.hvals(k))
    assert secret_of(kept).encode() not in stored and hash_key(kept).encode() in stored  # the hash, never the key


def test_verification_while_redis_does_not_answer_is_an_outage_not_a_pass(tmp_path, clock: FakeClock) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = RedisApiKeyStore(server.client(), clock=clock)
        key, _ = create_key(store, "alice", "", ["read"], clock=clock)
        server.halt(keep_data=True)
        with pytest.raises(redis.ConnectionError):  # the pipeline answers STORE_UNAVAILABLE
            store.verify(key)
        server.start()
        assert store.verify(key).owner == "alice"
    finally:
        server.stop()


def test_a_key_revoked_while_its_verification_reads_it_is_not_kept(keys_redis, clock: FakeClock,
                                                                    monkeypatch) -> None:
    """A verification that read the record just before this replica revoked it may pass (it came
    first), but the record it read must not be kept for the next second's calls."""
    cached = FakeClock(0.0)
    store = RedisApiKeyStore(keys_redis, clock=clock, monotonic=cached)
    key, record = create_key(store, "alice", "", ["read"], clock=clock)
    real = keys_redis.hgetall

    def read_then_revoked(name):
        fields = real(name)
        monkeypatch.setattr(keys_redis, "hgetall", real)
        revoke_key(store, record.key_id, clock=clock)  # lands between the read and the caching
        return fields

    monkeypatch.setattr(keys_redis, "hgetall", read_then_revoked)
    assert store.verify(key) == record
    assert refusal(store, key).reason == "API_KEY_REVOKED"  # (same monotonic instant: a kept copy would pass)
