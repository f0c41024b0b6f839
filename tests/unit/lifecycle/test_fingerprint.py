"""De-duplication compares orders, not spellings: a replay of one order written differently
is answered with the first trade; any change to what would be executed is refused."""

import hashlib

import pytest
from google.protobuf import timestamp_pb2

from lifecycle_support import FILLS, MARKET, SOL, USDC, ScriptedExecutor, order, runner
from tradewire.core.errors import TradewireError
from tradewire.core.order import fingerprint
from tradewire.core.validation import validate_trade
from tradewire.v1 import trade_pb2 as pb

USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


@pytest.mark.parametrize("first, second", [
    ({"amount": "0.01"}, {"amount": "0.010"}),
    ({"amount": "1"}, {"amount": "01.000"}),
    ({}, {"swap_mode": pb.SWAP_MODE_EXACT_IN}),
    ({}, {"mev_protection": pb.MevProtection()}),
    ({}, {"mev_protection": pb.MevProtection(strategy=pb.MEV_STRATEGY_NONE)}),
    ({"client_metadata": {"a": "1", "b": "2"}}, {"client_metadata": {"b": "2", "a": "1"}}),
], ids=["trailing-zero", "leading-and-trailing-zeros", "swap-mode-default-written", "empty-mev-protection",
        "mev-strategy-default-written", "metadata-order"])
def test_spellings_of_one_order_share_a_fingerprint(first, second):
    assert fingerprint(order(**first)) == fingerprint(order(**second))


def test_a_field_this_version_does_not_know_is_not_part_of_the_payload():
    known = order()
    # Field 99, varint 7: what a newer client's field looks like to this version.
    with_unknown = pb.TradeRequest.FromString(known.request.SerializeToString() + b"\xb8\x06\x07")
    assert with_unknown.SerializeToString() != known.request.SerializeToString()
    assert fingerprint(validate_trade(with_unknown, "alice", MARKET)) == fingerprint(known)


DEADLINE = timestamp_pb2.Timestamp(seconds=4_000_000_000)
# One change per field of the contract; each is a different order.
CHANGES = {
    "request_id": {"request_id": "t-2"},
    "mode": {"mode": pb.TRADING_MODE_LIVE},
    "input_mint": {"input_mint": USDT},
    "output_mint": {"output_mint": USDT},
    "amount": {"amount": "0.02"},
    "swap_mode": {"swap_mode": pb.SWAP_MODE_EXACT_OUT},
    "slippage_bps": {"slippage_bps": 101},
    "mev_protection.strategy": {
        "mev_protection": pb.MevProtection(strategy=pb.MEV_STRATEGY_JITO_BUNDLE, jito_tip_lamports=1000)},
    "mev_protection.compute_unit_price_micro_lamports": {
        "mev_protection": pb.MevProtection(compute_unit_price_micro_lamports=1)},
    "mev_protection.compute_unit_limit": {"mev_protection": pb.MevProtection(compute_unit_limit=1)},
    "mev_protection.max_priority_fee_lamports": {"mev_protection": pb.MevProtection(max_priority_fee_lamports=1)},
    "mev_protection.jito_tip_lamports": {
        "mev_protection": pb.MevProtection(strategy=pb.MEV_STRATEGY_JITO_BUNDLE, jito_tip_lamports=1001)},
    "deadline": {"deadline": DEADLINE},
    "client_metadata": {"client_metadata": {"a": "1"}},
    "max_price_impact_bps": {"max_price_impact_bps": 1},
    "webhook_url": {"webhook_url": "https://example.com/hook"},
}


def test_the_changes_below_cover_every_field_of_the_contract():
    names = {f.name for f in pb.TradeRequest.DESCRIPTOR.fields if f.name != "mev_protection"}
    names |= {f"mev_protection.{f.name}" for f in pb.MevProtection.DESCRIPTOR.fields}
    assert set(CHANGES) == names  # a new field needs a case here (and a thought about its spellings)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_every_field_that_changes_the_order_changes_the_fingerprint(field):
    base = {"input_mint": SOL, "output_mint": USDC}
    if field == "output_mint":
        base = {"input_mint": SOL, "output_mint": JUP}  # SOL/USDT is a pool too
    if field == "mev_protection.jito_tip_lamports":  # (a tip needs a Jito strategy)
        base = {**base, "mev_protection": pb.MevProtection(strategy=pb.MEV_STRATEGY_JITO_BUNDLE,
                                                            jito_tip_lamports=1000)}
    changed = {**base, **CHANGES[field]}
    assert fingerprint(order(**changed)) != fingerprint(order(**base))


async def test_a_replay_spelled_differently_is_answered_with_the_first_trade():
    executor = ScriptedExecutor(FILLS)
    r = runner(executor)
    first = await r.execute(order(amount="0.01"))
    replay = await r.execute(order(amount="0.0100", swap_mode=pb.SWAP_MODE_EXACT_IN))
    assert replay == first and first.status == pb.TRADE_STATUS_FILLED
    assert executor.started == 1
    with pytest.raises(TradewireError) as refused:
        await r.execute(order(amount="0.02"))
    assert refused.value.reason == "DUPLICATE_REQUEST_MISMATCH"


async def test_a_trade_stored_with_the_earlier_fingerprint_still_answers_its_replay():
    r = runner(ScriptedExecutor(FILLS))
    stored = order()
    legacy = hashlib.sha256(stored.request.SerializeToString(deterministic=True)).hexdigest()  # the earlier form
    r.store.claim("alice", "t-1", legacy, pb.TradeResult(request_id="t-1", status=pb.TRADE_STATUS_FILLED))
    assert (await r.execute(order())).status == pb.TRADE_STATUS_FILLED
    with pytest.raises(TradewireError) as refused:
        await r.execute(order(amount="0.02"))
    assert refused.value.reason == "DUPLICATE_REQUEST_MISMATCH"
