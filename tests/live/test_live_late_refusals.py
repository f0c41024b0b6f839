"""LIVE executor: what stops a trade before it is sent, and what a refused first send proves.

* A halt engaged while a trade is being quoted, built and signed stops it before it is sent:
  the switch is read again at the point of no return, not only before the quote.
* A first send that the RPC's preflight refuses only after a re-broadcast of the same bytes
  (sent without preflight) has gone out proves nothing about the chain: the trade's signature
  decides, and a re-broadcast that landed is a fill, not a refusal "nothing was charged" —
  BlockhashNotFound too: a validator's preflight answers it for a blockhash's last blocks,
  while the same bytes sent without preflight can still land.
* A read before send that the RPC answers with a JSON-RPC error object (a node that does not
  serve the method) is a refusal the caller may retry, told in one line: not a FAILED
  INTERNAL trade with a traceback.
* A Jito bundle the block engine refuses outright was never forwarded: the trade is REJECTED
  (nothing sent or charged) with the engine's words, not a FAILED INTERNAL trade.
"""

from __future__ import annotations

import base64
import json

import httpx
from live_support import SOL, USDC, eventually, lamports, token_amount, wallet_tx_count
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from tradewire.v1 import trade_pb2 as pb

SWAP = "/swap/v1/swap"


class Intercepting(httpx.AsyncBaseTransport):
    """A transport that hands each request to ``handle(request)`` first: the answer it gives
    (a Response), or None to let ``inner`` answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, handle) -> None:
        self.inner, self.handle = inner, handle

    async def handle_async_request(self, request):
        return await self.handle(request) or await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def on_request(path: str, action):
    """A transport wrapper that runs ``action()`` before a request to ``path`` goes through."""
    async def handle(request):
        if request.url.path == path:
            action()
    return lambda inner: Intercepting(inner, handle)


async def test_a_halt_engaged_while_the_swap_is_built_stops_the_trade_before_it_is_sent(
        make_live, host, rules, tmp_path) -> None:
    switch = tmp_path / "kill"
    h = await make_live(kill_switch_file=switch,
                        wrap_transports={"quote": on_request(SWAP, lambda: switch.write_text("halt"))})

    run = await h.run(h.order("halted-mid-build", USDC, SOL, "2"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    assert run.outcome.error.reason == "RISK_LIMIT" and "KILL_SWITCH" in run.outcome.error.message
    assert pb.TRADE_STATUS_SUBMITTED not in run.statuses
    assert rules.sends == [] and rules.bundles == []
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0
    assert not h.executor.safety.holds(("alice", "halted-mid-build"))
    assert h.orders.for_request("alice", "halted-mid-build") is None  # the signed bytes were voided


async def test_reduce_only_engaged_while_the_swap_is_built_stops_a_buy_before_it_is_sent(
        make_live, host, rules, tmp_path) -> None:
    switch = tmp_path / "kill"
    h = await make_live(kill_switch_file=switch,
                        wrap_transports={"quote": on_request(SWAP, lambda: switch.write_text("reduce_only"))})

    run = await h.run(h.order("reduced-mid-build", USDC, SOL, "2", strategy=pb.MEV_STRATEGY_JITO_BUNDLE,
                              tip=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    assert "REDUCE_ONLY" in run.outcome.error.message
    assert rules.sends == [] and rules.bundles == []
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


def preflight_refusal_after_a_re_broadcast(devnet, seen: list[str]):
    """A transport wrapper for the RPC: the first preflighted sendTransaction is answered only
    once a re-broadcast of the same bytes has landed, and then as refused by the preflight
    (slippage in the simulation), the way a node whose view lags the chain can answer."""
    async def handle(request):
        body = json.loads(request.content)
        if body.get("method") == "sendTransaction" and not seen and not body["params"][1]["skipPreflight"]:
            tx = VersionedTransaction.from_bytes(base64.b64decode(body["params"][0]))
            seen.append(str(tx.signatures[0]))
            await eventually(lambda: tx.signatures[0] in devnet.chain.records)
            error = {"code": -32002, "message": "Transaction simulation failed: Error processing Instruction "
                     "3: custom program error: 0x1771",
                     "data": {"err": {"InstructionError": [3, {"Custom": 6001}]}, "logs": []}}
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": error})
    return lambda inner: Intercepting(inner, handle)


async def test_a_preflight_refusal_after_a_re_broadcast_landed_the_swap_is_the_fill_not_a_refusal(
        make_live, host, rules) -> None:
    seen: list[str] = []
    h = await make_live(skip_preflight=False, rebroadcast_interval_s=0.05,
                        wrap_transports={"rpc": preflight_refusal_after_a_re_broadcast(host.devnet, seen)})
    owner = h.wallet.pubkey()
    usdc_before = token_amount(host.devnet, owner, USDC)

    run = await h.run(h.order("late-refusal", USDC, SOL, "2"))

    assert seen and Signature.from_string(seen[0]) in host.devnet.chain.records  # it landed
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert run.signature == seen[0]
    assert run.outcome.fill.amount_in == 2_000_000 == usdc_before - token_amount(host.devnet, owner, USDC)
    assert wallet_tx_count(host.devnet, owner) == 1
    holdings = h.store.holdings("alice", pb.TRADING_MODE_LIVE)
    assert holdings[SOL].amount == lamports(host.devnet, owner)  # booked, as the chain shows


def blockhash_not_found_in_its_last_blocks(devnet, answers: list[dict]):
    """A transport wrapper for the RPC: the first preflighted sendTransaction reaches the node
    in its blockhash's last blocks (preflight: BlockhashNotFound), and that answer comes back
    only once a re-broadcast of the same bytes (no preflight) has landed."""
    async def handle(request):
        body = json.loads(request.content)
        if body.get("method") == "sendTransaction" and not answers and not body["params"][1]["skipPreflight"]:
            tx = VersionedTransaction.from_bytes(base64.b64decode(body["params"][0]))
            chain = devnet.chain
            last_valid = chain.blockhash_last_valid_height(tx.message.recent_blockhash)
            chain.advance_slots(last_valid - chain.preflight_margin + 1 - chain.block_height)
            answer = await inner_of[0].handle_async_request(request)
            answers.append(json.loads(await answer.aread()))
            await eventually(lambda: tx.signatures[0] in chain.records)
            return httpx.Response(200, json=answers[0])

    inner_of: list[httpx.AsyncBaseTransport] = []
    return lambda inner: inner_of.append(inner) or Intercepting(inner, handle)


async def test_a_blockhash_the_preflight_no_longer_takes_is_no_proof_once_a_re_broadcast_went_out(
        make_live, host, rules) -> None:
    answers: list[dict] = []
    h = await make_live(skip_preflight=False, rebroadcast_interval_s=0.01, poll_interval_s=0.01,
                        wrap_transports={"rpc": blockhash_not_found_in_its_last_blocks(host.devnet, answers)})
    owner = h.wallet.pubkey()
    usdc_before = token_amount(host.devnet, owner, USDC)

    run = await h.run(h.order("last-blocks", USDC, SOL, "2"))

    assert answers[0]["error"]["code"] == -32002 and answers[0]["error"]["data"]["err"] == "BlockhashNotFound"
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome  # (it said EXPIRED, "nothing was charged")
    assert run.outcome.fill.amount_in == 2_000_000 == usdc_before - token_amount(host.devnet, owner, USDC)
    assert wallet_tx_count(host.devnet, owner) == 1
    assert h.store.holdings("alice", pb.TRADING_MODE_LIVE)[SOL].amount == lamports(host.devnet, owner)


async def test_an_rpc_error_answer_to_a_read_before_send_is_a_refusal_to_retry_without_a_traceback(
        make_live, host, rules, caplog) -> None:
    h = await make_live()
    rules.fail_methods["getTokenAccountsByOwner"] = -1  # a node that will not serve this method

    run = await h.run(h.order("no-token-reads", USDC, SOL, "2"))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    assert run.outcome.error.reason == "UPSTREAM_UNAVAILABLE", run.outcome.error
    assert "nothing was sent" in run.outcome.error.message
    assert rules.sends == [] and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0
    assert not [r for r in caplog.records if r.name.startswith("tradewire.live") and r.exc_info]
    rules.fail_methods.clear()
    again = await h.run(h.order("no-token-reads-2", USDC, SOL, "2"))
    assert again.outcome.status == pb.TRADE_STATUS_FILLED, again.outcome


async def test_a_bundle_the_block_engine_refuses_is_rejected_with_its_words_not_an_internal_failure(
        make_live, host, rules) -> None:
    h = await make_live()
    rules.refuse_bundles = 1

    run = await h.run(h.order("refused-bundle", USDC, SOL, "2", strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "BUNDLE_NOT_LANDED" and "already processed transaction" in error.message, error
    assert "nothing was sent or charged" in error.message
    assert len(rules.bundles) == 1 and wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0
    assert run.outcome.fill.fees.total_lamports == 0
