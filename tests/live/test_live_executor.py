"""The LIVE executor against the devnet: real transactions over the mainnet wire formats.

Every amount, fee and signature a trade reports is checked against what the chain says over
JSON-RPC (getTransaction's meta, getBalance), to the atomic unit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from decimal import Decimal

import httpx
import pytest
import redis
from live_support import (
    BONK, JUP, LAMPORTS, SOL, USDC, eventually, fund, lamports, move_pool, token_amount, wallet_tx_count,
)
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tradewire.core.errors import Code
from tradewire.core.executors.live.breaker import CLOSED, HALF_OPEN, OPEN
from tradewire.core.executors.live.fills import compute_budget
from tradewire.core.executors.live.jito_client import DONT_FRONT_ACCOUNT, TIP_ACCOUNTS
from tradewire.core.order import ATA_RENT_LAMPORTS
from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import EXPIRED, LANDED, PENDING
from tradewire.v1 import trade_pb2 as pb

S = pb
PATH = [S.TRADE_STATUS_QUOTED, S.TRADE_STATUS_SIGNED, S.TRADE_STATUS_SIMULATED, S.TRADE_STATUS_SUBMITTED,
        S.TRADE_STATUS_CONFIRMED, S.TRADE_STATUS_FILLED]
LIVE = pb.TRADING_MODE_LIVE


async def rpc(host, method: str, params: list) -> dict:
    async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
        body = (await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).json()
    assert "error" not in body, body
    return body["result"]


async def chain_tx(host, signature: str) -> dict:
    return await rpc(host, "getTransaction", [signature, {"encoding": "json", "commitment": "confirmed",
                                                          "maxSupportedTransactionVersion": 0}])


def token_delta(meta: dict, owner: Pubkey, mint: str) -> int:
    def total(entries):
        return sum(int(e["uiTokenAmount"]["amount"]) for e in entries if e["owner"] == str(owner) and e["mint"] == mint)

    return total(meta["postTokenBalances"]) - total(meta["preTokenBalances"])


def tip_received(tx: dict) -> int:
    keys = tx["transaction"]["message"]["accountKeys"]
    meta = tx["meta"]
    return sum(meta["postBalances"][i] - meta["preBalances"][i] for i, k in enumerate(keys) if k in TIP_ACCOUNTS)


# -- fills match the chain -------------------------------------------------------------------


async def test_live_fill_matches_the_chain_to_the_atomic_unit(make_live, host, rules) -> None:
    wallet = fund(host.devnet, 5 * LAMPORTS)  # SOL only: buying USDC creates its token account
    h = await make_live(wallet)
    sol_before = lamports(host.devnet, wallet.pubkey())

    run = await h.run(h.order("fill-sol-usdc", SOL, USDC, "0.5"))

    assert run.statuses == PATH, run
    fill = run.outcome.fill
    tx = await chain_tx(host, fill.signature)
    meta = tx["meta"]
    assert meta["err"] is None and fill.slot == tx["slot"]
    assert tx["transaction"]["signatures"][0] == fill.signature
    assert fill.amount_out == token_delta(meta, wallet.pubkey(), USDC) == token_amount(host.devnet, wallet.pubkey(), USDC)
    assert fill.amount_in == 500_000_000
    assert fill.fees.base_fee_lamports + fill.fees.priority_fee_lamports == meta["fee"] == 10_000  # two signers
    assert fill.fees.ata_rent_lamports == ATA_RENT_LAMPORTS and fill.fees.jito_tip_lamports == 0
    sol_after = lamports(host.devnet, wallet.pubkey())
    assert sol_before - sol_after == fill.amount_in + fill.fees.total_lamports
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 1
    # The real fill is booked in the LIVE positions (the book starts from the wallet).
    holdings = h.store.holdings("alice", LIVE)
    assert holdings[USDC].amount == fill.amount_out and holdings[SOL].amount == sol_after
    assert h.orders.for_request("alice", "fill-sol-usdc").state == LANDED


async def test_exact_out_fill_and_token_to_token(make_live, host, rules) -> None:
    h = await make_live()
    usdc_before = token_amount(host.devnet, h.wallet.pubkey(), USDC)
    run = await h.run(h.order("exact-out-jup", USDC, JUP, "250", exact_out=True, slippage_bps=100))
    assert run.statuses == PATH, run
    fill = run.outcome.fill
    meta = (await chain_tx(host, fill.signature))["meta"]
    assert fill.amount_out == token_delta(meta, h.wallet.pubkey(), JUP) == 250_000_000
    assert fill.amount_in == -token_delta(meta, h.wallet.pubkey(), USDC) == usdc_before - token_amount(
        host.devnet, h.wallet.pubkey(), USDC)
    assert fill.amount_in <= fill.quote.other_amount_threshold
    assert fill.fees.ata_rent_lamports == ATA_RENT_LAMPORTS  # the JUP account was created
    assert fill.fees.base_fee_lamports + fill.fees.priority_fee_lamports == meta["fee"]


# -- MEV protection: every mode lands ------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["NONE", "PRIORITY_FEE", "JITO_BUNDLE", "JITO_DONT_FRONT"])
async def test_each_mev_mode_lands(make_live, host, rules, strategy: str) -> None:
    h = await make_live()
    code = getattr(pb, f"MEV_STRATEGY_{strategy}")
    jito = strategy.startswith("JITO")
    order = h.order(f"mev-{strategy}", USDC, SOL, "30", strategy=code, tip=25_000 if jito else 0,
                    cu_price=50_000 if strategy == "PRIORITY_FEE" else 0)
    lamports_before = lamports(host.devnet, h.wallet.pubkey())

    run = await h.run(order)

    assert run.statuses == PATH, run
    fill = run.outcome.fill
    row = h.orders.for_request("alice", order.request_id)
    txs = [VersionedTransaction.from_bytes(w) for w in row.wires]
    landed = [await chain_tx(host, str(t.signatures[0])) for t in txs]
    assert all(t["meta"]["err"] is None for t in landed)
    assert fill.fees.base_fee_lamports + fill.fees.priority_fee_lamports == sum(t["meta"]["fee"] for t in landed)
    assert fill.fees.base_fee_lamports == 5_000 * sum(t.message.header.num_required_signatures for t in txs)
    swap_tx = next(t for t in txs if str(t.signatures[0]) == fill.signature)
    assert fill.fees.priority_fee_lamports == compute_budget(swap_tx).priority_fee
    if strategy == "PRIORITY_FEE":
        budget = compute_budget(swap_tx)
        assert budget.unit_price == 50_000 and fill.fees.priority_fee_lamports == math.ceil(50_000 * budget.unit_limit / 1e6) > 0
    else:
        assert fill.fees.priority_fee_lamports == 0
    assert fill.fees.jito_tip_lamports == sum(tip_received(t) for t in landed) == (25_000 if jito else 0)
    # SOL bought, fees and tip paid: the wallet's lamports say the same.
    assert lamports(host.devnet, h.wallet.pubkey()) - lamports_before == fill.amount_out - fill.fees.total_lamports
    swap_meta = landed[txs.index(swap_tx)]["meta"]
    assert fill.amount_in == -token_delta(swap_meta, h.wallet.pubkey(), USDC) == 30_000_000
    if jito:
        assert rules.sends == [] and len(rules.bundles) >= 1
        assert rules.bundles[0] == list(row.wires)
        async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
            status = (await http.post("/api/v1/bundles", json={"jsonrpc": "2.0", "id": 1, "method":
                                                               "getInflightBundleStatuses", "params": [[row.bundle_id]]})).json()
        assert status["result"]["value"][0]["status"] == "Landed"
    else:
        assert rules.bundles == [] and rules.sends == [row.tx]
    if strategy == "JITO_DONT_FRONT":
        first = txs[0]  # the marker rides at bundle index 0
        keys = list(first.message.account_keys)
        assert DONT_FRONT_ACCOUNT in keys and not first.message.is_maybe_writable(keys.index(DONT_FRONT_ACCOUNT))


async def test_dont_front_marker_in_our_own_transaction_lands(host, rules) -> None:
    """The sole-signer path (real Jupiter): the marker is added to the swap's own message,
    which must still be a valid transaction. Checked on-chain with a tip transfer we sign."""
    from solders.hash import Hash
    from solders.message import MessageV0
    from solders.system_program import TransferParams, transfer

    from tradewire.core.executors.live.executor import _with_dont_front
    from tradewire.core.executors.live.wallet import Wallet

    payer = fund(host.devnet, LAMPORTS)
    blockhash = (await rpc(host, "getLatestBlockhash", []))["value"]["blockhash"]
    tip = Pubkey.from_string(TIP_ACCOUNTS[5])
    msg = MessageV0.try_compile(payer.pubkey(), [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=tip,
                                                                         lamports=2_000))], [], Hash.from_string(blockhash))
    tx = Wallet(payer).sign_new(_with_dont_front(msg))
    async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
        sent = (await http.post("/api/v1/bundles", json={"jsonrpc": "2.0", "id": 1, "method": "sendBundle", "params": [
            [base64.b64encode(bytes(tx)).decode()], {"encoding": "base64"}]})).json()
    assert "result" in sent, sent
    signature = str(tx.signatures[0])

    async def landed():
        value = (await rpc(host, "getSignatureStatuses", [[signature]]))["value"][0]
        return value and value["confirmationStatus"] in ("confirmed", "finalized") and value

    status = await eventually(landed)
    assert status["err"] is None
    assert str(DONT_FRONT_ACCOUNT) in (await chain_tx(host, signature))["transaction"]["message"]["accountKeys"]


# -- confirmation: slow, lost, expired, unknown ------------------------------------------------------


async def test_slow_confirmation_rebroadcasts_the_same_bytes_and_executes_once(make_live, host, rules) -> None:
    h = await make_live()
    usdc_before = token_amount(host.devnet, h.wallet.pubkey(), USDC)
    rules.drop_sends = 3  # the first three sends are lost in flight

    run = await h.run(h.order("slow-1", USDC, SOL, "20"))

    assert run.statuses == PATH, run
    assert len(rules.sends) >= 4 and len(set(rules.sends)) == 1  # re-broadcast: the same signed bytes
    assert h.executor.confirmer.rebroadcasts >= 3
    assert str(VersionedTransaction.from_bytes(rules.sends[0]).signatures[0]) == run.signature
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
    assert usdc_before - token_amount(host.devnet, h.wallet.pubkey(), USDC) == run.outcome.fill.amount_in == 20_000_000
    # The same bytes once more: the chain refuses to run them twice.
    async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
        again = (await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [
            base64.b64encode(rules.sends[0]).decode(), {"encoding": "base64"}]})).json()
    assert "AlreadyProcessed" in str(again) or "already been processed" in str(again)
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
    assert h.orders.get(run.signature).broadcasts >= 4


async def test_blockhash_expiry_ends_expired_without_resigning(make_live, host, rules, devnet_config) -> None:
    h = await make_live()
    before = (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC))
    rules.drop_sends = 10**9  # nothing ever reaches the chain
    submitted = asyncio.Event()
    task = asyncio.create_task(h.run(h.order("expire-1", USDC, SOL, "10"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    await eventually(lambda: len(rules.sends) >= 2)  # re-broadcasting while the blockhash is valid
    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)

    run = await asyncio.wait_for(task, 10)

    assert run.outcome.status == pb.TRADE_STATUS_EXPIRED
    assert run.outcome.error.reason == "TRADE_EXPIRED" and run.outcome.error.code == Code.DEADLINE_EXCEEDED
    assert run.outcome.fill.fees.total_lamports == 0 and run.outcome.fill.amount_out == 0
    assert len(set(rules.sends)) == 1  # never a new signature
    assert (await rpc(host, "getSignatureStatuses", [[run.signature]]))["value"] == [None]
    assert (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC)) == before
    assert h.orders.get(run.signature).state == EXPIRED
    assert h.store.holdings("alice", LIVE)[USDC].amount == before[1]  # nothing booked


async def test_transport_failure_after_send_stays_submitted_and_is_reconciled(make_live, host, rules) -> None:
    h = await make_live(http_timeout_s=0.3)
    rules.stall_sends = 1  # the send reaches the chain, its answer never comes back
    run = await h.run(h.order("stalled-1", USDC, SOL, "12"))
    assert run.statuses == PATH, run
    assert "sent" in run.progress[3].message
    assert "it gave no clear answer: its signature decides" in run.progress[3].message  # not a plain "sent"
    assert len(set(rules.sends)) == 1 and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
    meta = (await chain_tx(host, run.signature))["meta"]
    assert run.outcome.fill.amount_in == -token_delta(meta, h.wallet.pubkey(), USDC)


async def test_confirmation_polling_is_batched_across_trades(make_live, host, rules) -> None:
    h = await make_live()
    rules.hold_statuses = True
    events = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(h.run(h.order(f"batch-{i}", USDC, SOL, "3"), {pb.TRADE_STATUS_SUBMITTED: events[i]}))
             for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 15)
    await eventually(lambda: rules.status_batches and rules.status_batches[-1] == 5)
    calls_before = len(rules.status_batches)
    rules.hold_statuses = False
    runs = await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert all(r.outcome.status == pb.TRADE_STATUS_FILLED for r in runs)
    assert len({r.signature for r in runs}) == 5
    # One getSignatureStatuses per round covered all five trades.
    assert len(rules.status_batches) - calls_before <= 3
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 5


# -- slippage: the pool moved between quote and send ------------------------------------------------


async def test_pool_moved_before_landing_fails_aborted_with_the_fee_the_chain_charged(make_live, host, rules) -> None:
    h = await make_live()
    before = (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC))
    rules.before_send = lambda: move_pool(host.devnet, USDC, BONK, 600_000 * 10**6)  # a whale buys SOL first

    run = await h.run(h.order("moved-rpc", USDC, BONK, "100", slippage_bps=50,
                              strategy=pb.MEV_STRATEGY_PRIORITY_FEE, cu_price=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_FAILED
    assert run.outcome.error.reason == "SLIPPAGE_EXCEEDED" and run.outcome.error.code == Code.ABORTED
    tx = await chain_tx(host, run.signature)
    assert tx["meta"]["err"]["InstructionError"][1] == {"Custom": 6001}
    fees = run.outcome.fill.fees
    assert fees.total_lamports == tx["meta"]["fee"] == 10_000 + fees.priority_fee_lamports
    assert fees.priority_fee_lamports > 0 and fees.jito_tip_lamports == 0 and fees.ata_rent_lamports == 0
    assert run.outcome.fill.amount_in == run.outcome.fill.amount_out == 0
    after = (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC))
    assert after == (before[0] - fees.total_lamports, before[1])
    holdings = h.store.holdings("alice", LIVE)
    assert holdings[SOL].amount == after[0] and holdings[USDC].amount == after[1]
    assert SOL in {m for m in holdings}  # the fee was booked as a realised loss
    assert holdings[SOL].realized_pnl < 0


async def test_pool_moved_before_a_jito_bundle_lands_nothing_and_costs_nothing(make_live, host, rules) -> None:
    h = await make_live()
    before = (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC))
    rules.before_send = lambda: move_pool(host.devnet, USDC, BONK, 600_000 * 10**6)

    run = await h.run(h.order("moved-jito", USDC, BONK, "100", slippage_bps=50,
                              strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_FAILED
    assert run.outcome.error.reason == "SLIPPAGE_EXCEEDED" and run.outcome.error.code == Code.ABORTED
    assert "nothing was charged" in run.outcome.error.message
    assert run.outcome.fill.fees.total_lamports == 0
    assert (await rpc(host, "getSignatureStatuses", [[run.signature]]))["value"] == [None]
    assert (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC)) == before


# -- failure handling: breaker, retries, errors ----------------------------------------------------


async def test_breaker_opens_after_the_configured_failures_and_closes_after_cool_down(make_live, host, rules) -> None:
    h = await make_live(breaker_failures=3, breaker_cooldown_s=0.4, retry_attempts=1)
    breaker = h.executor.quote_upstream.breaker
    rules.fail_paths["/swap/v1/quote"] = -1
    for i in range(3):
        run = await h.run(h.order(f"brk-{i}", USDC, SOL, "1"))
        assert run.outcome.status == pb.TRADE_STATUS_REJECTED  # nothing sent: a refusal its retry reruns
        assert run.outcome.error.reason == "UPSTREAM_UNAVAILABLE" and run.outcome.error.code == Code.UNAVAILABLE
        assert "nothing was sent" in run.outcome.error.message
    assert breaker.state == OPEN
    asked = rules.requests["/swap/v1/quote"]
    refused = await h.run(h.order("brk-open", USDC, SOL, "1"))
    assert refused.outcome.status == pb.TRADE_STATUS_REJECTED
    error = refused.outcome.error
    assert error.reason == "CIRCUIT_OPEN" and error.code == Code.UNAVAILABLE and 0 < error.retry_after_s <= 0.4
    assert rules.requests["/swap/v1/quote"] == asked  # failed fast: the upstream was not asked
    assert not h.executor.health().ok and "quote open" in h.executor.health().message
    rules.fail_paths.clear()
    await eventually(lambda: breaker.state == HALF_OPEN, timeout=5)
    healed = await h.run(h.order("brk-healed", USDC, SOL, "1"))
    assert healed.outcome.status == pb.TRADE_STATUS_FILLED
    assert breaker.state == CLOSED and breaker.opened_count == 1
    assert rules.sends and len(rules.sends) == 1  # only the healed trade was ever sent


async def test_transient_failures_are_retried_with_backoff_before_send(make_live, host, rules) -> None:
    h = await make_live(retry_attempts=3)
    rules.fail_paths["/swap/v1/quote"] = 2
    rules.fail_paths["/swap/v1/swap"] = 1
    run = await h.run(h.order("retry-ok", USDC, SOL, "1"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert rules.requests["/swap/v1/quote"] == 3 and rules.requests["/swap/v1/swap"] == 2
    rules.fail_paths["/swap/v1/swap"] = -1
    run = await h.run(h.order("retry-exhausted", USDC, SOL, "1"))
    assert run.outcome.status == pb.TRADE_STATUS_REJECTED and run.outcome.error.reason == "UPSTREAM_UNAVAILABLE"
    assert len(rules.sends) == 1  # the refused trade sent nothing
    assert h.orders.for_request("alice", "retry-exhausted") is None


async def test_no_route_and_internal_errors_leak_nothing(make_live, host, rules) -> None:
    h = await make_live()
    bad_quote = {"error": "boom", "errorCode": "SOMETHING_INTERNAL"}

    def transport(inner):
        class Broken(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                if request.url.path == "/swap/v1/swap":
                    return httpx.Response(400, json=bad_quote)
                return await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Broken()

    h2 = await make_live(h.wallet, wrap_transports={"quote": transport})
    run = await h2.run(h2.order("internal-1", USDC, SOL, "1"))
    assert run.outcome.status == pb.TRADE_STATUS_FAILED
    assert run.outcome.error.reason == "INTERNAL" and run.outcome.error.message == "internal error"


# -- safety checks ------------------------------------------------------------------------------


SAFETY_CASES = {
    # name: (config, wallet funding (lamports, tokens), trade (input, output, amount), reason, check)
    "kill_switch": (dict(kill_switch="halt"), None, (USDC, SOL, "1"), "RISK_LIMIT", "KILL_SWITCH"),
    "reduce_only": (dict(kill_switch="reduce_only"), None, (USDC, SOL, "1"), "RISK_LIMIT", "REDUCE_ONLY"),
    "allow_list": (dict(allowed_mints=("SOL", "USDC")), None, (USDC, JUP, "1"), "RISK_LIMIT", "MINT_NOT_ALLOWED"),
    "max_notional": (dict(max_notional=Decimal("100")), None, (SOL, USDC, "1"), "RISK_LIMIT", "MAX_NOTIONAL"),
    "mint_exposure": (dict(max_mint_exposure=Decimal("1000")), None, (USDC, SOL, "10"), "RISK_LIMIT", "MINT_EXPOSURE"),
    "exposure_cap_by_address": (dict(mint_exposure_caps={SOL: Decimal("1000")}), None, (USDC, SOL, "10"),
                                "RISK_LIMIT", "MINT_EXPOSURE"),
    "sol_reserve": (dict(min_sol_reserve=Decimal("10")), None, (USDC, SOL, "1"), "RISK_LIMIT", "SOL_RESERVE"),
    "token_funds": ({}, (LAMPORTS, {"USDC": 5 * 10**6}), (USDC, SOL, "50"), "INSUFFICIENT_FUNDS", None),
    "sol_funds": ({}, (10**7, {}), (SOL, USDC, "1"), "INSUFFICIENT_FUNDS", None),
    "price_impact": (dict(max_price_impact_bps=5), (10**6 * LAMPORTS, {}), (SOL, USDC, "500"), "PRICE_IMPACT_TOO_HIGH",
                     None),
}


@pytest.mark.parametrize("case", list(SAFETY_CASES))
async def test_every_safety_check_refuses_with_its_reason(make_live, host, rules, case: str) -> None:
    config, funding, (input_mint, output_mint, amount), reason, check = SAFETY_CASES[case]
    wallet = fund(host.devnet, *funding) if funding else None
    h = await make_live(wallet, **config)
    before = lamports(host.devnet, h.wallet.pubkey())
    run = await h.run(h.order(f"safety-{case}", input_mint, output_mint, amount))
    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run
    assert run.outcome.error.reason == reason
    assert run.outcome.error.code == Code.FAILED_PRECONDITION
    if check:
        assert f"risk check {check}" in run.outcome.error.message and run.outcome.error.metadata["check"] == check
    assert rules.sends == [] and rules.bundles == [] and h.orders.count() == 0  # nothing signed, nothing sent
    assert lamports(host.devnet, h.wallet.pubkey()) == before


async def test_kill_switch_file_engages_at_run_time_and_reduce_only_allows_selling(make_live, host, rules,
                                                                                   tmp_path) -> None:
    switch = tmp_path / "kill"
    h = await make_live(kill_switch_file=switch)
    switch.write_text("reduce_only")
    refused = await h.run(h.order("ro-buy", USDC, SOL, "1"))
    assert refused.outcome.error.reason == "RISK_LIMIT" and "REDUCE_ONLY" in refused.outcome.error.message
    allowed = await h.run(h.order("ro-sell", SOL, USDC, "0.2"))  # selling into USDC reduces risk
    assert allowed.outcome.status == pb.TRADE_STATUS_FILLED
    switch.write_text("halt")
    halted = await h.run(h.order("halt-sell", SOL, USDC, "0.2"))
    assert "KILL_SWITCH" in halted.outcome.error.message
    switch.unlink()
    resumed = await h.run(h.order("resumed-buy", USDC, SOL, "1"))
    assert resumed.outcome.status == pb.TRADE_STATUS_FILLED


async def test_daily_loss_limit_stops_trading_once_reached(make_live, host, rules) -> None:
    # Buying SOL with USDC realises exactly the fees as a loss (USDC leaves at its cost):
    # 10,000 lamports at 150 USDC/SOL is 0.0015 USDC, past a 0.001 USDC limit.
    h = await make_live(daily_loss_limit=Decimal("0.001"))
    first = await h.run(h.order("loss-1", USDC, SOL, "1"))
    assert first.outcome.status == pb.TRADE_STATUS_FILLED
    row = h.orders.for_request("alice", "loss-1")
    assert row.pnl_delta == -(first.outcome.fill.fees.total_lamports * 150 // 1000)
    stopped = await h.run(h.order("loss-2", USDC, SOL, "1"))
    assert stopped.outcome.status == pb.TRADE_STATUS_REJECTED
    assert stopped.outcome.error.reason == "RISK_LIMIT" and "DAILY_LOSS" in stopped.outcome.error.message


async def test_the_daily_loss_limit_holds_across_replicas_trading_one_wallet(make_live, host, rules, redis_server,
                                                                           tmp_path) -> None:
    """Each replica journals its own transactions; the day's realised loss is counted in Redis."""
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter("tw:live:pnl*"):  # today's count starts from this test
        client.delete(key)
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})

    async def replica(name: str):
        return await make_live(wallet, directory=tmp_path / name, daily_loss_limit=Decimal("0.001"),
                               store=RedisTradeStore(redis.Redis.from_url(redis_server.url), f"replica-{name}"),
                               orders=SharedLiveOrders(tmp_path / name / "live_orders.db", client, f"replica-{name}"))

    a, b = await replica("a"), await replica("b")
    first = await a.run(a.order("loss-on-a", USDC, SOL, "1"))  # realises the fees as a loss, past the limit
    assert first.outcome.status == pb.TRADE_STATUS_FILLED
    assert b.orders.for_request("alice", "loss-on-a") is None  # not in B's journal...
    stopped = await b.run(b.order("loss-on-b", USDC, SOL, "1"))  # ...yet B stops
    assert stopped.outcome.status == pb.TRADE_STATUS_REJECTED
    assert stopped.outcome.error.reason == "RISK_LIMIT" and "DAILY_LOSS" in stopped.outcome.error.message


async def test_priority_fee_is_capped_by_the_request(make_live, host, rules) -> None:
    h = await make_live()
    run = await h.run(h.order("capped", USDC, SOL, "1", strategy=pb.MEV_STRATEGY_PRIORITY_FEE, cu_price=5_000_000,
                              max_priority_fee=3_000))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert 0 < run.outcome.fill.fees.priority_fee_lamports <= 3_000
    auto = await h.run(h.order("auto-level", USDC, SOL, "1", strategy=pb.MEV_STRATEGY_PRIORITY_FEE,
                               max_priority_fee=500))
    assert auto.outcome.status == pb.TRADE_STATUS_FILLED
    assert 0 < auto.outcome.fill.fees.priority_fee_lamports <= 500


async def test_a_requested_compute_unit_limit_caps_the_priority_fee_at_price_times_limit(make_live, host,
                                                                                         rules) -> None:
    """The router sizes a LIVE transaction's compute-unit limit; the fee the request named with its
    own limit (5,000,000 micro-lamports × 600 units = 3,000 lamports) is not exceeded."""
    h = await make_live()
    run = await h.run(h.order("cu-limited", USDC, SOL, "1", strategy=pb.MEV_STRATEGY_PRIORITY_FEE, cu_price=5_000_000,
                              cu_limit=600))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    assert 0 < run.outcome.fill.fees.priority_fee_lamports <= 3_000


# -- never twice, and restarts ----------------------------------------------------------------------


async def test_executing_the_same_request_again_follows_the_first_transaction(make_live, host, rules) -> None:
    h = await make_live()
    order = h.order("again-1", USDC, SOL, "2")
    first = await h.run(order)
    sends = list(rules.sends)
    second = await h.run(order)  # a re-run of the request (the runner resuming it, a retry)
    assert second.statuses == [pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_CONFIRMED, pb.TRADE_STATUS_FILLED]
    assert second.outcome == first.outcome
    assert rules.sends == sends and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1


async def test_restart_reconciles_a_pending_transaction_by_signature(make_live, host, rules, tmp_path) -> None:
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 1_000 * 10**6})
    first = await make_live(wallet, directory=tmp_path / "node")
    order = first.order("restart-1", USDC, SOL, "7")
    rules.hold_statuses = True  # it lands, but this process never learns it
    submitted = asyncio.Event()
    task = asyncio.create_task(first.run(order, {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    signature = first.orders.for_request("alice", "restart-1").signature
    await eventually(lambda: wallet_tx_count(host.devnet, wallet.pubkey()) == 1)
    task.cancel()  # the process dies
    await asyncio.gather(task, return_exceptions=True)
    await first.executor.close()
    rules.hold_statuses = False

    second = await make_live(wallet, directory=tmp_path / "node")
    assert second.orders.get(signature).state == PENDING
    record = second.store.get("alice", "restart-1")
    assert record.result.status == pb.TRADE_STATUS_SUBMITTED and record.result.signature == signature
    outcome = await asyncio.wait_for(second.executor.reconcile(order, record.result), 10)

    assert outcome.status == pb.TRADE_STATUS_FILLED and outcome.fill.signature == signature
    # What the normal path publishes before FILLED, for the runner to publish too.
    assert [(p.status, p.message) for p in outcome.progress] == [
        (pb.TRADE_STATUS_CONFIRMED, f"transaction confirmed in slot {outcome.fill.slot}")]
    meta = (await chain_tx(host, signature))["meta"]
    assert outcome.fill.amount_in == -token_delta(meta, wallet.pubkey(), USDC) == 7_000_000
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 1 and len(set(rules.sends)) == 1


async def test_restart_completes_the_trade_record_when_no_runner_reconciles(make_live, host, rules, tmp_path) -> None:
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 1_000 * 10**6})
    first = await make_live(wallet, directory=tmp_path / "node2")
    rules.drop_sends = 10**9  # lost in flight; the restarted executor re-broadcasts the journaled bytes
    submitted = asyncio.Event()
    task = asyncio.create_task(first.run(first.order("restart-2", USDC, SOL, "4"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await first.executor.close()
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 0
    rules.drop_sends = 0

    second = await make_live(wallet, directory=tmp_path / "node2")

    def final():
        record = second.store.get("alice", "restart-2")
        return record if record.result.status == pb.TRADE_STATUS_FILLED else None

    record = await eventually(final, timeout=10)
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 1 and len(set(rules.sends)) == 1
    assert record.result.signature == str(VersionedTransaction.from_bytes(rules.sends[0]).signatures[0])
    assert [e.stage for e in record.events][-2:] == [pb.TRADE_STATUS_CONFIRMED, pb.TRADE_STATUS_FILLED]
    assert record.events[-1].terminal and record.events[-1].result.status == pb.TRADE_STATUS_FILLED
    assert second.recorder.fills == [record.result.signature]


@pytest.mark.parametrize("stopped", ["after_the_claim", "after_the_holdings_changed"])
async def test_a_booking_interrupted_by_a_stop_is_completed_exactly_once_at_restart(make_live, host, rules, tmp_path,
                                                                                   stopped: str) -> None:
    """Booking has no await inside, so a real kill cannot land between its steps on purpose:
    the first executor's booking is cut in-process at that point instead (as if the process
    died there), then executors are started on the same data."""
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 1_000 * 10**6})
    first = await make_live(wallet, directory=tmp_path / "node3")
    if stopped == "after_the_claim":
        def stop_before_the_holdings_write(*args, **kwargs):
            raise RuntimeError("the process stops here")

        first.store.apply_fill = stop_before_the_holdings_write  # claimed (booked=1), holdings untouched
    else:
        first.orders.booked = lambda *args: None  # holdings changed, booked stays 1
    run = await first.run(first.order("interrupted-1", USDC, SOL, "3"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    signature, fees = run.signature, run.outcome.fill.fees.total_lamports
    assert [o.signature for o in first.orders.booking_interrupted()] == [signature]
    usdc_booked = first.store.holdings("alice", LIVE)[USDC].amount
    assert usdc_booked == (1_000 * 10**6 if stopped == "after_the_claim" else 997 * 10**6)
    await first.executor.close()

    def book_matches_the_chain(h) -> None:
        holdings = h.store.holdings("alice", LIVE)
        assert holdings[USDC].amount == token_amount(host.devnet, wallet.pubkey(), USDC) == 997 * 10**6
        assert holdings[SOL].amount == lamports(host.devnet, wallet.pubkey())
        row = h.orders.get(signature)
        assert row.booked == 2 and row.pnl_delta == -(fees * 150 // 1000)  # the fees, as in the daily loss test

    second = await make_live(wallet, directory=tmp_path / "node3")
    assert second.orders.booking_interrupted() == []
    book_matches_the_chain(second)
    await second.executor.close()

    third = await make_live(wallet, directory=tmp_path / "node3")  # a second restart books nothing again
    book_matches_the_chain(third)
    assert wallet_tx_count(host.devnet, wallet.pubkey()) == 1


# -- wallet health and secrets ---------------------------------------------------------------------


async def test_wallet_health_is_read_only_and_no_secret_is_ever_logged(make_live, host, rules, caplog, tmp_path) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    h = await make_live()
    secret_b58 = str(h.wallet)
    assert await h.executor.wallet_balance() == lamports(host.devnet, h.wallet.pubkey())
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0
    await eventually(lambda: "wallet balance ok" in h.executor.health().message)
    run = await h.run(h.order("secret-1", USDC, SOL, "1"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED
    rules.before_send = lambda: move_pool(host.devnet, USDC, BONK, 600_000 * 10**6)
    failed = await h.run(h.order("secret-2", USDC, BONK, "50"))
    assert failed.outcome.error is not None
    secret_bytes = bytes(h.wallet)[:32]
    texts = [caplog.text, repr(run), repr(failed), str(failed.outcome.error), h.executor.health().message]
    assert not any(secret_b58 in t or secret_b58[:24] in t for t in texts)
    for db in tmp_path.glob("*.db*"):
        data = db.read_bytes()
        assert secret_bytes not in data and secret_b58.encode() not in data


async def test_a_landed_transaction_that_cannot_be_read_yet_stays_submitted(make_live, host, rules) -> None:
    """Never guess: until the fill can be read from the chain, the trade stays SUBMITTED."""
    broken = {"left": 2}

    def transport(inner):
        class Flaky(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                body = request.content
                if broken["left"] and b'"getTransaction"' in body:
                    broken["left"] -= 1
                    ident = json.loads(body)["id"]
                    return httpx.Response(200, json={"jsonrpc": "2.0", "id": ident, "result": {"slot": 1}})
                return await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Flaky()

    h = await make_live(wrap_transports={"rpc": transport})
    run = await h.run(h.order("unreadable-1", USDC, SOL, "2"))
    assert run.statuses == PATH, run
    assert broken["left"] == 0
    meta = (await chain_tx(host, run.signature))["meta"]
    assert run.outcome.fill.amount_in == -token_delta(meta, h.wallet.pubkey(), USDC) == 2_000_000


async def test_a_bundle_the_block_engine_drops_fails_for_that_reason_not_as_an_internal_error(
        make_live, host, rules) -> None:
    h = await make_live()
    before = (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC))
    rules.drop_bundles = 1  # outbid in the auction: taken, never landed, then reported Failed

    run = await h.run(h.order("outbid-jito", USDC, SOL, "10", strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_FAILED, run.outcome
    error = run.outcome.error
    assert error.reason == "BUNDLE_NOT_LANDED" and error.code == Code.ABORTED
    assert error.metadata["bundle_id"] in rules.dropped_bundles
    assert "tip of 10000 lamports" in error.message and "nothing was charged" in error.message
    assert "jito_tip_lamports" in error.message
    assert run.outcome.fill.fees.total_lamports == 0
    assert (await rpc(host, "getSignatureStatuses", [[run.signature]]))["value"] == [None]
    assert (lamports(host.devnet, h.wallet.pubkey()), token_amount(host.devnet, h.wallet.pubkey(), USDC)) == before
