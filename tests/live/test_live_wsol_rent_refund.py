"""Rent that comes back to the wallet: a swap through wrapped SOL closes the wallet's wSOL
account, and its rent (2,039,280 lamports) returns as native SOL. The LIVE book counts SOL as
native lamports plus wrapped SOL, so it must follow the wallet on chain to the lamport in every
combination of token accounts created and closed, and say which part of the cost was fees and
which was rent paid or refunded.
"""

from __future__ import annotations

import pytest
from live_support import LAMPORTS, SOL, USDC, fund, lamports, token_amount, wallet_tx_count
from solders.pubkey import Pubkey

from tradewire.core.order import ATA_RENT_LAMPORTS
from tradewire.devnet.spl_token import ata
from tradewire.v1 import trade_pb2 as pb

LIVE = pb.TRADING_MODE_LIVE
WRAPPED = LAMPORTS // 2  # 0.5 SOL held as wrapped SOL before the trade
NETWORK_FEE = 10_000  # two signers (the wallet and the pool authority), no priority fee


def sol_on_chain(devnet, owner: Pubkey) -> int:
    """SOL as the book counts it: native lamports plus wrapped SOL."""
    return lamports(devnet, owner) + token_amount(devnet, owner, SOL)


def has_account(devnet, owner: Pubkey, mint: str) -> bool:
    devnet.chain.sync()
    return devnet.chain.get_account(ata(owner, Pubkey.from_string(mint))) is not None


CASES = {
    # name: (wallet tokens before, input, output, amount, rent paid, rent refunded)
    "sol_in_closes_wsol_and_creates_the_usdc_account": ({SOL: WRAPPED}, SOL, USDC, "0.2",
                                                        ATA_RENT_LAMPORTS, ATA_RENT_LAMPORTS),
    "sol_in_closes_wsol_into_an_existing_usdc_account": ({SOL: WRAPPED, USDC: 100 * 10**6}, SOL, USDC, "0.2",
                                                         0, ATA_RENT_LAMPORTS),
    "sol_out_closes_wsol": ({SOL: WRAPPED, USDC: 100 * 10**6}, USDC, SOL, "10", 0, ATA_RENT_LAMPORTS),
    "sol_in_through_a_wsol_account_opened_and_closed_in_the_swap": ({USDC: 100 * 10**6}, SOL, USDC, "0.2", 0, 0),
    "sol_out_through_a_wsol_account_opened_and_closed_in_the_swap": ({USDC: 100 * 10**6}, USDC, SOL, "10", 0, 0),
    "sol_in_creating_the_usdc_account": ({}, SOL, USDC, "0.2", ATA_RENT_LAMPORTS, 0),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_book_follows_the_wallet_when_token_accounts_are_created_or_closed(make_live, host, rules,
                                                                                      case: str) -> None:
    tokens, input_mint, output_mint, amount, rent_paid, rent_refunded = CASES[case]
    wallet = fund(host.devnet, 5 * LAMPORTS, tokens)
    owner = wallet.pubkey()
    assert has_account(host.devnet, owner, SOL) == (SOL in tokens)
    h = await make_live(wallet)
    sol_before = sol_on_chain(host.devnet, owner)

    run = await h.run(h.order(f"rent-{list(CASES).index(case)}", input_mint, output_mint, amount))

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome.error
    fill = run.outcome.fill
    assert not has_account(host.devnet, owner, SOL)  # the swap leaves no wrapped SOL behind
    # The book is the wallet, to the lamport.
    sol_after = sol_on_chain(host.devnet, owner)
    holdings = h.store.holdings("alice", LIVE)
    assert holdings[SOL].amount == sol_after
    assert holdings[USDC].amount == token_amount(host.devnet, owner, USDC)
    assert h.orders.get(run.signature).booked == 2
    # Which part of the cost was what.
    assert fill.fees.base_fee_lamports + fill.fees.priority_fee_lamports == NETWORK_FEE
    assert fill.fees.jito_tip_lamports == 0 and fill.fees.ata_rent_lamports == rent_paid
    assert fill.fees.total_lamports == NETWORK_FEE + rent_paid
    assert fill.fees.rent_refunded_lamports == rent_refunded  # (not a cost: outside the total)
    assert fill.fees.to_proto().rent_refunded_lamports == rent_refunded
    # The traded amounts are exact, and the rest of the SOL change is fees and rent.
    sol_in, sol_out = (fill.amount_in, 0) if input_mint == SOL else (0, fill.amount_out)
    if input_mint == SOL:
        assert fill.amount_in == 200_000_000
    assert sol_after - sol_before == sol_out - sol_in - fill.fees.total_lamports + rent_refunded


async def test_the_reported_wallet_books_the_lamports_the_chain_shows(make_live, host, rules) -> None:
    """5 SOL plus 0.5 wrapped SOL, 0.2 SOL sold for USDC: the refunded rent of the wrapped-SOL
    account pays for the new USDC account, so only the network fee is spent."""
    wallet = fund(host.devnet, 5 * LAMPORTS, {SOL: WRAPPED})
    h = await make_live(wallet)

    run = await h.run(h.order("rent-reported", SOL, USDC, "0.2"))

    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert lamports(host.devnet, wallet.pubkey()) == 5_500_000_000 - 200_000_000 - NETWORK_FEE == 5_299_990_000
    assert h.store.holdings("alice", LIVE)[SOL].amount == 5_299_990_000


async def test_a_rent_refund_is_booked_once_when_the_booking_is_finished_after_a_restart(make_live, host, rules,
                                                                                        tmp_path) -> None:
    """The journal keeps the refund with the outcome's fees, so a booking cut after its claim
    and finished by the next start credits it as well, and only once."""
    wallet = fund(host.devnet, 5 * LAMPORTS, {SOL: WRAPPED, USDC: 100 * 10**6})
    owner = wallet.pubkey()
    first = await make_live(wallet, directory=tmp_path / "node")

    def stop_before_the_holdings_write(*args, **kwargs):
        raise RuntimeError("the process stops here")

    first.store.apply_fill = stop_before_the_holdings_write  # claimed, holdings untouched
    run = await first.run(first.order("rent-restart", USDC, SOL, "10"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert [o.signature for o in first.orders.booking_interrupted()] == [run.signature]
    await first.executor.close()

    for _ in range(2):  # the restart books it; a second restart books nothing again
        again = await make_live(wallet, directory=tmp_path / "node")
        holdings = again.store.holdings("alice", LIVE)
        assert holdings[SOL].amount == sol_on_chain(host.devnet, owner)
        assert holdings[USDC].amount == token_amount(host.devnet, owner, USDC) == 90 * 10**6
        assert again.orders.get(run.signature).booked == 2
        await again.executor.close()
    assert wallet_tx_count(host.devnet, owner) == 1
