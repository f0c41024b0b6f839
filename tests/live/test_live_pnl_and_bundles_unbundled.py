"""A JITO_DONT_FRONT bundle taken apart: the swap (co-signed by the router) lands on its own,
and our own transaction in front of it — the dont-front marker's, which pays its fee — lands
later, while their blockhash is still valid. The trade is final only once the rest of its bundle
has landed or can no longer land, and every transaction of it that landed is booked: the LIVE
book follows the wallet to the lamport. (The swap was finalized at once and the marker's fee,
paid later, was never booked: the book drifted from the wallet.) Likewise the marker's
transaction landing alone while the swap never does: its fee is what the trade cost.

On a devnet of the test's own whose clock moves only when the test moves it."""

from __future__ import annotations

import asyncio

import pytest_asyncio
from live_support import LAMPORTS, SOL, USDC, assert_booked_once_as_the_chain_shows, eventually, fund, land, \
    still_devnet
from solders.transaction import VersionedTransaction

from tradewire.core.store.live_orders import LANDED, PENDING
from tradewire.v1 import trade_pb2 as pb


@pytest_asyncio.fixture
async def still():
    async with still_devnet() as host:
        yield host


async def swap_landed_alone(make_live, still):
    """The bundle swallowed by the engine (reported Failed), its swap landed alone and confirmed;
    returns once the executor has seen the swap land without the rest (or ended the trade)."""
    wallet = fund(still.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    h = await make_live(wallet, rpc_url=still.url, jupiter_url=still.url, jito_url=still.url)
    still.rules.drop_bundles = 1
    task = asyncio.create_task(h.run(h.order("unbundled", USDC, SOL, "6", strategy=pb.MEV_STRATEGY_JITO_DONT_FRONT,
                                              tip=10_000)))
    await eventually(lambda: still.rules.bundles)  # sent
    row = h.orders.for_request(h.principal, "unbundled")
    lead, swap = row.wires  # the router co-signs the swap: the marker rides in our own transaction before it
    assert swap == row.tx

    land(still, swap)
    still.devnet.chain.advance_slots(1)  # confirmed
    watch = lambda: h.executor.confirmer.watches.get(row.signature)  # noqa: E731
    await eventually(lambda: task.done() or (watch() is not None and "unbundled" in watch().extra))
    assert not task.done(), task.result().outcome  # not final: the marker's transaction may still land
    assert h.orders.get(row.signature).state == PENDING and h.executor.safety.holds((h.principal, "unbundled"))
    return h, task, row


def fee_of(still, wire: bytes) -> int:
    return still.devnet.chain.records[VersionedTransaction.from_bytes(wire).signatures[0]].fee


async def test_a_marker_transaction_landing_after_its_unbundled_swap_is_booked_with_it(make_live, still) -> None:
    h, task, row = await swap_landed_alone(make_live, still)
    lead, swap = row.wires
    rounds = still.rules.requests.get("getSignatureStatuses", 0)
    await eventually(lambda: still.rules.requests.get("getSignatureStatuses", 0) >= rounds + 5)  # still followed
    assert not task.done()

    land(still, lead)  # our marker's transaction, a few blocks later
    still.devnet.chain.advance_slots(1)
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    fees = run.outcome.fill.fees
    assert fees.base_fee_lamports + fees.priority_fee_lamports == fee_of(still, swap) + fee_of(still, lead)
    assert fees.jito_tip_lamports == 10_000 and run.outcome.fill.amount_in == 6 * 10**6
    assert h.orders.get(row.signature).state == LANDED
    assert_booked_once_as_the_chain_shows(h, still, row.signature)  # the marker's fee too


async def test_an_unbundled_swap_whose_marker_never_lands_is_final_once_their_blockhash_expired(
        make_live, still) -> None:
    h, task, row = await swap_landed_alone(make_live, still)
    lead, swap = row.wires
    chain = still.devnet.chain
    chain.advance_slots(row.last_valid_block_height - chain.block_height)  # its last valid height: still valid
    rounds = still.rules.requests.get("getSignatureStatuses", 0)
    await eventually(lambda: still.rules.requests.get("getSignatureStatuses", 0) >= rounds + 5)
    assert not task.done()

    chain.advance_slots(1)  # past it: the marker's transaction can never land now
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    fees = run.outcome.fill.fees
    assert fees.base_fee_lamports + fees.priority_fee_lamports == fee_of(still, swap)  # the swap's alone
    assert VersionedTransaction.from_bytes(lead).signatures[0] not in chain.records
    assert_booked_once_as_the_chain_shows(h, still, row.signature)


async def test_a_marker_transaction_that_lands_while_its_swap_never_does_is_booked_as_what_the_trade_cost(
        make_live, still) -> None:
    """The other way round: the marker's transaction lands alone, the swap never. The trade ends
    as a bundle that did not land (FAILED BUNDLE_NOT_LANDED), charged the marker's fee, booked."""
    wallet = fund(still.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    h = await make_live(wallet, rpc_url=still.url, jupiter_url=still.url, jito_url=still.url)
    still.rules.drop_bundles = 1
    task = asyncio.create_task(h.run(h.order("lead-alone", USDC, SOL, "6",
                                             strategy=pb.MEV_STRATEGY_JITO_DONT_FRONT, tip=10_000)))
    await eventually(lambda: still.rules.bundles)
    row = h.orders.for_request(h.principal, "lead-alone")
    lead, swap = row.wires
    watch = lambda: h.executor.confirmer.watches.get(row.signature)  # noqa: E731
    await eventually(lambda: task.done() or (watch() is not None and watch().engine_failed))  # reported Failed
    assert not task.done(), task.result().outcome

    land(still, lead)
    chain = still.devnet.chain
    chain.advance_slots(row.last_valid_block_height + 1 - chain.block_height)  # the swap can never land now
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FAILED, run.outcome
    error = run.outcome.error
    assert error.reason == "BUNDLE_NOT_LANDED" and "nothing was charged" not in error.message
    assert f"only the {fee_of(still, lead)} lamports of fees" in error.message
    fees = run.outcome.fill.fees
    assert fees.total_lamports == fee_of(still, lead) and run.outcome.fill.amount_in == 0
    assert VersionedTransaction.from_bytes(swap).signatures[0] not in chain.records
    assert_booked_once_as_the_chain_shows(h, still, row.signature)  # the marker's fee, booked
