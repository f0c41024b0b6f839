"""The day's realised PnL of LIVE bookings, counted across replicas in Redis: each booking once,
whichever replica reports it and however often; a count Redis did not take is sent before the
next check; and no check passes while Redis does not answer."""

import pytest
import redis

from support.redis_server import RedisServer
from tradewire.core.shared.redis_live_pnl import SharedPnlLiveOrders
from tradewire.core.store.live_orders import LANDED, LiveOrderStore


def booked_loss(journal: LiveOrderStore, signature: str, pnl_delta: int) -> None:
    """Journal a transaction through to its booking, as the LIVE executor does."""
    journal.prepare(signature=signature, principal="alice", request_id=f"r-{signature}", route="rpc", tx=b"tx",
                    bundle=(), bundle_id=None, last_valid_block_height=100, request=b"req", quote={"in_amount": 1})
    journal.mark_pending(signature)
    journal.finalize(signature, LANDED, {"status": 9})
    journal.claim_booking(signature)
    journal.booked(signature, pnl_delta)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_each_replicas_bookings_count_for_every_replica_once(own_redis, tmp_path):
    a = SharedPnlLiveOrders(tmp_path / "a.db", own_redis.client())
    b = SharedPnlLiveOrders(tmp_path / "b.db", own_redis.client())
    booked_loss(a, "sig-a", -1500)
    booked_loss(b, "sig-b", -700)
    a.booked("sig-a", -1500)  # reported again (a booking finished after a restart): counted once
    assert a.realized_since(0) == b.realized_since(0) == -2200
    assert LiveOrderStore(tmp_path / "b.db").realized_since(0) == -700  # each journal: its own only

    restarted = SharedPnlLiveOrders(tmp_path / "a.db", own_redis.client())  # recounts today's bookings: no-ops
    assert restarted.realized_since(0) == -2200


def test_a_booking_redis_did_not_take_is_counted_before_the_next_check(own_redis, tmp_path):
    journal = SharedPnlLiveOrders(tmp_path / "a.db", own_redis.client())
    booked_loss(journal, "sig-1", -1000)
    own_redis.halt(keep_data=True)
    booked_loss(journal, "sig-2", -500)  # booked in the journal; Redis is away
    with pytest.raises(redis.ConnectionError):  # no daily-loss check can pass meanwhile
        journal.realized_since(0)
    own_redis.start()
    assert journal.realized_since(0) == -1500


def test_bookings_journalled_while_redis_was_away_are_counted_at_the_next_start(own_redis, tmp_path):
    booked_loss(LiveOrderStore(tmp_path / "a.db"), "sig-1", -900)  # e.g. the count was lost with a crash
    assert SharedPnlLiveOrders(tmp_path / "a.db", own_redis.client()).realized_since(0) == -900
