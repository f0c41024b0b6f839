"""A LIVE transaction is recorded in Redis before it is sent, only while its replica owns the
trade: so a replica that adopts a dead one's committed LIVE trade either finds the one
transaction that may be on the network, or knows none was sent — and none ever will be."""

import uuid

import pytest
import redis

from support.redis_server import RedisServer
from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_replicas import presence_key
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import PENDING, VOID
from tradewire.v1 import trade_pb2 as pb

HANDOVER_DB = 9  # the registry and presence keys are global to the store: a database of its own
LIVE = pb.TRADING_MODE_LIVE


@pytest.fixture
def client(redis_server):
    c = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{HANDOVER_DB}")
    c.flushdb()
    return c


@pytest.fixture
def replicas(client, tmp_path):
    """(store, journal) of replicas A and B, both settling LIVE trades."""
    out = []
    for name in ("a", "b"):
        store = RedisTradeStore(client, f"replica-{name}")
        store.settles_live = True
        out.append((store, SharedLiveOrders(tmp_path / f"{name}.db", client, f"replica-{name}")))
    return out


def claimed(store: RedisTradeStore, mode: int = LIVE) -> pb.TradeResult:
    request_id = f"t-{uuid.uuid4().hex[:8]}"
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_RECEIVED, mode=mode)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    return result


def advanced(store: RedisTradeStore, result: pb.TradeResult, status: int) -> pb.TradeResult:
    result.status = status
    store.save("alice", result)
    return result


def prepared(journal: SharedLiveOrders, request_id: str, signature: str, route: str = "rpc"):
    return journal.prepare(signature=signature, principal="alice", request_id=request_id, route=route,
                           tx=b"swap-" + signature.encode(), bundle=(b"tip", b"swap") if route == "jito" else (),
                           bundle_id="bid" if route == "jito" else None, last_valid_block_height=321,
                           request=b"request-bytes", quote={"in_amount": 5, "out_amount": 7})


def dies(client, replica: str) -> None:
    client.sadd("tw:replicas", replica)
    client.delete(presence_key(replica))


def test_a_sent_transaction_is_followed_by_the_replica_that_adopts_its_trade(client, replicas):
    (a, on_a), (b, on_b) = replicas
    trade = advanced(a, claimed(a), pb.TRADE_STATUS_SIMULATED)  # committed
    prepared(on_a, trade.request_id, "sig-1", route="jito")
    assert on_a.mark_pending("sig-1") and on_a.get("sig-1").state == PENDING  # recorded, then sent
    on_a.set_bundle_id("sig-1", "engine-bid")  # the block engine named the bundle otherwise
    dies(client, "replica-a")

    [adopted] = b.adopt("replica-a")
    assert adopted.record.request_id == trade.request_id
    row = on_b.adopt("alice", trade.request_id)
    sent = on_a.get("sig-1")
    assert (row.signature, row.state, row.route, row.tx, row.bundle, row.bundle_id) == (
        "sig-1", PENDING, "jito", sent.tx, sent.bundle, "engine-bid")
    assert (row.last_valid_block_height, row.request, row.quote) == (321, b"request-bytes", sent.quote)
    assert on_b.for_request("alice", trade.request_id).signature == "sig-1"  # now in B's journal
    assert on_b.adopt("alice", trade.request_id).signature == "sig-1"  # asked again: the same row


def test_a_replica_whose_trade_was_taken_over_before_it_sent_never_sends(client, replicas):
    (a, on_a), (b, on_b) = replicas
    trade = advanced(a, claimed(a), pb.TRADE_STATUS_SIGNED)  # signed, not yet committed
    prepared(on_a, trade.request_id, "sig-2")
    dies(client, "replica-a")  # A stalls here; B adopts the trade
    assert [u.record.request_id for u in b.adopt("replica-a")] == [trade.request_id]

    assert not on_a.mark_pending("sig-2")  # A wakes up: the record is refused, so it does not send
    assert on_a.get("sig-2").state == VOID
    assert on_b.adopt("alice", trade.request_id) is None  # nothing was sent


def test_committed_live_trades_move_only_to_a_replica_that_settles_live_from_one_that_records_its_sends(
        client, replicas):
    (a, _), (b, _) = replicas
    unrecorded = advanced(a, claimed(a), pb.TRADE_STATUS_SUBMITTED)
    client.hdel(RedisTradeStore.trade_key("alice", unrecorded.request_id), "handover")  # claimed by an older version
    recorded = advanced(a, claimed(a), pb.TRADE_STATUS_SUBMITTED)
    dies(client, "replica-a")
    b.settles_live = False
    assert b.adopt("replica-a") == []  # B cannot follow LIVE transactions: A's restart settles them
    b.settles_live = True
    assert [u.record.request_id for u in b.adopt("replica-a")] == [recorded.request_id]
    assert [u.record.request_id for u in a.unfinished()] == [unrecorded.request_id]


def test_a_signature_is_claimed_for_one_trade_across_replicas(replicas):
    """Byte-identical swaps built for two requests on two replicas: the second builds again."""
    (_, a), (_, b) = replicas
    assert a.claim_signature("sig-same", "alice", "r1")
    assert not b.claim_signature("sig-same", "alice", "r2")  # another trade's transaction
    assert b.claim_signature("sig-same", "alice", "r1")  # the same trade (its replica changed): still its own
    assert b.claim_signature("sig-other", "alice", "r2")


def test_no_signature_is_claimed_while_redis_does_not_answer(tmp_path):
    own = RedisServer(tmp_path / "redis").start()
    try:
        journal = SharedLiveOrders(tmp_path / "j.db", own.client(), "replica-a")
        own.halt(keep_data=True)
        with pytest.raises(TradewireError) as refused:
            journal.claim_signature("sig-1", "alice", "r1")
        assert refused.value.reason == "STORE_UNAVAILABLE"
    finally:
        own.stop()
