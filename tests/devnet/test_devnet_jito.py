"""Jito-compatible block engine over HTTP: tips, atomic bundles, statuses."""

from __future__ import annotations

import base64
import hashlib

import base58
from devnet_support import Api, system_transfer, wait_until
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction


LAMPORTS = 10**9


def b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


async def tip_accounts(api: Api) -> list[str]:
    resp = await api.jito("getTipAccounts")
    return resp["result"]


async def final_status(api: Api, bundle_id: str) -> dict:
    async def check() -> dict | None:
        resp = await api.jito("getInflightBundleStatuses", [[bundle_id]])
        (entry,) = resp["result"]["value"]
        return entry if entry["status"] in ("Landed", "Failed") else None

    return await wait_until(check)


async def test_tip_accounts(api: Api) -> None:
    accounts = await tip_accounts(api)
    assert len(accounts) == 8 and len(set(accounts)) == 8
    assert "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5" in accounts


async def test_bundle_without_a_tip_is_refused(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)
    resp = await api.jito("sendBundle", [[b64(tx)], {"encoding": "base64"}])
    assert resp["error"]["code"] == -32602
    assert "tip account" in resp["error"]["message"]
    tip = Pubkey.from_string((await tip_accounts(api))[0])
    too_small = system_transfer(payer, tip, 999, blockhash)
    resp = await api.jito("sendBundle", [[b64(too_small)], {"encoding": "base64"}])
    assert resp["error"]["code"] == -32602 and "1000" in resp["error"]["message"]
    assert await api.balance(payer.pubkey()) == 10 * LAMPORTS  # nothing ran


async def test_bundle_with_tip_lands_atomically(api: Api) -> None:
    payer = await api.new_wallet(lamports=5 * LAMPORTS)
    dest = Keypair().pubkey()
    tip = Pubkey.from_string((await tip_accounts(api))[3])
    tip_before = await api.balance(tip)
    blockhash, _ = await api.latest_blockhash()
    txs = [system_transfer(payer, dest, LAMPORTS, blockhash), system_transfer(payer, tip, 10_000, blockhash)]
    resp = await api.jito("sendBundle", [[base58.b58encode(bytes(t)).decode() for t in txs]])  # base58 is the default
    bundle_id = resp["result"]
    # as the block engine derives it: SHA-256 of the base58 signatures joined by commas
    assert bundle_id == hashlib.sha256(",".join(str(t.signatures[0]) for t in txs).encode()).hexdigest()
    status = await final_status(api, bundle_id)
    assert status["status"] == "Landed" and status["landed_slot"] > 0
    assert await api.balance(dest) == LAMPORTS
    assert await api.balance(tip) == tip_before + 10_000
    for tx in txs:
        st = await api.status(str(tx.signatures[0]))
        assert st is not None and st["err"] is None and st["slot"] == status["landed_slot"]
    statuses = (await api.jito("getBundleStatuses", [[bundle_id]]))["result"]["value"]
    assert statuses[0]["transactions"] == [str(t.signatures[0]) for t in txs]
    # the same bundle again: same id, not executed twice
    again = await api.jito("sendBundle", [[base58.b58encode(bytes(t)).decode() for t in txs]])
    assert again["result"] == bundle_id
    assert await api.balance(dest) == LAMPORTS
    unknown = (await api.jito("getInflightBundleStatuses", [["00" * 32]]))["result"]["value"][0]
    assert unknown["status"] == "Invalid"


async def test_failing_transaction_in_a_bundle_changes_nothing(api: Api) -> None:
    payer = await api.new_wallet(lamports=2 * LAMPORTS)
    dest = Keypair().pubkey()
    tip = Pubkey.from_string((await tip_accounts(api))[1])
    tip_before = await api.balance(tip)
    blockhash, _ = await api.latest_blockhash()
    good = system_transfer(payer, dest, LAMPORTS, blockhash)
    tipping = system_transfer(payer, tip, 5_000, blockhash)
    failing = system_transfer(payer, dest, 50 * LAMPORTS, blockhash)  # more than the payer has
    resp = await api.jito("sendBundle", [[b64(good), b64(tipping), b64(failing)], {"encoding": "base64"}])
    status = await final_status(api, resp["result"])
    assert status["status"] == "Failed" and status["landed_slot"] is None
    assert await api.balance(dest) == 0
    assert await api.balance(tip) == tip_before
    assert await api.balance(payer.pubkey()) == 2 * LAMPORTS  # not even fees
    for tx in (good, tipping, failing):
        assert await api.status(str(tx.signatures[0])) is None
    # the good transactions are still sendable on their own afterwards
    assert (await api.send(good)).get("result") == str(good.signatures[0])


async def test_jito_send_transaction_skips_preflight(api: Api) -> None:
    payer = await api.new_wallet(lamports=LAMPORTS)
    blockhash, _ = await api.latest_blockhash()
    failing = system_transfer(payer, Keypair().pubkey(), 5 * LAMPORTS, blockhash)
    resp = await api.rpc_raw("sendTransaction", [b64(failing), {"encoding": "base64"}], path="/api/v1/transactions")
    sig = resp["result"]  # no preflight error: it is sent and fails on chain
    st = await api.wait_confirmed(sig)
    assert st["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert await api.balance(payer.pubkey()) == LAMPORTS - 5_000


async def test_bundle_limits(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tip = Pubkey.from_string((await tip_accounts(api))[0])
    six = [b64(system_transfer(payer, tip, 1_000 + i, blockhash)) for i in range(6)]
    resp = await api.jito("sendBundle", [six, {"encoding": "base64"}])
    assert resp["error"]["code"] == -32602
    resp = await api.jito("sendBundle", [["not base64!"], {"encoding": "base64"}])
    assert resp["error"]["code"] == -32602
