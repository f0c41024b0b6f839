"""The day's realised PnL of LIVE bookings, counted across replicas in Redis: each booking once,
whichever replica reports it and however often; a count Redis did not take is sent before the
next check; and no check passes while Redis does not answer."""

import pytest
import redis

from support.redis_server import RedisServer
from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import LANDED, LiveOrderStore
from tradewire.v1 import trade_pb2 as pb


def booked_loss(journal: LiveOrderStore, signature: str, pnl_delta: int | None, client: redis.Redis | None = None) -> None:
    """Journal a transaction of a trade this replica claimed through to its booking (claimed
    only, when ``pnl_delta`` is None), as the LIVE executor does."""
    replica = getattr(journal, "replica_id", "replica-a")
    store = RedisTradeStore(client or journal._r, replica)
    store.claim("alice", f"r-{signature}", "fp", pb.TradeResult(request_id=f"r-{signature}", mode=pb.TRADING_MODE_LIVE))
    journal.prepare(signature=signature, principal="alice", request_id=f"r-{signature}", route="rpc", tx=b"tx",
                    bundle=(), bundle_id=None, last_valid_block_height=100, request=b"req", quote={"in_amount": 1})
    journal.mark_pending(signature)
    journal.finalize(signature, LANDED, {"status": 9})
    journal.claim_booking(signature)
    if pnl_delta is not None:
        journal.booked(signature, pnl_delta)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_each_replicas_bookings_count_for_every_replica_once(own_redis, tmp_path):
    a = SharedLiveOrders(tmp_path / "a.db", own_redis.client(), "replica-a")
    b = SharedLiveOrders(tmp_path / "b.db", own_redis.client(), "replica-b")
    booked_loss(a, "sig-a", -1500)
    booked_loss(b, "sig-b", -700)
    a.booked("sig-a", -1500)  # reported again (a booking finished after a restart): counted once
    assert a.realized_since(0) == b.realized_since(0) == -2200
    assert LiveOrderStore(tmp_path / "b.db").realized_since(0) == -700  # each journal: its own only

    restarted = SharedLiveOrders(tmp_path / "a.db", own_redis.client(), "replica-a")  # recounts today's bookings: no-ops
    assert restarted.realized_since(0) == -2200


def test_a_booking_redis_did_not_take_is_counted_before_the_next_check(own_redis, tmp_path):
    journal = SharedLiveOrders(tmp_path / "a.db", own_redis.client(), "replica-a")
    booked_loss(journal, "sig-1", -1000)
    booked_loss(journal, "sig-2", None)
    own_redis.halt(keep_data=True)
    journal.booked("sig-2", -500)  # booked in the journal; Redis is away
    with pytest.raises(redis.ConnectionError):  # no daily-loss check can pass meanwhile
        journal.realized_since(0)
    own_redis.start()
    assert journal.realized_since(0) == -1500


def test_bookings_journalled_while_redis_was_away_are_counted_at_the_next_start(own_redis, tmp_path):
    booked_loss(LiveOrderStore(tmp_path / "a.db"), "sig-1", -900, own_redis.client())  # the count lost with a crash
    assert SharedLiveOrders(tmp_path / "a.db", own_redis.client(), "replica-a").realized_since(0) == -900
