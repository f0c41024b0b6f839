"""More of mainnet's wire behaviour the LIVE executor meets, as Agave and Jupiter show it.

* Simulation (simulateTransaction, sendTransaction's preflight) takes a blockhash only while
  it stays valid for MAX_TRANSACTION_FORWARDING_DELAY (6) more blocks: in its last 6 blocks
  isBlockhashValid still says true and the same bytes sent with skipPreflight still land,
  but preflight refuses them with -32002 BlockhashNotFound.
* A malformed blockhash is invalid params (-32602), like a malformed pubkey or signature,
  never -32603 (which a client takes for a node that is not fit to answer).
* Boolean options are booleans and commitments are commitment levels, preflightCommitment
  too: anything else is -32602, not read as "truthy" or ignored.
* simulateTransaction returns accounts as base64 or jsonParsed only, at most as many as the
  transaction has.
* Jupiter's /swap refuses computeUnitPriceMicroLamports together with
  prioritizationFeeLamports (INVALID_COMPUTE_UNIT_PRICE_AND_PRIORITIZATION_FEE).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from devnet_support import SOL, USDC, Api, own_devnet, system_transfer
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tradewire.devnet import DevnetConfig

LAMPORTS = 10**9
FORWARDING_DELAY = 6  # blocks of a 150-block blockhash life that simulation refuses


def b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


@pytest_asyncio.fixture
async def still_api() -> AsyncIterator[Api]:
    """A mainnet-timed devnet (150-block blockhashes) whose clock moves only by /devnet/advance."""
    config = DevnetConfig(slot_ms=3_600_000, finalize_depth=4, pools=[], wallets=[])
    async with own_devnet(config) as api:
        yield api


async def advance_to_height(api: Api, height: int) -> None:
    now = await api.rpc("getBlockHeight")
    assert now <= height
    resp = await api.http.post("/devnet/advance", json={"slots": height - now})  # one block per slot
    assert resp.status_code == 200 and resp.json()["blockHeight"] == height, resp.text


async def simulated_err(api: Api, tx: VersionedTransaction):
    return (await api.rpc("simulateTransaction", [b64(tx), {"encoding": "base64"}]))["value"]["err"]


async def test_preflight_refuses_a_blockhash_in_its_last_blocks_that_skip_preflight_still_lands(
        still_api: Api) -> None:
    payer = await still_api.new_wallet(lamports=5 * LAMPORTS)
    dest = Keypair().pubkey()
    blockhash, last_valid = await still_api.latest_blockhash()
    amounts = (LAMPORTS // 10, LAMPORTS // 10 + 1, LAMPORTS // 10 + 2)  # distinct signatures
    early, late, expired = (system_transfer(payer, dest, amount, blockhash) for amount in amounts)

    await advance_to_height(still_api, last_valid - FORWARDING_DELAY)  # the last height simulation takes it
    assert await simulated_err(still_api, early) is None
    assert (await still_api.send(early)).get("result") == str(early.signatures[0])

    await advance_to_height(still_api, last_valid - FORWARDING_DELAY + 1)
    assert (await still_api.rpc("isBlockhashValid", [blockhash]))["value"] is True
    assert await simulated_err(still_api, late) == "BlockhashNotFound"
    refused = (await still_api.send(late))["error"]
    assert refused["code"] == -32002
    assert refused["message"] == "Transaction simulation failed: Blockhash not found"
    assert refused["data"]["err"] == "BlockhashNotFound"
    assert await still_api.status(str(late.signatures[0])) is None  # a refused preflight sends nothing

    landed = await still_api.send(late, skip_preflight=True)  # the node still takes the bytes, and they land
    assert landed.get("result") == str(late.signatures[0]), landed
    status = await still_api.status(landed["result"])
    assert status is not None and status["err"] is None
    assert await still_api.balance(dest) == amounts[0] + amounts[1]

    await advance_to_height(still_api, last_valid + 1)  # past its life: nothing takes it any more
    assert (await still_api.rpc("isBlockhashValid", [blockhash]))["value"] is False
    dropped = await still_api.send(expired, skip_preflight=True)
    assert dropped.get("result") == str(expired.signatures[0])
    assert await still_api.status(dropped["result"]) is None
    assert await still_api.balance(dest) == amounts[0] + amounts[1]


@pytest.mark.parametrize("raw, message", [
    ("abc", "Invalid param: WrongSize"),  # decodes, to too few bytes
    ("1" * 50, "Invalid param: WrongSize"),  # longer than any 32-byte value's base58
    ("0OIl" * 8, "Invalid param: Invalid"),  # not base58 at all
    (5, "Invalid param: Invalid"),
])
async def test_a_malformed_blockhash_is_invalid_params(api: Api, raw, message: str) -> None:
    answer = await api.rpc_raw("isBlockhashValid", [raw])
    assert answer["error"] == {"code": -32602, "message": message}, answer
    signature = await api.rpc_raw("getSignatureStatuses", [[raw]])  # the same words for a signature
    assert signature["error"] == {"code": -32602, "message": message}, signature
    blockhash, _ = await api.latest_blockhash()
    assert (await api.rpc("isBlockhashValid", [blockhash]))["value"] is True


async def test_boolean_options_must_be_booleans(api: Api) -> None:
    payer = await api.new_wallet(lamports=LAMPORTS)
    dest = Keypair().pubkey()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, dest, LAMPORTS // 10, blockhash)
    for method, option in (("sendTransaction", "skipPreflight"), ("simulateTransaction", "sigVerify"),
                           ("simulateTransaction", "replaceRecentBlockhash"),
                           ("simulateTransaction", "innerInstructions")):
        for bad in ("true", 1, None):
            answer = await api.rpc_raw(method, [b64(tx), {"encoding": "base64", option: bad}])
            assert answer.get("error", {}).get("code") == -32602, (method, option, bad, answer)
            assert option in answer["error"]["message"]
    assert await api.status(str(tx.signatures[0])) is None  # nothing was sent
    assert await api.balance(dest) == 0
    sent = await api.rpc_raw("sendTransaction", [b64(tx), {"encoding": "base64", "skipPreflight": False}])
    assert sent.get("result") == str(tx.signatures[0]), sent


async def test_an_unknown_preflight_commitment_is_invalid_params(api: Api) -> None:
    payer = await api.new_wallet(lamports=LAMPORTS)
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS // 10, blockhash)
    for bad in ("bogus", "Processed", 0):
        answer = await api.rpc_raw("sendTransaction", [b64(tx), {"encoding": "base64", "preflightCommitment": bad}])
        assert answer.get("error", {}).get("code") == -32602, (bad, answer)
    assert await api.status(str(tx.signatures[0])) is None
    sent = await api.rpc_raw("sendTransaction", [b64(tx), {"encoding": "base64", "preflightCommitment": "processed"}])
    assert sent.get("result") == str(tx.signatures[0]), sent


async def test_simulated_accounts_are_base64_or_json_parsed_and_no_more_than_the_transaction_has(api: Api) -> None:
    payer = await api.new_wallet(lamports=LAMPORTS)
    dest = Keypair().pubkey()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, dest, LAMPORTS // 10, blockhash)  # 3 account keys
    mine = [str(payer.pubkey()), str(dest)]

    async def simulate(accounts: dict):
        return await api.rpc_raw("simulateTransaction", [b64(tx), {"encoding": "base64", "accounts": accounts}])

    for encoding in ("base58", "binary"):
        answer = await simulate({"addresses": mine, "encoding": encoding})
        assert answer.get("error") == {"code": -32602, "message": "base58 encoding not supported"}, answer
    four = [*mine, str(Pubkey.default()), str(Keypair().pubkey())]
    answer = await simulate({"addresses": four, "encoding": "base64"})
    assert answer.get("error") == {"code": -32602, "message": "Too many accounts provided; max 3"}, answer

    value = (await simulate({"addresses": mine, "encoding": "base64"}))["result"]["value"]
    assert value["err"] is None
    assert [a["lamports"] if a else 0 for a in value["accounts"]] == [LAMPORTS - 5_000 - LAMPORTS // 10,
                                                                     LAMPORTS // 10]


async def test_jupiter_refuses_a_cu_price_together_with_a_prioritization_fee(api: Api) -> None:
    user = await api.new_wallet(lamports=2 * LAMPORTS)
    quote = (await api.quote(SOL, USDC, LAMPORTS // 10)).json()
    body = {"quoteResponse": quote, "userPublicKey": str(user.pubkey())}
    both = await api.http.post("/swap/v1/swap", json={
        **body, "computeUnitPriceMicroLamports": 1_000, "prioritizationFeeLamports": {"jitoTipLamports": 5_000}})
    assert both.status_code == 400, both.text
    assert both.json()["errorCode"] == "INVALID_COMPUTE_UNIT_PRICE_AND_PRIORITIZATION_FEE"
    for one in ({"computeUnitPriceMicroLamports": 1_000}, {"prioritizationFeeLamports": {"jitoTipLamports": 5_000}},
                {"computeUnitPriceMicroLamports": 1_000, "prioritizationFeeLamports": None}):
        built = await api.http.post("/swap/v1/swap", json={**body, **one})
        assert built.status_code == 200 and built.json()["simulationError"] is None, (one, built.text)
