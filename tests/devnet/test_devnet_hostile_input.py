"""Odd inputs get the real services' error shapes, never an internal error, and the clock
control cannot stall the devnet.

* JSON nested too deeply to parse is a JSON-RPC parse error (-32700) on the RPC and the block
  engine, and a 400 on the swap API and the control endpoints: not a bare HTTP 500.
* A ``maxSupportedTransactionVersion`` or ``dataSlice`` of the wrong type is invalid params
  (-32602), as Agave answers it, not -32603 "Internal error".
* ``/devnet/advance`` by a very large number of slots answers at once (and one too large for
  a u64 slot is a 400), with every blockhash from before the jump expired.
* An encoded transaction longer than any transaction's encoding is refused before it is
  decoded (-32602, Agave's message), at once, however long it is.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from devnet_support import SOL, USDC, Api, own_devnet, system_transfer
from solders.keypair import Keypair

from tradewire.devnet import DevnetConfig

LAMPORTS = 10**9
DEEP = b"[" * 25_000 + b"]" * 25_000  # (under the RPC's 50 KiB body limit, far past any parser's depth)


@pytest_asyncio.fixture
async def own_api() -> AsyncIterator[Api]:
    """A devnet of its own (its clock is moved far ahead)."""
    config = DevnetConfig(slot_ms=20, finalize_depth=2, pools=[], wallets=[])
    async with own_devnet(config) as api:
        yield api


@pytest.mark.parametrize("path", ["/", "/api/v1/bundles", "/api/v1/transactions"])
async def test_json_nested_too_deep_is_a_json_rpc_parse_error(api: Api, path: str) -> None:
    resp = await api.http.post(path, content=DEEP, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
    assert (await api.rpc("getHealth")) == "ok"


@pytest.mark.parametrize("path", ["/swap/v1/swap", "/devnet/fund", "/devnet/advance"])
async def test_json_nested_too_deep_is_a_bad_request_on_the_http_apis(api: Api, path: str) -> None:
    resp = await api.http.post(path, content=DEEP, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "error" in resp.json()


async def test_max_supported_transaction_version_of_the_wrong_type_is_invalid_params(api: Api) -> None:
    user = await api.new_wallet(lamports=2 * LAMPORTS)
    _, _, tx = await api.swap_tx(user, SOL, USDC, LAMPORTS // 10)
    sent = await api.send(tx)
    signature = sent["result"]
    await api.wait_confirmed(signature)

    for bad in ("0", -1, 256, True, 1.5):
        answer = await api.rpc_raw("getTransaction", [signature, {
            "encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": bad}])
        assert answer["error"]["code"] == -32602, (bad, answer)
        assert "maxSupportedTransactionVersion" in answer["error"]["message"]
    got = await api.rpc("getTransaction", [signature, {
        "encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}])
    assert got["version"] == 0 and got["meta"]["err"] is None


async def test_a_data_slice_of_the_wrong_shape_is_invalid_params(api: Api) -> None:
    mint = USDC  # 82 bytes of mint data
    for bad in ({"offset": "a", "length": 4}, {"offset": -1, "length": 4}, {"offset": 0, "length": -5},
                {"offset": 1.5, "length": 2}, {"offset": 0}, {"length": 4}, {"offset": 0, "length": 2**64}):
        for method, params in (("getAccountInfo", [mint]), ("getMultipleAccounts", [[mint]])):
            answer = await api.rpc_raw(method, [*params, {"encoding": "base64", "dataSlice": bad}])
            assert answer["error"]["code"] == -32602, (method, bad, answer)
    whole = await api.rpc("getAccountInfo", [mint, {"encoding": "base64"}])
    sliced = await api.rpc("getAccountInfo", [mint, {"encoding": "base64", "dataSlice": {"offset": 36, "length": 8}}])
    data = base64.b64decode(whole["value"]["data"][0])
    assert base64.b64decode(sliced["value"]["data"][0]) == data[36:44]


async def test_advancing_a_billion_slots_answers_at_once_and_expires_older_blockhashes(own_api: Api) -> None:
    payer = await own_api.new_wallet(lamports=2 * LAMPORTS)
    old, _ = await own_api.latest_blockhash()
    slot, height = await own_api.rpc("getSlot"), await own_api.rpc("getBlockHeight")

    resp = await asyncio.wait_for(own_api.http.post("/devnet/advance", json={"slots": 10**9}), 5)

    assert resp.status_code == 200, resp.text
    assert resp.json()["slot"] >= slot + 10**9 and resp.json()["blockHeight"] >= height + 10**9
    assert (await own_api.rpc("isBlockhashValid", [old]))["value"] is False
    refused = await own_api.send(system_transfer(payer, Keypair().pubkey(), LAMPORTS // 10, old))
    assert refused["error"]["code"] == -32002 and refused["error"]["data"]["err"] == "BlockhashNotFound"
    fresh, last_valid = await own_api.latest_blockhash()
    assert last_valid >= resp.json()["blockHeight"] + 150 - 1
    landed = await own_api.send(system_transfer(payer, Keypair().pubkey(), LAMPORTS // 10, fresh))
    assert "result" in landed, landed
    await own_api.wait_confirmed(landed["result"])


async def test_advancing_past_what_a_slot_can_hold_is_a_bad_request(own_api: Api) -> None:
    slot = await own_api.rpc("getSlot")
    resp = await asyncio.wait_for(own_api.http.post("/devnet/advance", json={"slots": 2**70}), 5)
    assert resp.status_code == 400 and "invalid advance request" in resp.json()["error"]
    assert slot <= await own_api.rpc("getSlot") < slot + 10**6


@pytest.mark.parametrize("method, path, params, length", [  # (the RPC takes bodies of 50 KiB at most)
    ("sendTransaction", "/", lambda tx: [tx], 40_000),
    ("simulateTransaction", "/", lambda tx: [tx], 40_000),
    ("sendTransaction", "/api/v1/transactions", lambda tx: [tx], 400_000),
    ("sendBundle", "/api/v1/bundles", lambda tx: [[tx]], 400_000),
])
async def test_an_encoded_transaction_too_long_for_any_transaction_is_refused_at_once(
        api: Api, method: str, path: str, params, length: int) -> None:
    for encoding, text in (("base58", "2" * length), ("base64", "A" * length)):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": [*params(text), {"encoding": encoding}]}
        resp = await asyncio.wait_for(api.http.post(path, json=body), 5)
        error = resp.json()["error"]
        assert error["code"] == -32602, error
        assert f"{encoding} encoded solana_transaction::versioned::VersionedTransaction too large: {length} bytes" \
            in error["message"]
    # a transaction of ordinary length still decodes and runs
    user = await api.new_wallet(lamports=LAMPORTS)
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(user, Keypair().pubkey(), LAMPORTS // 10, blockhash)
    answer = await api.rpc_raw("simulateTransaction", [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}])
    assert answer["result"]["value"]["err"] is None, answer
