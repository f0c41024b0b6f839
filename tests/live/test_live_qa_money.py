"""LIVE trading where money or truth is at stake: a landed swap is never lost, and every fill is
booked once, whatever the block engine, a lagging RPC node or the trade store says meanwhile.

1. A Jito bundle the block engine reported Failed was final at once (FAILED "nothing was
   charged; submit again"), while its signed transactions could still land until their
   blockhash expired: a swap landing after the verdict was never booked, and its caller was
   invited to trade again.
2. Expiry was concluded from lookups answered by an RPC node behind the one that read the block
   height (a load-balanced RPC): a landed swap was reported EXPIRED and never booked.
3. A swap that landed without the rest of its Jito bundle (a bundle is atomic, but the executor
   must not assume it) could never be read, so its trade stayed SUBMITTED and was never booked.
4. A booking the trade store refused once (a locked database, a Redis blip) was left to the
   next start, and the trade's worst-case loss stopped counting against the daily loss limit.
5. Bundle ids were hashed over the raw signature bytes, not as the block engine derives them
   (base58 signatures joined by commas), and only the first send's answer could correct them:
   when that answer was lost, the engine's statuses were asked under an id it never knew.
6. The built swap's Jito tip was never checked against the request (its priority fee is): a
   router that tipped more than asked, or tipped a trade that asked for none, was signed and paid.
7. SOL a swap between two other tokens paid out of the wallet beyond fees, tip and token-account
   rent (an account a venue opens for it) was in no fee and no leg: the book kept SOL the wallet
   no longer had.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3

import httpx
import pytest

from live_support import (
    BONK, SOL, USDC, assert_booked_once_as_the_chain_shows, eventually, lamports, land, token_amount,
    wallet_tx_count,
)
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from tradewire.core.executors.live.jito_client import bundle_id
from tradewire.core.store.live_orders import DROPPED, LANDED, PENDING
from tradewire.devnet.jito import bundle_id as devnet_bundle_id
from tradewire.v1 import trade_pb2 as pb

LIVE = pb.TRADING_MODE_LIVE
SUBMITTED = pb.TRADE_STATUS_SUBMITTED


async def submitted(h, order) -> asyncio.Task:
    """The trade run in the background, once it is SUBMITTED."""
    event = asyncio.Event()
    task = asyncio.create_task(h.run(order, {SUBMITTED: event}))
    await asyncio.wait_for(event.wait(), 10)
    return task


async def engine_reported_failed(rules) -> None:
    """The executor read the block engine's Failed and simulated the swap to tell why."""
    await eventually(lambda: rules.requests.get("getInflightBundleStatuses", 0) >= 1
                     and rules.requests.get("simulateTransaction", 0) >= 2)


# -- 1. a bundle reported Failed can still land until its blockhash expires -------------------------------


async def test_a_bundle_reported_failed_stays_submitted_while_its_blockhash_is_valid(make_live, host, rules) -> None:
    h = await make_live()
    rules.hold_height = host.devnet.chain.block_height  # its blockhash stays valid while the test looks
    rules.drop_bundles = 1  # taken, never landed, then reported Failed
    task = await submitted(h, h.order("failed-valid", USDC, SOL, "3", strategy=pb.MEV_STRATEGY_JITO_BUNDLE,
                                      tip=10_000))
    row = h.orders.for_request("alice", "failed-valid")
    await engine_reported_failed(rules)
    rounds = rules.requests.get("getSignatureStatuses", 0)
    await eventually(lambda: task.done() or rules.requests.get("getSignatureStatuses", 0) >= rounds + 5)

    assert not task.done(), task.result().outcome  # not final: the same bytes may still land
    assert h.orders.get(row.signature).state == PENDING and h.executor.safety.holds(("alice", "failed-valid"))
    assert len(rules.bundles) == 1  # nor sent again: the engine said it will not land it

    rules.hold_height = None  # the chain passes its last valid height: now it can never land
    run = await asyncio.wait_for(task, 20)
    assert run.outcome.status == pb.TRADE_STATUS_FAILED, run.outcome
    assert run.outcome.error.reason == "BUNDLE_NOT_LANDED" and "nothing was charged" in run.outcome.error.message
    assert h.orders.get(row.signature).state == DROPPED and not h.executor.safety.holds(("alice", "failed-valid"))
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


async def test_a_bundle_reported_failed_whose_swap_then_lands_is_filled_and_booked_once(make_live, host,
                                                                                      rules) -> None:
    h = await make_live()
    rules.drop_bundles = 1
    task = await submitted(h, h.order("failed-landed", USDC, SOL, "4", strategy=pb.MEV_STRATEGY_JITO_BUNDLE,
                                      tip=10_000))
    row = h.orders.for_request("alice", "failed-landed")
    await engine_reported_failed(rules)

    land(host, row.tx)  # the bytes the engine gave up on land after all, while still valid
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert run.signature == row.signature and h.orders.get(row.signature).state == LANDED
    assert run.outcome.fill.amount_in == 4 * 10**6 and run.outcome.fill.fees.jito_tip_lamports == 10_000
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1
    assert_booked_once_as_the_chain_shows(h, host, row.signature)


# -- 2. a node behind cannot say a landed swap expired ------------------------------------------------------


async def test_a_node_behind_the_height_read_cannot_expire_a_landed_swap(make_live, host, rules,
                                                                         devnet_config) -> None:
    h = await make_live()
    rules.lag_slot = host.devnet.chain.sync() - 1  # statuses and getTransaction come from a node stuck here
    task = await submitted(h, h.order("behind-1", USDC, SOL, "5"))
    signature = h.orders.for_request("alice", "behind-1").signature
    await eventually(lambda: wallet_tx_count(host.devnet, h.wallet.pubkey()) == 1)  # it landed
    host.devnet.chain.advance_slots(devnet_config.blockhash_valid_blocks + 2)  # the height read is past it

    await eventually(lambda: task.done() or h.executor.confirmer.undetermined())
    assert not task.done(), task.result().outcome  # not EXPIRED on the word of a node that has not seen it
    assert h.orders.get(signature).state == PENDING
    assert "behind" in h.executor.health().message

    rules.lag_slot = None  # the node catches up
    run = await asyncio.wait_for(task, 10)
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert run.signature == signature and run.outcome.fill.amount_in == 5 * 10**6
    assert_booked_once_as_the_chain_shows(h, host, signature)


# -- 3. a swap that landed without the rest of its bundle ---------------------------------------------------


async def test_a_swap_that_lands_without_the_rest_of_its_bundle_is_filled_with_its_own_fees(make_live, host,
                                                                                          rules) -> None:
    h = await make_live()
    rules.drop_bundles = 1
    task = await submitted(h, h.order("unbundled-1", USDC, SOL, "6", strategy=pb.MEV_STRATEGY_JITO_DONT_FRONT,
                                      tip=10_000))
    row = h.orders.for_request("alice", "unbundled-1")
    lead, swap = row.wires  # the router co-signs the swap: the marker rides in our own transaction before it
    assert swap == row.tx

    land(host, swap)  # the swap alone, outside its bundle
    run = await asyncio.wait_for(task, 20)

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    fill = run.outcome.fill
    record = host.devnet.chain.records[VersionedTransaction.from_bytes(swap).signatures[0]]
    assert fill.fees.base_fee_lamports + fill.fees.priority_fee_lamports == record.fee  # the swap's fee only
    assert fill.fees.jito_tip_lamports == 10_000 and fill.amount_in == 6 * 10**6
    assert VersionedTransaction.from_bytes(lead).signatures[0] not in host.devnet.chain.records
    assert_booked_once_as_the_chain_shows(h, host, row.signature)


# -- 4. a booking the store refuses once -----------------------------------------------------------------------


async def test_a_booking_the_store_refuses_once_is_completed_without_a_restart(make_live, host, rules) -> None:
    h = await make_live()
    apply_fill, refusals = h.store.apply_fill, []

    def refused_once(*args, **kwargs):
        if not refusals:
            refusals.append(args)
            raise sqlite3.OperationalError("database is locked")
        return apply_fill(*args, **kwargs)

    h.store.apply_fill = refused_once
    run = await h.run(h.order("refused-booking", USDC, SOL, "3"))

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert refusals  # the first booking was refused
    await eventually(lambda: h.orders.get(run.signature).booked == 2)
    assert_booked_once_as_the_chain_shows(h, host, run.signature)
    assert not h.executor.safety.holds(("alice", "refused-booking"))  # held until booked, then released


# -- 5. bundle ids -------------------------------------------------------------------------------------------


def test_a_bundle_id_is_derived_as_the_block_engine_derives_it() -> None:
    payers = [Keypair(), Keypair()]
    txs = [VersionedTransaction(MessageV0.try_compile(p.pubkey(), [], [], Hash.default()), [p]) for p in payers]
    signatures = ",".join(str(tx.signatures[0]) for tx in txs)  # base58, joined by commas
    assert bundle_id(txs) == hashlib.sha256(signatures.encode()).hexdigest()


def first_bundle_answer_lost(lost: list[bool]):
    """A transport wrapper for the block engine: the first sendBundle reaches it, its answer never
    comes back."""
    class LoseFirstAnswer(httpx.AsyncBaseTransport):
        def __init__(self, inner) -> None:
            self.inner = inner

        async def handle_async_request(self, request):
            response = await self.inner.handle_async_request(request)
            if not lost and b'"sendBundle"' in request.content:
                lost.append(True)
                await response.aread()
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return response

        async def aclose(self):
            await self.inner.aclose()

    return LoseFirstAnswer


async def test_a_bundle_is_followed_by_the_id_the_engine_answers_a_re_broadcast_with(make_live, host,
                                                                                     rules) -> None:
    lost: list[bool] = []
    h = await make_live(wrap_transports={"jito": first_bundle_answer_lost(lost)})
    rules.drop_bundles = 10**9  # every send is taken, none lands, each is reported Failed
    run = await h.run(h.order("lost-answer", USDC, SOL, "2", strategy=pb.MEV_STRATEGY_JITO_BUNDLE, tip=10_000))

    assert lost and run.outcome.status == pb.TRADE_STATUS_FAILED, run.outcome
    engine_id = devnet_bundle_id([VersionedTransaction.from_bytes(w) for w in rules.bundles[0]])
    assert run.outcome.error.reason == "BUNDLE_NOT_LANDED"  # its Failed was seen: not EXPIRED, unknown to the engine
    assert run.outcome.error.metadata["bundle_id"] == engine_id == h.orders.get(run.signature).bundle_id
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


# -- 6. the tip the built swap pays ---------------------------------------------------------------------------


def router_tipping(tip: int):
    """A transport wrapper for the swap API: every build is asked for a Jito tip of ``tip`` lamports,
    whatever the executor asked for (a router that gets the tip wrong)."""
    class Rewrite(httpx.AsyncBaseTransport):
        def __init__(self, inner) -> None:
            self.inner = inner

        async def handle_async_request(self, request):
            if request.url.path == "/swap/v1/swap":
                body = json.loads(request.content)
                body.pop("computeUnitPriceMicroLamports", None)
                body["prioritizationFeeLamports"] = {"jitoTipLamports": tip}
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx.Request("POST", request.url, headers=headers, json=body)
            return await self.inner.handle_async_request(request)

        async def aclose(self):
            await self.inner.aclose()

    return Rewrite


@pytest.mark.parametrize("strategy, asked", [(pb.MEV_STRATEGY_JITO_BUNDLE, 10_000), (pb.MEV_STRATEGY_NONE, 0)],
                         ids=["jito", "no-jito"])
async def test_a_swap_built_with_a_bigger_tip_than_asked_is_refused_before_it_is_signed(make_live, host, rules,
                                                                                       strategy, asked) -> None:
    h = await make_live(wrap_transports={"quote": router_tipping(50_000)})
    run = await h.run(h.order(f"tipped-{asked}", USDC, SOL, "2", strategy=strategy, tip=asked))

    assert run.outcome.status == pb.TRADE_STATUS_REJECTED, run.outcome
    error = run.outcome.error
    assert error.reason == "RISK_LIMIT" and error.metadata["check"] == "JITO_TIP"
    assert "50000 lamports" in error.message and f"{asked} lamports" in error.message
    assert h.orders.count() == 0 and rules.sends == [] and rules.bundles == []
    assert wallet_tx_count(host.devnet, h.wallet.pubkey()) == 0


# -- 7. SOL a swap between two other tokens pays out --------------------------------------------------------


def route_also_paying(devnet, to: Pubkey, amount: int):
    """A transport wrapper for the swap API: each built swap also moves ``amount`` lamports from the
    wallet to ``to`` (an account a venue opens for the trade), co-signed by the pool as built."""
    class Rewrite(httpx.AsyncBaseTransport):
        def __init__(self, inner) -> None:
            self.inner = inner

        async def handle_async_request(self, request):
            response = await self.inner.handle_async_request(request)
            if request.url.path != "/swap/v1/swap":
                return response
            body = json.loads(await response.aread())
            msg = VersionedTransaction.from_bytes(base64.b64decode(body["swapTransaction"])).message
            keys, signed = list(msg.account_keys), msg.header.num_required_signatures
            ixs = [Instruction(keys[ix.program_id_index], bytes(ix.data),
                               [AccountMeta(keys[a], a < signed, msg.is_maybe_writable(a)) for a in bytes(ix.accounts)])
                   for ix in msg.instructions]
            ixs.append(transfer(TransferParams(from_pubkey=keys[0], to_pubkey=to, lamports=amount)))
            new = MessageV0.try_compile(keys[0], ixs, [], msg.recent_blockhash)
            authority = devnet.market.pool_authority
            signers = list(new.account_keys)[:new.header.num_required_signatures]
            sigs = [Signature.default()] * len(signers)
            sigs[signers.index(authority.pubkey())] = authority.sign_message(to_bytes_versioned(new))
            body["swapTransaction"] = base64.b64encode(bytes(VersionedTransaction.populate(new, sigs))).decode()
            return httpx.Response(200, json=body)

        async def aclose(self):
            await self.inner.aclose()

    return Rewrite


async def test_sol_a_token_to_token_swap_pays_out_is_booked_and_reported(make_live, host, rules) -> None:
    venue = Keypair().pubkey()
    h = await make_live(wrap_transports={"quote": route_also_paying(host.devnet, venue, 1_000_000)})
    owner = h.wallet.pubkey()
    before = lamports(host.devnet, owner)

    run = await h.run(h.order("pays-out", USDC, BONK, "5"))

    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert lamports(host.devnet, venue) == 1_000_000
    fees = run.outcome.fill.fees
    assert before - lamports(host.devnet, owner) == fees.total_lamports - fees.rent_refunded_lamports
    assert fees.ata_rent_lamports >= 1_000_000  # paid out like the rent of an account the swap opened
    holdings = h.store.holdings("alice", LIVE)
    assert holdings[SOL].amount == lamports(host.devnet, owner)
    assert holdings[BONK].amount == token_amount(host.devnet, owner, BONK)
