"""On the Redis backend a trade's keys name its principal and its request id so that no two
(principal, request id) pairs share one, though both may hold ':' (jwt:alice, bot:t1): as they
were, one caller read, and claimed, another caller's trades."""

import redis

from tradewire.core.shared.redis_events import events_stream_key
from tradewire.core.shared.redis_live_orders import _sent_key
from tradewire.core.shared.redis_replicas import REGISTRY
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.v1 import trade_pb2 as pb

KEYS_DB = 11  # the registry and presence keys are global to the store: a database of its own


def fresh(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{KEYS_DB}")
    client.flushdb()
    return client


def claim(store: RedisTradeStore, principal: str, request_id: str, amount: str):
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_RECEIVED, mode=pb.TRADING_MODE_PAPER,
                            amount_in=amount)
    return store.claim(principal, request_id, f"fp-{amount}", result,
                       pb.TradeRequest(request_id=request_id, amount=amount))


def test_one_callers_request_id_never_names_another_callers_trade(redis_server):
    store = RedisTradeStore(fresh(redis_server), "replica-a")
    assert claim(store, "alice:bot", "t1", "1") is None  # alice:bot's trade t1
    assert claim(store, "alice", "bot:t1", "2") is None  # alice's own bot:t1: a new trade, not a conflict
    assert store.get("alice", "bot:t1").result.amount_in == "2"
    assert store.get("alice:bot", "t1").result.amount_in == "1"
    assert store.get("alice", "t1") is None and store.get("alice:bot", "bot:t1") is None
    assert store.request_of("alice", "bot:t1").amount == "2"  # (what a mismatch is compared with)
    assert store.request_of("alice", "t1") is None
    for key_of in (RedisTradeStore.trade_key, events_stream_key, _sent_key):
        assert key_of("alice", "bot:t1") != key_of("alice:bot", "t1")
        assert key_of("jwt", "sam:x") != key_of("jwt:sam", "x")


def test_a_trade_whose_request_id_holds_colons_is_adopted_from_a_dead_replica(redis_server):
    client = fresh(redis_server)
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    assert claim(a, "jwt:sam", "desk:7:buy", "3") is None
    client.sadd(REGISTRY, "replica-a")  # its presence key never set: it is dead
    (adopted,) = b.adopt("replica-a")
    assert (adopted.record.principal_id, adopted.record.request_id) == ("jwt:sam", "desk:7:buy")
    assert client.hget(RedisTradeStore.trade_key("jwt:sam", "desk:7:buy"), "replica") == b"replica-b"
