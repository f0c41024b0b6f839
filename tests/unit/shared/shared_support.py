"""Set-up shared by the Redis store tests."""

import uuid

import redis

from tradewire.core.portfolio import Holding
from tradewire.core.shared.redis_store import RedisTradeStore

SOL = "sol-mint"


def funded_replicas(client: redis.Redis, mode: int) -> tuple[RedisTradeStore, RedisTradeStore, str]:
    """Two replicas' stores on one Redis, and a fresh principal holding 1,000,000 SOL units."""
    a, b = RedisTradeStore(client, "replica-a"), RedisTradeStore(client, "replica-b")
    principal = f"p-{uuid.uuid4().hex[:8]}"
    a.ensure_wallet(principal, mode, [Holding(SOL, 1_000_000, 0, 0)])
    return a, b, principal
