"""Jupiter-compatible quote/swap over HTTP; swaps signed by the user land through the RPC,
and balances move by exactly the quoted amounts."""

from __future__ import annotations

import base64
from base64 import b64decode

from devnet_support import BONK, JUP, SOL, USDC, USDT, Api, token_delta, wait_until
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from tradewire.devnet import sign_partial

LAMPORTS = 10**9
BASE_FEE_TWO_SIGNERS = 10_000  # user + pool authority


def ata(owner: Pubkey, mint: str) -> Pubkey:
    return get_associated_token_address(owner, Pubkey.from_string(mint))


async def test_quote_has_the_real_shape(api: Api) -> None:
    resp = await api.quote(SOL, USDC, LAMPORTS, slippageBps=50)
    assert resp.status_code == 200
    q = resp.json()
    for key in ("inputMint", "inAmount", "outputMint", "outAmount", "otherAmountThreshold", "swapMode",
                "slippageBps", "priceImpactPct", "routePlan", "contextSlot", "timeTaken"):
        assert key in q, key
    assert q["swapMode"] == "ExactIn" and q["slippageBps"] == 50
    assert isinstance(q["inAmount"], str) and isinstance(q["priceImpactPct"], str)
    out = int(q["outAmount"])
    assert 148 * 10**6 < out < 150 * 10**6  # ~150 USDC per SOL minus 0.25% fee
    assert int(q["otherAmountThreshold"]) == out * 9_950 // 10_000
    (step,) = q["routePlan"]
    info = step["swapInfo"]
    assert step["percent"] == 100
    assert (info["inputMint"], info["outputMint"], info["inAmount"], info["outAmount"]) == (SOL, USDC, str(LAMPORTS), str(out))
    assert info["feeMint"] == SOL and int(info["feeAmount"]) == LAMPORTS * 25 // 10_000
    assert set(info) >= {"ammKey", "label"}


async def test_larger_quotes_get_worse_prices(api: Api) -> None:
    prices = []
    for amount in (10**6, 10**9, 10**12):  # 1, 1,000, 1,000,000 USDC
        q = (await api.quote(USDC, SOL, amount)).json()
        prices.append((int(q["outAmount"]) * 10**12) // amount)
        assert float(q["priceImpactPct"]) >= 0
    assert prices[0] > prices[1] > prices[2]


async def test_exact_in_swap_moves_balances_by_the_quoted_amounts(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 5_000 * 10**6})
    quote, swap, tx = await api.swap_tx(user, USDC, JUP, 1_000 * 10**6, slippageBps=50)
    assert swap["simulationError"] is None
    assert swap["lastValidBlockHeight"] > (await api.rpc("getBlockHeight"))
    sent = await api.send(tx)
    sig = sent["result"]
    got = await api.transaction(sig)
    meta = got["meta"]
    assert meta["err"] is None
    in_amount, out_amount = int(quote["inAmount"]), int(quote["outAmount"])
    assert token_delta(meta, user.pubkey(), USDC) == -in_amount
    assert token_delta(meta, user.pubkey(), JUP) == out_amount
    assert await api.token_amount(ata(user.pubkey(), USDC)) == 5_000 * 10**6 - in_amount
    assert await api.token_amount(ata(user.pubkey(), JUP)) == out_amount
    rent = 2_039_280  # the JUP account was created by the swap, paid by the user
    assert meta["fee"] == BASE_FEE_TWO_SIGNERS
    assert await api.balance(user.pubkey()) == LAMPORTS - BASE_FEE_TWO_SIGNERS - rent
    assert meta["computeUnitsConsumed"] > 0 and meta["logMessages"]


async def test_exact_out_swap_delivers_exactly_the_requested_amount(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 1_000 * 10**6})
    want = 100 * 10**6  # exactly 100 USDT
    quote, swap, tx = await api.swap_tx(user, USDC, USDT, want, swapMode="ExactOut", slippageBps=20)
    assert quote["swapMode"] == "ExactOut" and int(quote["outAmount"]) == want
    assert int(quote["otherAmountThreshold"]) == int(quote["inAmount"]) * 10_020 // 10_000
    sig = (await api.send(tx))["result"]
    meta = (await api.transaction(sig))["meta"]
    assert meta["err"] is None
    assert token_delta(meta, user.pubkey(), USDT) == want
    assert token_delta(meta, user.pubkey(), USDC) == -int(quote["inAmount"])


async def test_native_sol_in_is_wrapped_and_out_is_unwrapped(api: Api) -> None:
    user = await api.new_wallet(lamports=3 * LAMPORTS)
    quote, _, tx = await api.swap_tx(user, SOL, USDC, LAMPORTS)
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    usdc_out = int(quote["outAmount"])
    assert await api.token_amount(ata(user.pubkey(), USDC)) == usdc_out
    rent = 2_039_280  # new USDC account; the temporary wSOL account is closed again
    assert await api.balance(user.pubkey()) == 2 * LAMPORTS - meta["fee"] - rent
    assert await api.token_amount(ata(user.pubkey(), SOL)) == 0  # closed

    before = await api.balance(user.pubkey())
    quote, _, tx = await api.swap_tx(user, USDC, SOL, usdc_out // 2)
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    assert await api.balance(user.pubkey()) == before - meta["fee"] + int(quote["outAmount"])


async def test_two_hop_route_through_an_intermediate(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={JUP: 1_000 * 10**6})
    quote, _, tx = await api.swap_tx(user, JUP, BONK, 1_000 * 10**6)
    mints = [(s["swapInfo"]["inputMint"], s["swapInfo"]["outputMint"]) for s in quote["routePlan"]]
    assert len(mints) == 2 and mints[0][0] == JUP and mints[-1][1] == BONK and mints[0][1] == mints[1][0]
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    assert token_delta(meta, user.pubkey(), BONK) == int(quote["outAmount"])
    assert token_delta(meta, user.pubkey(), JUP) == -1_000 * 10**6
    direct_only = await api.quote(JUP, BONK, 10**6, onlyDirectRoutes="true")
    assert direct_only.status_code == 400 and direct_only.json()["errorCode"] == "COULD_NOT_FIND_ANY_ROUTE"


async def test_pool_moved_between_quote_and_send_fails_with_slippage_error(api: Api) -> None:
    victim = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 10_000 * 10**6})
    whale = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 2_000_000 * 10**6})
    _, swap, tx = await api.swap_tx(victim, USDC, SOL, 1_000 * 10**6, slippageBps=50)
    assert swap["simulationError"] is None
    # the whale buys SOL first: ~13% of the pool's USDC side, the price moves far past 0.5%
    _, _, front = await api.swap_tx(whale, USDC, SOL, 2_000_000 * 10**6, slippageBps=10_000)
    assert (await api.send(front)).get("result")
    usdc_before = await api.token_amount(ata(victim.pubkey(), USDC))
    sol_before = await api.balance(victim.pubkey())

    preflight = await api.send(tx)
    err = preflight["error"]
    assert err["code"] == -32002
    index, custom = err["data"]["err"]["InstructionError"]
    assert custom == {"Custom": 6001}
    assert "custom program error: 0x1771" in err["message"]
    assert any("0x1771" in line for line in err["data"]["logs"])

    # sent anyway (skip preflight): lands as a failed transaction, fee charged, nothing else moves
    sig = (await api.send(tx, skip_preflight=True))["result"]
    got = await api.transaction(sig)
    meta = got["meta"]
    assert meta["err"] == {"InstructionError": [index, {"Custom": 6001}]}
    assert meta["status"] == {"Err": meta["err"]}
    assert meta["fee"] == BASE_FEE_TWO_SIGNERS
    assert await api.balance(victim.pubkey()) == sol_before - BASE_FEE_TWO_SIGNERS
    assert await api.token_amount(ata(victim.pubkey(), USDC)) == usdc_before
    assert token_delta(meta, victim.pubkey(), USDC) == 0
    st = await api.status(sig)
    assert st["err"] == meta["err"]


async def test_small_pool_move_within_slippage_still_fills(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDT: 1_000 * 10**6})
    other = await api.new_wallet(lamports=LAMPORTS, tokens={USDT: 1_000 * 10**6})
    quote, _, tx = await api.swap_tx(user, USDT, SOL, 500 * 10**6, slippageBps=300)
    _, _, front = await api.swap_tx(other, USDT, SOL, 1_000 * 10**6)  # moves the pool ~0.03%
    assert (await api.send(front)).get("result")
    before = await api.balance(user.pubkey())
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    assert await api.balance(user.pubkey()) == before - meta["fee"] + int(quote["outAmount"])


async def test_failing_leg_changes_nothing_but_the_fee(api: Api) -> None:
    poor = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 10 * 10**6})
    quote, swap, tx = await api.swap_tx(poor, USDC, JUP, 50 * 10**6)  # owns 10, sells 50
    assert swap["simulationError"] is not None
    info = (await api.http.get("/devnet/info")).json()
    reserves_before = {p["ammKey"]: (p["reserveA"], p["reserveB"]) for p in info["pools"]}
    sig = (await api.send(tx, skip_preflight=True))["result"]
    meta = (await api.transaction(sig))["meta"]
    assert meta["err"]["InstructionError"][1] == {"Custom": 1}  # SPL Token: insufficient funds
    assert await api.token_amount(ata(poor.pubkey(), USDC)) == 10 * 10**6
    assert await api.token_amount(ata(poor.pubkey(), JUP)) == 0  # the ATA creation rolled back too
    assert await api.balance(poor.pubkey()) == LAMPORTS - meta["fee"]
    info = (await api.http.get("/devnet/info")).json()
    key = quote["routePlan"][0]["swapInfo"]["ammKey"]
    assert {p["ammKey"]: (p["reserveA"], p["reserveB"]) for p in info["pools"]}[key] == reserves_before[key]


async def test_priority_fee_and_dynamic_compute_limit(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 100 * 10**6})
    body = {
        "dynamicComputeUnitLimit": True,
        "prioritizationFeeLamports": {"priorityLevelWithMaxLamports": {"maxLamports": 2_000, "priorityLevel": "veryHigh"}},
    }
    _, swap, tx = await api.swap_tx(user, USDC, USDT, 50 * 10**6, swap_body=body)
    limit = swap["computeUnitLimit"]
    assert 0 < limit < 200_000
    assert 0 < swap["prioritizationFeeLamports"] <= 2_000
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    assert meta["fee"] == BASE_FEE_TWO_SIGNERS + swap["prioritizationFeeLamports"]
    assert meta["computeUnitsConsumed"] <= limit

    _, fixed, tx2 = await api.swap_tx(user, USDT, USDC, 10 * 10**6, swap_body={"prioritizationFeeLamports": 7_000})
    assert fixed["computeUnitLimit"] == 1_400_000 and fixed["prioritizationFeeLamports"] == 7_000
    meta = (await api.transaction((await api.send(tx2))["result"]))["meta"]
    assert meta["fee"] == BASE_FEE_TWO_SIGNERS + 7_000


async def test_unsigned_swap_transaction_is_refused(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 100 * 10**6})
    resp = await api.quote(USDC, USDT, 10**6)
    built = await api.http.post("/swap/v1/swap", json={"quoteResponse": resp.json(), "userPublicKey": str(user.pubkey())})
    tx = VersionedTransaction.from_bytes(b64decode(built.json()["swapTransaction"]))
    assert str(tx.signatures[0]) == "1" * 64  # the user's slot is empty
    assert (await api.send(tx))["error"]["code"] == -32003


async def test_bad_requests_get_clear_errors(api: Api) -> None:
    unknown = await api.quote("11111111111111111111111111111112", USDC, 10)
    assert unknown.status_code == 400 and unknown.json()["errorCode"] == "TOKEN_NOT_TRADABLE"
    assert (await api.quote(USDC, USDC, 10)).json()["errorCode"] == "CIRCULAR_ARBITRAGE_IS_DISABLED"
    bad_amount = await api.quote(USDC, SOL, 0)
    assert bad_amount.status_code == 400 and "amount" in bad_amount.json()["error"]
    assert (await api.quote(USDC, SOL, 10, swapMode="Sideways")).status_code == 400
    too_much = await api.quote(USDC, SOL, 10**18, swapMode="ExactOut")
    assert too_much.json()["errorCode"] == "COULD_NOT_FIND_ANY_ROUTE"
    no_user = await api.http.post("/swap/v1/swap", json={"quoteResponse": (await api.quote(USDC, SOL, 10**6)).json()})
    assert no_user.status_code == 400 and "userPublicKey" in no_user.json()["error"]
    forged = (await api.quote(USDC, SOL, 10**6)).json()
    forged["routePlan"][0]["swapInfo"]["ammKey"] = "11111111111111111111111111111112"
    resp = await api.http.post("/swap/v1/swap", json={"quoteResponse": forged, "userPublicKey": USDC})
    assert resp.status_code == 400 and "ammKey" in resp.json()["error"]


async def test_forged_quote_amounts_are_not_trusted(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 100 * 10**6})
    quote = (await api.quote(USDC, USDT, 10 * 10**6)).json()
    honest = int(quote["outAmount"])
    quote["outAmount"] = str(honest * 100)  # ask the pool for 100x
    quote["otherAmountThreshold"] = "1"
    built = await api.http.post("/swap/v1/swap", json={"quoteResponse": quote, "userPublicKey": str(user.pubkey())})
    tx = sign_partial(VersionedTransaction.from_bytes(b64decode(built.json()["swapTransaction"])), user)
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["err"] is None
    assert token_delta(meta, user.pubkey(), USDT) == honest


async def test_exact_out_fails_with_slippage_error_when_the_pool_moved(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 10_000 * 10**6})
    whale = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 1_000_000 * 10**6})
    _, swap, tx = await api.swap_tx(user, USDC, JUP, 1_000 * 10**6, swapMode="ExactOut", slippageBps=100)
    assert swap["simulationError"] is None
    _, _, front = await api.swap_tx(whale, USDC, JUP, 1_000_000 * 10**6, slippageBps=10_000)  # JUP +25%
    assert (await api.send(front)).get("result")
    sig = (await api.send(tx, skip_preflight=True))["result"]
    meta = (await api.transaction(sig))["meta"]
    assert meta["err"]["InstructionError"][1] == {"Custom": 6001}
    assert token_delta(meta, user.pubkey(), JUP) == 0 and token_delta(meta, user.pubkey(), USDC) == 0


async def test_pool_moved_before_build_is_reported_as_simulation_error(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 1_000 * 10**6})
    whale = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 1_000_000 * 10**6})
    quote = (await api.quote(USDC, BONK, 100 * 10**6, slippageBps=50)).json()
    _, _, front = await api.swap_tx(whale, USDC, BONK, 1_000_000 * 10**6, slippageBps=10_000)
    assert (await api.send(front)).get("result")
    built = await api.http.post("/swap/v1/swap", json={"quoteResponse": quote, "userPublicKey": str(user.pubkey())})
    error = built.json()["simulationError"]
    assert error["errorCode"] == "SLIPPAGE_TOLERANCE_EXCEEDED"
    assert "custom program error: 0x1771" in error["error"] and set(error) == {"errorCode", "error"}


async def test_explicit_cu_price_and_jito_tip_in_the_swap(api: Api) -> None:
    user = await api.new_wallet(lamports=LAMPORTS, tokens={USDC: 100 * 10**6})
    body = {"computeUnitPriceMicroLamports": 1_000, "dynamicComputeUnitLimit": True}
    _, swap, tx = await api.swap_tx(user, USDC, USDT, 10 * 10**6, swap_body=body)
    assert swap["prioritizationType"]["computeBudget"]["microLamports"] == 1_000
    expected = -(-1_000 * swap["computeUnitLimit"] // 10**6)
    assert swap["prioritizationFeeLamports"] == expected
    meta = (await api.transaction((await api.send(tx))["result"]))["meta"]
    assert meta["fee"] == BASE_FEE_TWO_SIGNERS + expected

    tips = (await api.jito("getTipAccounts"))["result"]
    _, swap, tx = await api.swap_tx(user, USDT, USDC, 5 * 10**6, swap_body={"prioritizationFeeLamports": {"jitoTipLamports": 5_000}})
    assert swap["prioritizationFeeLamports"] == 5_000
    keys = [str(k) for k in tx.message.account_keys]
    assert any(k in tips for k in keys)  # the tip transfer is part of the swap
    resp = await api.jito("sendBundle", [[base64.b64encode(bytes(tx)).decode()], {"encoding": "base64"}])
    bundle_id = resp["result"]

    async def landed() -> bool:
        value = (await api.jito("getInflightBundleStatuses", [[bundle_id]]))["result"]["value"][0]
        return value["status"] == "Landed"

    await wait_until(landed)
