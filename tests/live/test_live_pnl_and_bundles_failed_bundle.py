"""A Jito bundle the block engine reports Failed while its blockhash is in its last blocks: the
re-simulation that tells why answers BlockhashNotFound (a validator's simulation keeps back a
blockhash's last blocks, Agave's MAX_TRANSACTION_FORWARDING_DELAY), yet the blockhash is still
valid and the signed bytes can still land. The trade is followed by its signature until its last
valid block height has passed — filled and booked if it lands, EXPIRED if it does not — never
ended EXPIRED on the simulation's word (a swap that then landed was never booked).

On a devnet of the test's own whose clock moves only when the test moves it: the heights the
trade sees are the ones the test sets."""

from __future__ import annotations

import asyncio

import pytest_asyncio
from live_support import (
    LAMPORTS, SOL, USDC, assert_booked_once_as_the_chain_shows, eventually, fund, land, still_devnet, wallet_tx_count,
)

from tradewire.core.store.live_orders import EXPIRED, LANDED, PENDING
from tradewire.v1 import trade_pb2 as pb

MARGIN = 6  # blocks of a 150-block blockhash life simulation refuses (the devnet models Agave's)


@pytest_asyncio.fixture
async def still():
    async with still_devnet() as host:
        yield host


async def failed_in_its_last_blocks(make_live, still):
    """A Jito bundle taken by the engine, never landed, reported Failed; the chain moved into its
    blockhash's last blocks before the executor simulated the swap to tell why. Returns the
    harness, the running trade, its journal row, once the executor has said why."""
    wallet = fund(still.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    h = await make_live(wallet, rpc_url=still.url, jupiter_url=still.url, jito_url=still.url)
    still.rules.drop_bundles = 1
    chain = still.devnet.chain
    simulate = h.executor.rpc.simulate

    async def simulate_late(wire: bytes):
        if still.rules.bundles:  # the diagnosis, after the send: two blocks before its last valid height
            row = h.orders.for_request(h.principal, "late")
            chain.advance_slots(row.last_valid_block_height - 2 - chain.block_height)
        return await simulate(wire)

    h.executor.rpc.simulate = simulate_late
    task = asyncio.create_task(h.run(h.order("late", USDC, SOL, "3", strategy=pb.MEV_STRATEGY_JITO_BUNDLE,
                                             tip=10_000)))
    row = await eventually(lambda: h.orders.for_request(h.principal, "late"))
    watch = lambda: h.executor.confirmer.watches.get(row.signature)  # noqa: E731
    await eventually(lambda: task.done() or (watch() is not None and watch().engine_failed))
    assert not task.done(), task.result().outcome  # not EXPIRED: its blockhash is still valid
    assert still.rules.requests.get("isBlockhashValid") == 1
    assert h.orders.get(row.signature).state == PENDING and h.executor.safety.holds((h.principal, "late"))
    assert chain.block_height > row.last_valid_block_height - MARGIN  # (simulation refuses it here)
    return h, task, row


async def test_a_failed_bundle_in_its_blockhashs_last_blocks_that_then_lands_is_filled_and_booked(
        make_live, still) -> None:
    h, task, row = await failed_in_its_last_blocks(make_live, still)
    chain = still.devnet.chain

    land(still, row.tx)  # a leader takes the same bytes
    chain.advance_slots(1)  # confirmed
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert run.signature == row.signature and h.orders.get(row.signature).state == LANDED
    assert run.outcome.fill.amount_in == 3 * 10**6 and run.outcome.fill.fees.jito_tip_lamports == 10_000
    assert wallet_tx_count(still.devnet, h.wallet.pubkey()) == 1
    assert_booked_once_as_the_chain_shows(h, still, row.signature)
    assert len(still.rules.bundles) == 1  # the engine said Failed: never sent again


async def test_a_failed_bundle_in_its_blockhashs_last_blocks_that_never_lands_expires_with_it(
        make_live, still) -> None:
    h, task, row = await failed_in_its_last_blocks(make_live, still)
    still.devnet.chain.advance_slots(3)  # past its last valid height: now it can never land

    run = await asyncio.wait_for(task, 20)
    assert run.outcome.status == pb.TRADE_STATUS_EXPIRED, run.outcome
    error = run.outcome.error
    assert error.reason == "TRADE_EXPIRED" and f"last valid height {row.last_valid_block_height}" in error.message
    assert run.outcome.fill.fees.total_lamports == 0
    assert h.orders.get(row.signature).state == EXPIRED and not h.executor.safety.holds((h.principal, "late"))
    assert wallet_tx_count(still.devnet, h.wallet.pubkey()) == 0
