"""Two LIVE executors (two replicas) trading one wallet, with what replicas share in Redis (the
trade store, each one's journal of sends, the reservation book): the trades in flight on one
count against the limits on the other, so together they never spend, buy or risk more than
the wallet and the limits allow (on books of their own, each admitted trades as if the other's
were not there), and byte-identical swaps built on both for two requests are told apart (one
signature would have landed once for both, each trade reporting the one fill)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from live_support import LAMPORTS, SOL, USDC, fund, lamports, token_amount, wallet_tx_count

from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_reservations import SharedReservations
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.v1 import trade_pb2 as pb

# check: (config, wallet (SOL, USDC), each trade, how many run at once, how many fit, refusal reason)
CASES = {
    # 10 SOL is worth 1,500 USDC: two buys of ~1.33 SOL fit under 2,000, a third does not.
    "MINT_EXPOSURE": (dict(max_mint_exposure=Decimal("2000")), (10, 10_000), (USDC, SOL, "200"), 4, 2, "RISK_LIMIT"),
    "INSUFFICIENT_FUNDS": ({}, (1, 100), (USDC, SOL, "60"), 2, 1, "INSUFFICIENT_FUNDS"),
}


@pytest.fixture
def wallet_book(redis_server):
    """A shared book for one test's wallet (its keys are per wallet address)."""
    def book(wallet, replica_id: str = "") -> SharedReservations:
        return SharedReservations(redis_server.client(), str(wallet.pubkey()), lease_s=30, replica_id=replica_id)
    return book


@pytest.fixture
def make_replicas(make_live, redis_server, tmp_path, wallet_book):
    """make_replicas(wallet, **live_config) → two started Harnesses, as two gateway replicas on
    one Redis run them (a principal of the test's own: the session's Redis outlives tests)."""
    async def make(wallet, **config):
        replicas = []
        for name in ("a", "b"):
            client = redis_server.client()
            replica = await make_live(wallet, directory=tmp_path / name, store=RedisTradeStore(client, name),
                                      orders=SharedLiveOrders(tmp_path / name / "live_orders.db", client, name),
                                      reservations=wallet_book(wallet, name), **config)
            replica.principal = f"p-{wallet.pubkey()}"
            replicas.append(replica)
        return replicas
    return make


@pytest.mark.parametrize("check", list(CASES))
async def test_trades_on_two_replicas_count_each_other_against_the_limits(make_replicas, host, wallet_book,
                                                                          check: str) -> None:
    config, (sol, usdc), (input_mint, output_mint, amount), at_once, fit, reason = CASES[check]
    wallet = fund(host.devnet, sol * LAMPORTS, {"USDC": usdc * 10**6})
    replicas = await make_replicas(wallet, **config)

    runs = await asyncio.gather(*(
        replicas[i % 2].run(replicas[i % 2].order(f"two-{check}-{i}", input_mint, output_mint, amount))
        for i in range(at_once)))

    filled = [r for r in runs if r.outcome.status == pb.TRADE_STATUS_FILLED]
    assert len(filled) == fit, [(r.outcome.status, r.outcome.error) for r in runs]
    for run in runs:
        if run.outcome.status != pb.TRADE_STATUS_FILLED:
            assert run.outcome.status == pb.TRADE_STATUS_REJECTED and run.outcome.error.reason == reason, run.outcome
    assert sum(r.orders.count() for r in replicas) == fit  # refused before signing: nothing else signed
    owner = wallet.pubkey()
    assert wallet_tx_count(host.devnet, owner) == fit
    if check == "MINT_EXPOSURE":
        assert lamports(host.devnet, owner) * 150 // 1000 <= 2000 * 10**6  # the holding's value, in USDC
    else:
        assert token_amount(host.devnet, owner, USDC) == 40 * 10**6
    # One transaction per filled trade: each fill is its own.
    assert len({r.signature for r in filled}) == fit
    # Every trade is final: nothing is left held in the shared book.
    assert not any(r.executor.safety.holds((r.principal, f"two-{check}-{i}")) for r in replicas for i in range(at_once))
    assert not redis_held(wallet_book(wallet))


def redis_held(book: SharedReservations) -> dict:
    return book._r.hgetall(book._held_key)


async def test_a_trade_in_flight_on_one_replica_is_set_aside_on_the_other(make_replicas, host, rules,
                                                                          devnet_config) -> None:
    wallet = fund(host.devnet, 1 * LAMPORTS, {"USDC": 100 * 10**6})
    a, b = await make_replicas(wallet)
    rules.drop_sends = 10**9  # lost in flight: A's trade stays pending until its blockhash expires
    submitted = asyncio.Event()
    on_a = asyncio.create_task(a.run(a.order("pending-on-a", USDC, SOL, "60"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)

    refused = await b.run(b.order("on-b", USDC, SOL, "60"))
    assert refused.outcome.status == pb.TRADE_STATUS_REJECTED, refused.outcome
    error = refused.outcome.error
    assert error.reason == "INSUFFICIENT_FUNDS", error
    assert "has 40 USDC once the 60 USDC that trades in flight may spend is set aside" in error.message
    assert b.orders.count() == 0  # nothing signed on B

    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)  # A's expires: nothing spent
    expired = await asyncio.wait_for(on_a, 30)
    assert expired.outcome.status == pb.TRADE_STATUS_EXPIRED, expired.outcome
    rules.drop_sends = 0
    allowed = await b.run(b.order("on-b-after", USDC, SOL, "60"))
    assert allowed.outcome.status == pb.TRADE_STATUS_FILLED, allowed.outcome
