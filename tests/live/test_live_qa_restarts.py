"""LIVE trades across restarts, where money is at stake.

1. A Jito trade still in flight when the gateway restarted without a block engine configured was
   re-broadcast through the plain RPC: its swap went out alone, outside its bundle — without
   the transaction that keeps anything from being placed in front of it, its tip paid anyway.
2. With the journal shared through Redis (several replicas), Redis not answering when the block
   engine's id for a just-sent bundle was recorded for the other replicas failed the trade
   right after its send: its swap landed and was booked, its trade said it failed.
"""

from __future__ import annotations

import asyncio

import redis
from live_support import SOL, USDC, eventually, wallet_tx_count
from solders.transaction import VersionedTransaction

from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import EXPIRED, LANDED, PENDING
from tradewire.devnet.jito import bundle_id as devnet_bundle_id
from tradewire.v1 import trade_pb2 as pb


async def test_a_jito_trade_found_in_flight_without_a_block_engine_is_never_sent_through_the_rpc(
        make_live, host, rules, tmp_path, devnet_config) -> None:
    first = await make_live(directory=tmp_path / "node")
    rules.drop_bundles = 1  # taken by the engine, not landed (the process stops before it is told)
    submitted = asyncio.Event()
    order = first.order("no-engine", USDC, SOL, "2", strategy=pb.MEV_STRATEGY_JITO_DONT_FRONT, tip=10_000)
    task = asyncio.create_task(first.run(order, {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    signature = first.orders.for_request("alice", "no-engine").signature
    task.cancel()  # the process stops
    await asyncio.gather(task, return_exceptions=True)
    await first.executor.close()

    second = await make_live(first.wallet, directory=tmp_path / "node", jito_url=None)
    watch = second.executor.confirmer.watches[signature]
    assert second.orders.get(signature).state == PENDING
    await eventually(lambda: second.executor.confirmer.rounds >= 10 or rules.sends)
    assert rules.sends == [] and watch.broadcasts == 0  # the swap never went out alone

    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)
    await eventually(lambda: second.orders.get(signature).state == EXPIRED)
    assert rules.sends == [] and wallet_tx_count(host.devnet, first.wallet.pubkey()) == 0


async def test_redis_not_answering_right_after_a_bundle_is_sent_does_not_fail_the_trade(make_live, host, rules,
                                                                                        redis_server, tmp_path) -> None:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/12")  # a database of its own
    client.flushdb()
    trades = RedisTradeStore(client, "replica-a")
    trades.settles_live = True  # this replica owns its trades and records its sends
    journal = SharedLiveOrders(tmp_path / "live_orders.db", client, "replica-a")
    records = journal._record_if_owner

    def record(*args, **kwargs):  # the send is recorded; then Redis stops answering
        if journal.in_state(PENDING):
            raise redis.ConnectionError("Redis went away")
        return records(*args, **kwargs)

    journal._record_if_owner = record
    h = await make_live(orders=journal)
    order = h.order("redis-gone", USDC, SOL, "2", strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000)
    result = pb.TradeResult(request_id="redis-gone", status=pb.TRADE_STATUS_SIMULATED, mode=pb.TRADING_MODE_LIVE)
    assert trades.claim("alice", "redis-gone", "fp", result, order.request) is None

    run = await h.run(order)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    row = journal.get(run.signature)
    engine_id = devnet_bundle_id([VersionedTransaction.from_bytes(w) for w in row.wires])
    assert row.state == LANDED and row.bundle_id == engine_id  # the engine's id, here at least
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
