"""Regressions from the outside QA pass of LIVE trading.

1. A transaction that landed while the RPC withheld its status was reported EXPIRED ("nothing
   was charged") and never booked, although the wallet paid.
2. Selling a token the wallet has no token account for answered INTERNAL with the raw chain
   error of the swap's simulation, instead of INSUFFICIENT_FUNDS; a swap that fails its
   simulation before send is a refusal (nothing sent, nothing charged), not an internal error.
"""

from __future__ import annotations

import asyncio

import pytest
from live_support import JUP, SOL, USDC, eventually, lamports, token_amount, wallet_tx_count
from solders.pubkey import Pubkey

from tradewire.core.errors import Code
from tradewire.core.executors.live.outcomes import chain_error
from tradewire.core.store.live_orders import LANDED, PENDING
from tradewire.devnet.constants import TOKEN_ACCOUNT_LEN
from tradewire.devnet.spl_token import token_account
from tradewire.v1 import trade_pb2 as pb

LIVE = pb.TRADING_MODE_LIVE
SWAP = "/swap/v1/swap"  # the swap API's build (and simulate) endpoint


def assert_booked_once_as_the_chain_shows(h, host, signature: str) -> None:
    """The LIVE book equals the wallet on chain (seeded from it, then this one fill, once)."""
    owner = h.wallet.pubkey()
    holdings = h.store.holdings("alice", LIVE)
    assert holdings[USDC].amount == token_amount(host.devnet, owner, USDC)
    assert holdings[SOL].amount == lamports(host.devnet, owner)
    assert h.orders.get(signature).booked == 2


async def start_held_trade(h, host, request_id: str):
    """A USDC→SOL trade that lands while the RPC's recent status cache never shows it."""
    submitted = asyncio.Event()
    task = asyncio.create_task(h.run(h.order(request_id, USDC, SOL, "5"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    await eventually(lambda: wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1)  # it landed
    return task


# -- 1. landed, but the status was withheld past the blockhash's validity ----------------------------


@pytest.mark.parametrize("found_by", ["history_search", "get_transaction"])
async def test_a_landed_transaction_whose_status_is_withheld_is_filled_and_booked_not_expired(
        make_live, host, rules, devnet_config, found_by: str) -> None:
    h = await make_live()
    rules.hold_statuses = True  # a lagging status cache: the per-round status read answers null
    rules.hold_history = found_by == "get_transaction"  # ...and its history search too: only the ledger tells
    task = await start_held_trade(h, host, f"held-{found_by}")
    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)  # past its last valid height

    run = await asyncio.wait_for(task, 10)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert run.outcome.error is None and run.outcome.fill.amount_in == 5 * 10**6
    assert h.orders.get(run.signature).state == LANDED
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1 and len(set(rules.sends)) == 1
    assert_booked_once_as_the_chain_shows(h, host, run.signature)


async def test_an_expiry_check_the_rpc_cannot_answer_leaves_the_trade_pending(make_live, host, rules,
                                                                              devnet_config) -> None:
    h = await make_live()
    rules.hold_statuses = rules.hold_history = True
    rules.fail_methods["getTransaction"] = -1  # the node answers an error to every ledger read
    task = await start_held_trade(h, host, "held-unanswered")
    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)

    await eventually(lambda: rules.requests.get("getTransaction", 0) >= 3)  # asked, round after round
    signature = h.orders.for_request("alice", "held-unanswered").signature
    assert not task.done() and h.orders.get(signature).state == PENDING  # not concluded EXPIRED
    health = h.executor.health()  # an operator is told, and why
    assert not health.ok
    assert "1 transaction(s) past their blockhash validity that the RPC node cannot look up" in health.message
    assert "Transaction history is not available from this node" in health.message

    rules.fail_methods.clear()  # the node answers again
    run = await asyncio.wait_for(task, 10)
    assert "cannot look up" not in h.executor.health().message
    assert run.outcome.status == pb.TRADE_STATUS_FILLED and run.signature == signature
    assert_booked_once_as_the_chain_shows(h, host, signature)


# -- 2. funds before building; a failed simulation is a refusal ----------------------------------------


async def test_selling_a_token_the_wallet_has_no_account_for_is_refused_for_funds(make_live, host, rules) -> None:
    h = await make_live()  # SOL and USDC; no JUP account
    before = lamports(host.devnet, h.wallet.pubkey())

    run = await h.run(h.order("sell-unheld", JUP, USDC, "1"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "INSUFFICIENT_FUNDS" and error.code == Code.FAILED_PRECONDITION
    assert "needs 1 JUP, has 0" in error.message
    assert rules.requests.get(SWAP, 0) == 0  # refused from the quote, before building
    assert rules.sends == [] and h.orders.count() == 0 and lamports(host.devnet, h.wallet.pubkey()) == before


async def test_a_swap_that_fails_its_simulation_when_built_is_rejected_in_words(make_live, host, rules) -> None:
    h = await make_live()
    # The wallet holds JUP, but in a token account that is not its associated one: the balance
    # is there (funds check passes), the swap's transfer from the associated account cannot run.
    held = Pubkey.new_unique()
    host.devnet.chain.set_account(held, token_account(Pubkey.from_string(JUP), h.wallet.pubkey(), 50 * 10**6,
                                                      host.devnet.chain.rent_exempt(TOKEN_ACCOUNT_LEN)))
    before = lamports(host.devnet, h.wallet.pubkey())

    run = await h.run(h.order("sell-non-ata", JUP, USDC, "1"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "RISK_LIMIT" and error.code == Code.FAILED_PRECONDITION
    assert error.metadata["check"] == "SIMULATION"
    assert "failed simulation" in error.message and "invalid account data" in error.message
    assert "nothing was sent or charged" in error.message and "{" not in error.message, error.message  # no raw JSON
    assert rules.requests.get(SWAP, 0) >= 1
    assert rules.sends == [] and rules.bundles == [] and lamports(host.devnet, h.wallet.pubkey()) == before


@pytest.mark.parametrize("where", ["before send", "in the RPC's preflight"])
def test_a_simulation_failure_before_send_is_a_refusal_not_internal(market, where: str) -> None:
    from tradewire.core.validation import validate_trade

    order = validate_trade(pb.TradeRequest(request_id="x", mode=LIVE, input_mint=USDC, output_mint=SOL, amount="1",
                                           slippage_bps=50), "alice", market)
    status, error = chain_error(order, {"InstructionError": [2, "InvalidAccountData"]}, where=where, charged=False,
                                sent=False)
    assert status == pb.TRADE_STATUS_REJECTED and error.reason == "RISK_LIMIT"
    assert error.message.endswith("instruction 2 failed: invalid account data; nothing was sent or charged")
