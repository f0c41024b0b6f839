"""Slots advance on a clock and blockhashes expire like mainnet's (window of N blocks).

A second devnet with a 5-block window and 10 ms slots makes expiry take ~60 ms; the test
polls the block height with a deadline instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from devnet_support import Api, own_devnet, system_transfer, wait_until
from solders.keypair import Keypair

from tradewire.devnet import DevnetConfig

LAMPORTS = 10**9


@pytest_asyncio.fixture(scope="module")
async def fast_api() -> AsyncIterator[Api]:
    config = DevnetConfig(slot_ms=10, blockhash_valid_blocks=5, finalize_depth=2, pools=[], wallets=[])
    async with own_devnet(config) as api:
        yield api


async def height_above(api: Api, height: int) -> bool:
    return (await api.rpc("getBlockHeight")) > height


async def test_slots_and_block_height_advance_on_the_clock(fast_api: Api) -> None:
    slot = await fast_api.rpc("getSlot")
    height = await fast_api.rpc("getBlockHeight")
    await wait_until(lambda: height_above(fast_api, height + 3))
    assert await fast_api.rpc("getSlot") > slot + 3
    _, last_valid = await fast_api.latest_blockhash()
    now = await fast_api.rpc("getBlockHeight")
    assert last_valid - 5 <= now <= last_valid  # issued at the current height, valid for 5 more blocks


async def test_expired_blockhash_is_refused(fast_api: Api) -> None:
    payer = await fast_api.new_wallet(lamports=2 * LAMPORTS)
    blockhash, last_valid = await fast_api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)
    await wait_until(lambda: height_above(fast_api, last_valid))
    assert (await fast_api.rpc("isBlockhashValid", [blockhash]))["value"] is False

    refused = await fast_api.send(tx)
    assert refused["error"]["code"] == -32002
    assert refused["error"]["data"]["err"] == "BlockhashNotFound"
    assert refused["error"]["message"] == "Transaction simulation failed: Blockhash not found"

    # skipPreflight: the signature comes back but the transaction never lands
    dropped = await fast_api.send(tx, skip_preflight=True)
    assert dropped["result"] == str(tx.signatures[0])
    now = await fast_api.rpc("getBlockHeight")
    await wait_until(lambda: height_above(fast_api, now + 2))
    assert await fast_api.status(dropped["result"]) is None
    assert await fast_api.balance(payer.pubkey()) == 2 * LAMPORTS


async def test_advance_control_endpoint_expires_blockhashes(fast_api: Api) -> None:
    blockhash, _ = await fast_api.latest_blockhash()
    assert (await fast_api.rpc("isBlockhashValid", [blockhash]))["value"] is True
    before = await fast_api.rpc("getSlot")
    resp = await fast_api.http.post("/devnet/advance", json={"slots": 50})
    assert resp.status_code == 200 and resp.json()["slot"] >= before + 50
    assert (await fast_api.rpc("isBlockhashValid", [blockhash]))["value"] is False


async def test_any_blockhash_inside_the_window_is_accepted(api: Api) -> None:
    """On the main devnet (150-block window): an older-but-valid blockhash still lands."""
    payer = await api.new_wallet(lamports=2 * LAMPORTS)
    dest = Keypair().pubkey()
    old, last_valid = await api.latest_blockhash()

    async def newer_blockhash() -> bool:
        return (await api.latest_blockhash())[0] != old

    await wait_until(newer_blockhash)
    assert (await api.rpc("getBlockHeight")) <= last_valid
    sent = await api.send(system_transfer(payer, dest, LAMPORTS, old))
    assert sent.get("result"), sent
    await api.wait_confirmed(sent["result"])
    assert await api.balance(dest) == LAMPORTS


async def test_confirmation_status_progresses_to_finalized(fast_api: Api) -> None:
    payer = await fast_api.new_wallet(lamports=2 * LAMPORTS)
    blockhash, _ = await fast_api.latest_blockhash()
    sig = (await fast_api.send(system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)))["result"]

    async def finalized() -> dict | None:
        st = await fast_api.status(sig)
        return st if st and st["confirmationStatus"] == "finalized" else None

    st = await wait_until(finalized)
    assert st["confirmations"] is None
    got = await fast_api.rpc("getTransaction", [sig, {"maxSupportedTransactionVersion": 0}])  # default: finalized
    assert got["meta"]["fee"] == 5_000
