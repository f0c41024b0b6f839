"""A replica records each LIVE transaction in Redis before its first send, so that another
replica adopting the trade knows what may be on the network. When Redis does not answer that
record, the transaction is not sent: voided, and the trade refused STORE_UNAVAILABLE (nothing
sent or charged; the caller may run it again). Sent unrecorded, an adopter would find nothing
sent and sign anew. (The Redis error escaped: the trade failed INTERNAL with a traceback.)"""

from __future__ import annotations

import pytest
import redis
from live_support import LAMPORTS, SOL, USDC, fund, lamports, wallet_tx_count

from support.redis_server import RedisServer
from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import VOID
from tradewire.v1 import trade_pb2 as pb


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_a_transaction_redis_does_not_record_is_voided_and_refused_store_unavailable(own_redis, tmp_path) -> None:
    client = own_redis.client()
    store = RedisTradeStore(client, "replica-a")
    result = pb.TradeResult(request_id="r1", status=pb.TRADE_STATUS_SIMULATED, mode=pb.TRADING_MODE_LIVE)
    assert store.claim("alice", "r1", "fp", result, pb.TradeRequest(request_id="r1")) is None
    journal = SharedLiveOrders(tmp_path / "a.db", client, "replica-a")
    journal.prepare(signature="sig-1", principal="alice", request_id="r1", route="rpc", tx=b"swap", bundle=(),
                    bundle_id=None, last_valid_block_height=321, request=b"request", quote={})
    own_redis.halt()

    with pytest.raises(TradewireError) as refused:
        journal.mark_pending("sig-1")

    assert refused.value.reason == "STORE_UNAVAILABLE"
    assert journal.get("sig-1").state == VOID and journal.for_request("alice", "r1") is None  # never to be sent
    journal.close()


async def test_a_live_trade_whose_send_redis_cannot_record_is_not_sent(own_redis, make_live, host, rules,
                                                                       tmp_path) -> None:
    client = own_redis.client()
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    h = await make_live(wallet, store=RedisTradeStore(client, "replica-a"),
                        orders=SharedLiveOrders(tmp_path / "live_orders.db", client, "replica-a"))
    before = lamports(host.devnet, wallet.pubkey())

    def no_answer(**_kwargs):  # Redis stops answering right at the record before the send
        raise redis.ConnectionError("Connection refused")

    h.orders._record_if_owner = no_answer
    run = await h.run(h.order("unrecorded", USDC, SOL, "2"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    assert run.outcome.error.reason == "STORE_UNAVAILABLE"
    assert rules.sends == [] and rules.bundles == []  # nothing went out
    assert h.orders.for_request(h.principal, "unrecorded") is None and h.orders.count(VOID) == 1
    assert not h.executor.safety.holds((h.principal, "unrecorded"))
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 0 and lamports(host.devnet, wallet.pubkey()) == before
