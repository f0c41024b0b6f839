"""HealthCheck's store component comes from the store itself: which one, and whether it answers."""

import redis

from support.ports import free_port
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.sqlite import SqliteStore


def test_sqlite_store_reports_itself_and_a_closed_database(tmp_path):
    store = SqliteStore(tmp_path / "trades.db")
    assert store.health() == (True, "sqlite")
    store.close()
    ok, message = store.health()
    assert not ok and message.startswith("sqlite: ")


def test_redis_store_reports_its_replica_and_an_unreachable_redis(tmp_path, redis_server):
    up = RedisTradeStore(redis.Redis.from_url(redis_server.url), "replica-x")
    assert up.health() == (True, "redis (replica replica-x)")
    down = RedisTradeStore(redis.Redis(port=free_port(), socket_connect_timeout=1), "replica-y")
    ok, message = down.health()
    assert not ok and message.startswith("redis does not answer: ") and "Connection refused" in message, message
