"""The block engine keeps a transaction carrying a ``jitodontfront`` account at the front of
its bundle: a bundle placing one anywhere else is refused, and nothing of it runs."""

from __future__ import annotations

import base64

from devnet_support import Api, wait_until
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

LAMPORTS = 10**9
DONT_FRONT = Pubkey.from_string("jitodontfront111111111111111111111111111111")


def b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


def transfer_tx(payer: Keypair, to: Pubkey, lamports: int, blockhash: str, *, marked: bool) -> VersionedTransaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    if marked:  # the marker rides as a read-only account of the transfer
        ix = Instruction(ix.program_id, bytes(ix.data), [*ix.accounts, AccountMeta(DONT_FRONT, False, False)])
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash)), [payer])


async def test_a_marked_transaction_behind_another_is_refused_and_at_the_front_lands(api: Api) -> None:
    payer = await api.new_wallet(lamports=5 * LAMPORTS)
    dest = Keypair().pubkey()
    tip = Pubkey.from_string((await api.jito("getTipAccounts"))["result"][0])
    blockhash, _ = await api.latest_blockhash()
    plain = transfer_tx(payer, dest, LAMPORTS, blockhash, marked=False)
    marked_tip = transfer_tx(payer, tip, 10_000, blockhash, marked=True)

    refused = await api.jito("sendBundle", [[b64(plain), b64(marked_tip)], {"encoding": "base64"}])

    assert refused["error"]["code"] == -32602, refused
    assert "jitodontfront" in refused["error"]["message"] and "transaction 1" in refused["error"]["message"]
    assert await api.balance(payer.pubkey()) == 5 * LAMPORTS and await api.balance(dest) == 0

    landed = await api.jito("sendBundle", [[b64(marked_tip), b64(plain)], {"encoding": "base64"}])
    bundle_id = landed["result"]

    async def final() -> dict | None:
        (entry,) = (await api.jito("getInflightBundleStatuses", [[bundle_id]]))["result"]["value"]
        return entry if entry["status"] in ("Landed", "Failed") else None

    assert (await wait_until(final))["status"] == "Landed"
    assert await api.balance(dest) == LAMPORTS
