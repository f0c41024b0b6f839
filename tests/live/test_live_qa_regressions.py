"""Regressions from the outside QA passes of LIVE trading.

1. A transaction that landed while the RPC withheld its status was reported EXPIRED ("nothing
   was charged") and never booked, although the wallet paid.
2. Selling a token the wallet has no token account for answered INTERNAL with the raw chain
   error of the swap's simulation, instead of INSUFFICIENT_FUNDS; a swap that fails its
   simulation before send is a refusal (nothing sent, nothing charged), not an internal error.
3. Trades run at once all passed the exposure, SOL reserve, daily loss and funds checks, each
   against the wallet as if alone: the checks now count what trades in flight will spend and
   buy, until each is final — also across a restart.
4. An ExactOut trade was valued at its quoted input, not the most it may pay, for MAX_NOTIONAL.
5. An expired blockhash was told as a failed simulation (RISK_LIMIT), or a Jito bundle's as
   outbid (BUNDLE_NOT_LANDED).
6. Malformed upstream answers logged tracebacks, and one before send failed the trade INTERNAL
   for good instead of a refusal the caller may retry.
7. A slippage failure found when the swap was built was FAILED, its quote lost.
8. An RPC outage was logged every confirmation round, and health kept saying the wallet
   balance was ok.
9. A trade whose transaction had landed but was not final yet was counted twice — in the
   balances read and in its reservation — so trades that fit were refused.
10. Identical trades whose builds kept coming out as another request's transaction ended
    FAILED INTERNAL, for good, though nothing was sent.
11. INSUFFICIENT_FUNDS did not name the unit of what trades in flight may spend, nor give it in
    the error's metadata.
12. A blockhash the RPC's preflight no longer knew ended the trade EXPIRED for good, though the
    preflight forwards nothing it refuses.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import re
import time
from decimal import Decimal

import httpx
import pytest
from live_support import (
    BONK, JUP, LAMPORTS, SOL, USDC, assert_booked_once_as_the_chain_shows, eventually, fund, lamports, move_pool,
    token_amount, wallet_tx_count,
)
from solders.pubkey import Pubkey

from tradewire.core import lifecycle
from tradewire.core.errors import Code
from tradewire.core.executors.live.executor import BUILD_ATTEMPTS
from tradewire.core.executors.live.outcomes import chain_error
from tradewire.core.retry import transient_reason
from tradewire.core.store.live_orders import EXPIRED, LANDED, PENDING, VOID
from tradewire.devnet.constants import TOKEN_ACCOUNT_LEN
from tradewire.devnet.spl_token import token_account
from tradewire.v1 import trade_pb2 as pb

LIVE = pb.TRADING_MODE_LIVE
SWAP = "/swap/v1/swap"  # the swap API's build (and simulate) endpoint


def retryable_refusal(outcome, words: str):
    """The outcome is a refusal before send that the runner retries and the caller may re-run
    (REJECTED UPSTREAM_UNAVAILABLE, nothing sent or charged, saying ``words``); its error."""
    assert outcome.status == pb.TRADE_STATUS_REJECTED, outcome
    error = outcome.error
    assert error.reason == "UPSTREAM_UNAVAILABLE" and error.code == Code.UNAVAILABLE
    assert words in error.message and "nothing was sent or charged" in error.message
    assert transient_reason(error) is not None
    assert lifecycle.may_run_again(pb.TradeResult(status=outcome.status, error=pb.TradeError(code=error.code)))
    return error


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


# -- helpers: an upstream whose answers the test chooses ------------------------------------------


def intercepting(answer):
    """A transport wrapper: ``answer(request)`` returns the response to give instead of the
    upstream's, or None to let the request through."""
    def wrap(inner):
        class Intercepting(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                response = answer(request)
                return response if response is not None else await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Intercepting()

    return wrap


def rpc_call(request) -> tuple[str | None, object]:
    """(method, id) of a JSON-RPC request."""
    try:
        body = json.loads(request.content)
    except ValueError:
        return None, None
    return (body.get("method"), body.get("id")) if isinstance(body, dict) else (None, None)


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("tradewire.live") and r.exc_info]


# -- 3. trades in flight count against the limits ----------------------------------------------------------

# check: (config, wallet (SOL, USDC), each trade, how many run at once, how many fit, refusal reason)
IN_FLIGHT = {
    # 10 SOL is worth 1,500 USDC: two buys of ~1.33 SOL fit under 2,000, a third does not.
    "MINT_EXPOSURE": (dict(max_mint_exposure=Decimal("2000")), (10, 10_000), (USDC, SOL, "200"), 4, 2, "RISK_LIMIT"),
    # Each sale takes 1 SOL and its fees: one leaves 10.99, a second would leave 9.99.
    "SOL_RESERVE": (dict(min_sol_reserve=Decimal("10.5")), (12, 100), (SOL, USDC, "1"), 3, 1, "RISK_LIMIT"),
    # One trade may lose up to its slippage and fees (about 0.0075 USDC), past a 0.001 USDC limit.
    "DAILY_LOSS": (dict(daily_loss_limit=Decimal("0.001")), (10, 100), (USDC, SOL, "1"), 2, 1, "RISK_LIMIT"),
    "INSUFFICIENT_FUNDS": ({}, (1, 100), (USDC, SOL, "60"), 2, 1, "INSUFFICIENT_FUNDS"),
}


@pytest.mark.parametrize("check", list(IN_FLIGHT))
async def test_trades_run_at_once_count_each_other_against_the_limits(make_live, host, rules, check: str) -> None:
    config, (sol, usdc), (input_mint, output_mint, amount), at_once, fit, reason = IN_FLIGHT[check]
    h = await make_live(fund(host.devnet, sol * LAMPORTS, {"USDC": usdc * 10**6}), **config)

    runs = await asyncio.gather(*(h.run(h.order(f"at-once-{check}-{i}", input_mint, output_mint, amount))
                                  for i in range(at_once)))

    filled = [r for r in runs if r.outcome.status == pb.TRADE_STATUS_FILLED]
    refused = [r for r in runs if r.outcome.status != pb.TRADE_STATUS_FILLED]
    assert len(filled) == fit, [(r.outcome.status, r.outcome.error) for r in runs]
    for run in refused:
        assert run.outcome.status == pb.TRADE_STATUS_REJECTED and run.outcome.error.reason == reason, run.outcome
        if reason == "RISK_LIMIT":
            assert run.outcome.error.metadata["check"] == check
        else:  # refused by the check, not left to the swap's simulation on chain
            assert run.outcome.error.message.startswith("wallet balance too low"), run.outcome.error
    # Refused by the checks themselves: nothing signed for them, nothing of theirs on chain.
    assert h.orders.count() == fit and wallet_tx_count(host.devnet, h.wallet.pubkey()) == fit
    owner = h.wallet.pubkey()
    if check == "MINT_EXPOSURE":
        assert lamports(host.devnet, owner) * 150 // 1000 <= 2000 * 10**6  # the holding's value, in USDC
    elif check == "SOL_RESERVE":
        assert lamports(host.devnet, owner) >= 10_500_000_000
    elif check == "INSUFFICIENT_FUNDS":
        assert token_amount(host.devnet, owner, USDC) == 40 * 10**6


async def test_a_trade_in_flight_still_counts_after_a_restart_until_it_is_final(make_live, host, rules, tmp_path,
                                                                                devnet_config) -> None:
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 1_000 * 10**6})  # 10 SOL: 1,500 USDC
    limits = dict(max_mint_exposure=Decimal("1800"))  # room for one buy of 200 USDC of SOL, not two
    first = await make_live(wallet, directory=tmp_path / "node", **limits)
    rules.drop_sends = 10**9  # lost in flight: it stays pending until its blockhash expires
    submitted = asyncio.Event()
    task = asyncio.create_task(first.run(first.order("in-flight-1", USDC, SOL, "200"),
                                         {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    task.cancel()  # the process stops with the trade in flight
    await asyncio.gather(task, return_exceptions=True)
    await first.executor.close()

    second = await make_live(wallet, directory=tmp_path / "node", **limits)
    refused = await second.run(second.order("after-restart", USDC, SOL, "200"))
    assert refused.outcome.status == pb.TRADE_STATUS_REJECTED, refused.outcome
    assert refused.outcome.error.metadata["check"] == "MINT_EXPOSURE"
    assert "bought by trades in flight" in refused.outcome.error.message

    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)  # it expires: nothing was bought
    await eventually(lambda: second.orders.for_request("alice", "in-flight-1").state == EXPIRED)
    rules.drop_sends = 0
    allowed = await second.run(second.order("after-expiry", USDC, SOL, "200"))
    assert allowed.outcome.status == pb.TRADE_STATUS_FILLED, allowed.outcome


async def submitted_trade(h, request_id: str, amount: str) -> asyncio.Task:
    """A USDC→SOL trade run in the background, once it is SUBMITTED."""
    submitted = asyncio.Event()
    task = asyncio.create_task(h.run(h.order(request_id, USDC, SOL, amount), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    return task


async def landed_not_final(h, host, rules, request_id: str, amount: str) -> asyncio.Task:
    """A USDC→SOL trade whose transaction lands and is confirmed, while its finalization cannot
    read it (getTransaction answers errors until the test clears ``rules.fail_methods``)."""
    rules.fail_methods["getTransaction"] = -1
    task = await submitted_trade(h, request_id, amount)
    signature = h.orders.for_request("alice", request_id).signature
    await eventually(lambda: signature in h.executor.confirmer.watches
                     and h.executor.confirmer.watches[signature].finalize_failures >= 1)  # seen landed, not final
    assert h.executor.safety.holds(("alice", request_id)) and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
    return task


async def test_a_landed_trade_not_yet_final_is_not_counted_twice_against_the_funds(make_live, host, rules) -> None:
    h = await make_live(fund(host.devnet, 10 * LAMPORTS, {"USDC": 100 * 10**6}))
    first = await landed_not_final(h, host, rules, "half-1", "50")

    submitted = asyncio.Event()
    second = asyncio.create_task(h.run(h.order("half-2", USDC, SOL, "50"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await eventually(lambda: submitted.is_set() or second.done())  # admitted and sent, or refused
    rules.fail_methods.clear()
    runs = await asyncio.wait_for(asyncio.gather(first, second), 15)

    assert [r.outcome.status for r in runs] == [pb.TRADE_STATUS_FILLED] * 2, [r.outcome for r in runs]
    assert token_amount(host.devnet, h.wallet.pubkey(), USDC) == 0


async def test_a_balance_read_older_than_a_landed_transaction_still_counts_its_reservation(make_live, host,
                                                                                         rules) -> None:
    def first_balances_again(inner):
        class Replaying(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                method, ident = rpc_call(request)
                if method in ("getBalance", "getTokenAccountsByOwner"):
                    if method in first and replay:
                        return httpx.Response(200, json={**first[method], "id": ident})
                    response = await inner.handle_async_request(request)
                    answer = json.loads(await response.aread())
                    first.setdefault(method, answer)
                    return httpx.Response(response.status_code, json=answer)
                return await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Replaying()

    first: dict[str, dict] = {}  # the first answers: the wallet before any trade, at the slot read then
    replay: list[bool] = []
    h = await make_live(fund(host.devnet, 10 * LAMPORTS, {"USDC": 100 * 10**6}),
                        wrap_transports={"rpc": first_balances_again})
    rules.before_send = lambda: host.devnet.chain.advance_slots(1)  # it lands in a later slot than that read
    landed = await landed_not_final(h, host, rules, "stale-1", "50")
    replay.append(True)  # a node behind: it answers the wallet as it was before the first trade

    run = await h.run(h.order("stale-2", USDC, SOL, "60"))

    # 100 USDC read, less the 50 the landed trade spent: counted once, though the read is older.
    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "INSUFFICIENT_FUNDS", error
    assert "has 50 USDC once the 50 USDC that trades in flight may spend is set aside" in error.message
    rules.fail_methods.clear()
    assert (await asyncio.wait_for(landed, 15)).outcome.status == pb.TRADE_STATUS_FILLED


async def test_insufficient_funds_names_the_unit_and_the_amount_trades_in_flight_may_spend(make_live, host,
                                                                                         rules) -> None:
    h = await make_live(fund(host.devnet, 10 * LAMPORTS, {"USDC": 100 * 10**6}))
    rules.drop_sends = 10**9  # lost in flight: it stays pending
    rules.hold_height = host.devnet.chain.block_height  # ...and is not expired while the test runs
    pending = await submitted_trade(h, "in-flight-60", "60")

    run = await h.run(h.order("after-60", USDC, SOL, "60"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "INSUFFICIENT_FUNDS"
    assert error.message == ("wallet balance too low: needs 60 USDC, has 40 USDC once the 60 USDC that trades in "
                             "flight may spend is set aside"), error.message
    assert dict(error.metadata) == {"mint": "USDC", "needed": "60", "available": "40", "in_flight": "60"}
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


# -- 10. identical trades that keep building one transaction ---------------------------------------------------


async def test_identical_trades_whose_builds_keep_colliding_are_refused_for_a_retry_not_failed(make_live, host,
                                                                                             rules) -> None:
    def one_build_for_all(inner):
        class Caching(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                if request.url.path.endswith(SWAP):
                    builds.append(request)
                    if built and same:
                        return httpx.Response(200, json=built[0])
                    response = await inner.handle_async_request(request)
                    built.append(json.loads(await response.aread()))
                    return httpx.Response(response.status_code, json=built[-1])
                return await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Caching()

    builds: list[httpx.Request] = []
    built: list[dict] = []
    same = [True]  # the swap API answers every build with the first one's transaction
    h = await make_live(wrap_transports={"quote": one_build_for_all})
    first = await h.run(h.order("twin-1", USDC, SOL, "5"))
    assert first.outcome.status == pb.TRADE_STATUS_FILLED, first.outcome
    order = h.order("twin-2", USDC, SOL, "5")

    run = await h.run(order)

    retryable_refusal(run.outcome, "another request")
    assert len(builds) == 1 + BUILD_ATTEMPTS and len(rules.sends) == 1 and h.orders.count() == 1
    assert not h.executor.safety.holds(("alice", "twin-2"))
    same.clear()
    again = await h.run(order)  # the same request id, run again
    assert again.outcome.status == pb.TRADE_STATUS_FILLED, again.outcome
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 2


# -- 4. ExactOut is valued at the most it may pay ------------------------------------------------------------


async def test_an_exact_out_trade_is_valued_at_the_most_it_may_pay(make_live, host, rules) -> None:
    h = await make_live(max_notional=Decimal("100"))
    # 0.64 SOL costs about 96 USDC; with 10% slippage it may cost up to about 106.
    async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
        quote = (await http.get("/swap/v1/quote", params={
            "inputMint": USDC, "outputMint": SOL, "amount": str(640_000_000), "swapMode": "ExactOut",
            "slippageBps": "1000"})).json()
    assert int(quote["inAmount"]) < 100 * 10**6 < int(quote["otherAmountThreshold"]), quote

    run = await h.run(h.order("exact-out-notional", USDC, SOL, "0.64", exact_out=True, slippage_bps=1000))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    assert run.outcome.error.metadata["check"] == "MAX_NOTIONAL"
    assert "trade notional at most" in run.outcome.error.message
    assert h.orders.count() == 0 and rules.sends == []


# -- 5. an expired blockhash is an expiry ----------------------------------------------------------------------


async def test_a_blockhash_that_expires_before_send_is_a_refusal_the_same_request_may_retry(
        make_live, host, rules, devnet_config) -> None:
    def expire_before_the_first_simulation(request):
        if rpc_call(request)[0] == "simulateTransaction" and not expired:
            expired.append(host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2))
        return None

    expired: list[int] = []
    h = await make_live(wrap_transports={"rpc": intercepting(expire_before_the_first_simulation)})
    order = h.order("expired-before-send", USDC, SOL, "3")

    run = await h.run(order)

    assert expired
    retryable_refusal(run.outcome, "blockhash expired")  # (the runner retries it with a fresh quote)
    assert rules.sends == [] and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0
    again = await h.run(order)  # the same request id, run again
    assert again.outcome.status == pb.TRADE_STATUS_FILLED, again.outcome


async def test_a_blockhash_expired_at_a_preflight_send_is_a_refusal_the_same_request_may_retry(
        make_live, host, rules, devnet_config) -> None:
    # No re-broadcast during the send, and the confirmer does not see the expiry first.
    h = await make_live(skip_preflight=False, rebroadcast_interval_s=60)
    rules.hold_height = host.devnet.chain.block_height
    before = lamports(host.devnet, h.wallet.pubkey())
    rules.before_send = lambda: host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)
    order = h.order("expired-at-preflight", USDC, SOL, "3")

    run = await h.run(order)

    retryable_refusal(run.outcome, "preflight")
    assert run.outcome.fill is None
    [refused] = rules.sends  # the preflight's refusal: never re-broadcast
    assert h.orders.count(VOID) == 1 and h.orders.for_request("alice", "expired-at-preflight") is None
    assert not h.executor.safety.holds(("alice", "expired-at-preflight"))
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0 and lamports(host.devnet, h.wallet.pubkey()) == before
    rules.hold_height = None
    again = await h.run(order)  # the same request id, run again: a new transaction
    assert again.outcome.status == pb.TRADE_STATUS_FILLED, again.outcome
    assert rules.sends[-1] != refused and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1


async def test_a_preflight_refusal_after_a_re_broadcast_went_out_leaves_the_signature_to_decide(
        make_live, host, rules, devnet_config) -> None:
    def held_until_re_broadcast(inner):
        class Held(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                method, _ = rpc_call(request)
                if method == "sendTransaction":
                    options = json.loads(request.content)["params"][1]
                    if options["skipPreflight"]:
                        re_broadcast.set()
                        rules.hold_height = None  # from now on the confirmer sees the chain's height
                    else:  # the first send: its blockhash expires, and it reaches the RPC after a re-broadcast
                        host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)
                        await asyncio.wait_for(re_broadcast.wait(), 5)
                return await inner.handle_async_request(request)

            async def aclose(self):
                await inner.aclose()

        return Held()

    re_broadcast = asyncio.Event()
    h = await make_live(skip_preflight=False, wrap_transports={"rpc": held_until_re_broadcast})
    rules.hold_height = host.devnet.chain.block_height  # the confirmer re-broadcasts instead of expiring it

    run = await h.run(h.order("re-broadcast-then-refused", USDC, SOL, "3"))

    # The re-broadcast skipped the preflight: the refusal no longer proves nothing went out. The
    # chain past the blockhash's last valid height, and the signature found nowhere, do.
    assert run.outcome.status == pb.TRADE_STATUS_EXPIRED, run.outcome
    assert run.outcome.error.reason == "TRADE_EXPIRED"
    assert h.orders.get(run.signature).state == EXPIRED and h.orders.count(VOID) == 0
    assert len(rules.sends) >= 2 and len(set(rules.sends)) == 1
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


def test_a_shared_journal_forgets_the_sent_record_of_a_transaction_the_preflight_refused(redis_server,
                                                                                      tmp_path) -> None:
    import redis

    from tradewire.core.shared.redis_live_orders import SharedLiveOrders
    from tradewire.core.shared.redis_store import RedisTradeStore

    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/13")  # a database of its own
    client.flushdb()
    store = RedisTradeStore(client, "replica-a")
    store.settles_live = True
    result = pb.TradeResult(request_id="refused-1", status=pb.TRADE_STATUS_SIMULATED, mode=LIVE)
    assert store.claim("alice", "refused-1", "fp", result, pb.TradeRequest(request_id="refused-1")) is None
    journal = SharedLiveOrders(tmp_path / "a.db", client, "replica-a")
    journal.prepare(signature="sig-1", principal="alice", request_id="refused-1", route="rpc", tx=b"swap",
                    bundle=(), bundle_id=None, last_valid_block_height=321, request=b"request", quote={})
    assert journal.mark_pending("sig-1")  # recorded for the other replicas, then sent
    assert client.exists("tw:live:sent:alice:refused-1")

    assert journal.void_refused("sig-1")

    assert journal.get("sig-1").state == VOID and journal.for_request("alice", "refused-1") is None
    assert not client.exists("tw:live:sent:alice:refused-1")  # no replica will follow it
    assert SharedLiveOrders(tmp_path / "b.db", client, "replica-b").adopt("alice", "refused-1") is None
    assert not journal.void_refused("sig-1")  # only a pending row
    journal.close()


async def test_a_jito_bundle_whose_blockhash_expired_ends_expired_not_outbid(make_live, host, rules,
                                                                             devnet_config) -> None:
    h = await make_live()
    rules.hold_height = host.devnet.chain.block_height  # the node's confirmed height lags: still "valid"
    rules.before_send = lambda: host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)

    run = await h.run(h.order("expired-bundle", USDC, SOL, "3", strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_EXPIRED, run.outcome
    error = run.outcome.error
    assert error.reason == "TRADE_EXPIRED" and "blockhash expired before the Jito bundle" in error.message
    assert "outbid" not in error.message and run.outcome.fill.fees.total_lamports == 0
    assert h.orders.get(run.signature).state == EXPIRED
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


# -- 6. malformed upstream answers -----------------------------------------------------------------------------


async def test_a_malformed_balance_before_send_is_a_refusal_the_caller_may_retry_without_a_traceback(
        make_live, host, rules, caplog) -> None:
    caplog.set_level(logging.INFO)

    def lots_of_lamports(request):
        method, ident = rpc_call(request)
        if method == "getBalance" and broken:
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": ident,
                                             "result": {"context": {"slot": 1}, "value": "lots"}})
        return None

    broken = [True]
    h = await make_live(wrap_transports={"rpc": intercepting(lots_of_lamports)})
    order = h.order("malformed-balance", USDC, SOL, "2")

    run = await h.run(order)

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "UPSTREAM_UNAVAILABLE" and error.code == Code.UNAVAILABLE
    assert "malformed answer" in error.message and "nothing was sent" in error.message
    assert h.orders.count() == 0 and rules.sends == []
    assert tracebacks(caplog) == []
    assert any("unavailable" in r.getMessage() and "getBalance" in getattr(r, "error", "") for r in caplog.records)
    broken.clear()
    again = await h.run(order)
    assert again.outcome.status == pb.TRADE_STATUS_FILLED, again.outcome


async def test_a_malformed_transaction_read_is_told_in_one_line_and_read_again(make_live, host, rules,
                                                                               caplog) -> None:
    caplog.set_level(logging.INFO)
    left = {"n": 2}

    def without_account_keys(request):
        method, ident = rpc_call(request)
        if method == "getTransaction" and left["n"]:
            left["n"] -= 1
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": ident, "result": {
                "slot": 1, "meta": {"fee": 5000}, "transaction": {"message": {}, "signatures": []}}})
        return None

    h = await make_live(wrap_transports={"rpc": intercepting(without_account_keys)})

    run = await h.run(h.order("malformed-transaction", USDC, SOL, "2"))

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert left["n"] == 0 and tracebacks(caplog) == []
    told = [r for r in caplog.records if r.name == "tradewire.live.confirmer" and r.levelno == logging.WARNING]
    assert told and all("accountKeys" in r.error for r in told)


# -- 7. slippage found when the swap is built ------------------------------------------------------------------


async def test_slippage_found_when_the_swap_is_built_is_a_refusal_that_keeps_its_quote(make_live, host,
                                                                                      rules) -> None:
    def whale_before_the_first_build(request):
        if request.url.path.endswith("/swap/v1/swap") and not moved:
            moved.append(move_pool(host.devnet, USDC, BONK, 600_000 * 10**6))
        return None

    moved: list[None] = []
    # Room for one buy of 100 USDC of BONK: the refused trade's reservation must not keep it.
    h = await make_live(mint_exposure_caps={"BONK": Decimal("150")},
                        wrap_transports={"quote": intercepting(whale_before_the_first_build)})
    before = lamports(host.devnet, h.wallet.pubkey())

    run = await h.run(h.order("slipped-at-build", USDC, BONK, "100"))

    assert moved and run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "SLIPPAGE_EXCEEDED" and error.code == Code.ABORTED
    assert "when the swap was built" in error.message and "nothing was sent or charged" in error.message
    quote = run.outcome.quote  # what was published at QUOTED stays on the result
    assert quote is not None and run.outcome.fill is None
    assert quote.in_amount == 100 * 10**6 and 0 < quote.other_amount_threshold < quote.out_amount
    assert rules.sends == [] and h.orders.count() == 0 and lamports(host.devnet, h.wallet.pubkey()) == before
    after = await h.run(h.order("after-the-refusal", USDC, BONK, "100"))
    assert after.outcome.status == pb.TRADE_STATUS_FILLED, after.outcome


# -- 8. an RPC outage: logged at its start and end, and health says the balance is unknown --------------------------


async def test_an_rpc_outage_is_logged_once_when_it_starts_and_once_when_it_ends(make_live, host, rules,
                                                                                 caplog) -> None:
    caplog.set_level(logging.INFO)
    h = await make_live(breaker_cooldown_s=0.05)
    rules.hold_statuses = True  # it lands; confirmation waits
    submitted = asyncio.Event()
    task = asyncio.create_task(h.run(h.order("outage-1", USDC, SOL, "2"), {pb.TRADE_STATUS_SUBMITTED: submitted}))
    await asyncio.wait_for(submitted.wait(), 10)
    rules.fail_paths["/"] = -1  # the RPC answers nothing but 503
    skipped = h.executor.confirmer.failed_rounds
    await eventually(lambda: h.executor.confirmer.failed_rounds >= skipped + 10)
    rules.fail_paths.clear()
    rules.hold_statuses = False

    run = await asyncio.wait_for(task, 10)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    said = [r for r in caplog.records if r.name == "tradewire.live.confirmer"]
    down = [r for r in said if "unavailable" in r.getMessage()]
    back = [r for r in said if "answers again" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING, [r.getMessage() for r in said]
    assert len(back) == 1 and back[0].outage_s > 0 and back[0].failures >= 10


async def test_health_says_the_wallet_balance_is_unknown_since_the_rpc_stopped_answering(make_live, host,
                                                                                          rules) -> None:
    h = await make_live(health_refresh_s=0.02, breaker_failures=1000, retry_attempts=1)
    await eventually(lambda: "wallet balance ok" in h.executor.health().message)
    stopped = time.time()
    rules.fail_paths["/"] = -1

    def unknown():
        health = h.executor.health()
        return health if "unknown since" in health.message else None

    health = await eventually(unknown)

    assert not health.ok and "wallet balance ok" not in health.message
    assert "rpc: answered HTTP 503" in health.message, health.message
    since = re.search(r"unknown since (\S+Z)", health.message).group(1)
    assert stopped - 1 <= calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ")) <= time.time()
    rules.fail_paths.clear()
    await eventually(lambda: h.executor.health().ok and "wallet balance ok" in h.executor.health().message)
