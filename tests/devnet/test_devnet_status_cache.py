"""getSignatureStatuses reads a validator's status cache unless asked to search history.

Agave answers a plain getSignatureStatuses from its status cache, which holds every slot not
rooted yet plus the last MAX_RECENT_BLOCKHASHES (300, twice the 150-block blockhash lifetime)
rooted slots; an older signature is null there. With ``searchTransactionHistory: true`` it
also searches its ledger and finds it, finalized. The devnet here has a 10-block blockhash
lifetime (a 20-slot cache) and slots that move only when the test advances them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from devnet_support import Api, own_devnet, system_transfer
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.signature import Signature

from tradewire.devnet import DevnetConfig

LAMPORTS = 10**9
WINDOW = 10  # blocks a blockhash stays valid
FINALIZE_DEPTH = 4
CACHE_ROOTS = 2 * WINDOW  # rooted slots the status cache keeps


@pytest_asyncio.fixture
async def still_api() -> AsyncIterator[Api]:
    """A devnet whose clock moves only by /devnet/advance (an hour per slot)."""
    config = DevnetConfig(slot_ms=3_600_000, blockhash_valid_blocks=WINDOW, finalize_depth=FINALIZE_DEPTH,
                          pools=[], wallets=[])
    async with own_devnet(config) as api:
        yield api


async def advance_to(api: Api, slot: int) -> None:
    now = await api.rpc("getSlot")
    assert now <= slot
    resp = await api.http.post("/devnet/advance", json={"slots": slot - now})
    assert resp.status_code == 200 and resp.json()["slot"] == slot, resp.text


async def statuses(api: Api, signature: str, **config) -> dict | None:
    params = [[signature], config] if config else [[signature]]
    return (await api.rpc("getSignatureStatuses", params))["value"][0]


async def landed_transfer(api: Api) -> tuple[str, int]:
    """(signature, landing slot) of a transfer sent with preflight."""
    payer = await api.new_wallet(lamports=2 * LAMPORTS)
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS // 10, blockhash)
    sent = await api.send(tx)
    assert sent.get("result") == str(tx.signatures[0]), sent
    status = await statuses(api, sent["result"])
    assert status is not None and status["confirmationStatus"] == "processed"
    return sent["result"], status["slot"]


async def test_an_old_status_leaves_the_cache_and_only_a_history_search_finds_it(still_api: Api) -> None:
    signature, slot = await landed_transfer(still_api)
    last_cached = slot + FINALIZE_DEPTH + CACHE_ROOTS - 1  # its slot is the oldest root still cached

    await advance_to(still_api, last_cached)
    cached = await statuses(still_api, signature)
    assert cached == {"slot": slot, "confirmations": None, "err": None, "status": {"Ok": None},
                      "confirmationStatus": "finalized"}

    await advance_to(still_api, last_cached + 1)
    assert await statuses(still_api, signature) is None
    assert await statuses(still_api, signature, searchTransactionHistory=False) is None
    assert await statuses(still_api, signature, searchTransactionHistory=True) == cached
    # The ledger still has it, whatever the cache says.
    got = await still_api.rpc("getTransaction", [signature, {"maxSupportedTransactionVersion": 0}])
    assert got["slot"] == slot and got["meta"]["err"] is None


async def test_the_status_cache_outlives_the_transactions_blockhash(still_api: Api) -> None:
    """A client polling without history sees a landed transaction for as long as its
    blockhash could still land it, and well after (the LIVE confirmer relies on this)."""
    signature, slot = await landed_transfer(still_api)
    height = await still_api.rpc("getBlockHeight")
    await advance_to(still_api, slot + WINDOW + 1)
    assert await still_api.rpc("getBlockHeight") > height + WINDOW  # its blockhash has expired
    status = await statuses(still_api, signature)
    assert status is not None and status["slot"] == slot and status["confirmationStatus"] == "finalized"


async def test_solana_py_asks_with_and_without_history(still_api: Api) -> None:
    signature, slot = await landed_transfer(still_api)
    await advance_to(still_api, slot + FINALIZE_DEPTH + CACHE_ROOTS)
    async with AsyncClient(still_api.server.rpc_url, timeout=10) as client:
        sig = Signature.from_string(signature)
        assert (await client.get_signature_statuses([sig])).value == [None]
        (found,) = (await client.get_signature_statuses([sig], search_transaction_history=True)).value
    assert found is not None and found.slot == slot and found.err is None and found.confirmations is None


async def test_search_transaction_history_must_be_a_boolean(still_api: Api) -> None:
    signature, _ = await landed_transfer(still_api)
    for bad in ("true", 1, None, {}):
        answer = await still_api.rpc_raw("getSignatureStatuses", [[signature], {"searchTransactionHistory": bad}])
        assert answer["error"]["code"] == -32602, (bad, answer)
        assert "searchTransactionHistory" in answer["error"]["message"]
