"""Solana JSON-RPC over a real socket: solana-py AsyncClient unchanged, plus raw JSON-RPC
for shapes and error codes."""

from __future__ import annotations

import base64

import base58
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TokenAccountOpts, TxOpts
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from devnet_support import JUP, TOKEN_PROGRAM, USDC, Api, system_transfer, wait_until


LAMPORTS = 10**9


async def test_solana_py_reads_balances_and_confirms_a_transfer(client: AsyncClient, api: Api) -> None:
    alice = await api.new_wallet(lamports=5 * LAMPORTS)
    bob = Keypair()
    assert (await client.get_balance(alice.pubkey())).value == 5 * LAMPORTS
    latest = (await client.get_latest_blockhash()).value
    tx = system_transfer(alice, bob.pubkey(), LAMPORTS, str(latest.blockhash))
    sent = await client.send_transaction(
        tx,
        opts=TxOpts(skip_confirmation=False, preflight_commitment=Confirmed,
                    last_valid_block_height=latest.last_valid_block_height),
    )
    status = (await client.get_signature_statuses([sent.value])).value[0]
    assert status is not None and status.err is None
    assert (await client.get_balance(bob.pubkey())).value == LAMPORTS
    assert (await client.get_balance(alice.pubkey())).value == 4 * LAMPORTS - 5_000

    got = await client.get_transaction(sent.value, commitment=Confirmed, max_supported_transaction_version=0)
    meta = got.value.transaction.meta
    assert meta.fee == 5_000 and meta.err is None
    assert meta.pre_balances[:2] == [5 * LAMPORTS, 0]
    assert meta.post_balances[:2] == [4 * LAMPORTS - 5_000, LAMPORTS]
    assert any("11111111111111111111111111111111 success" in line for line in meta.log_messages)


async def test_token_reads_at_mainnet_mint_addresses(client: AsyncClient, api: Api) -> None:
    owner = await api.new_wallet(tokens={USDC: 1_234_500_000, "JUP": 7})
    usdc = Pubkey.from_string(USDC)
    ata = get_associated_token_address(owner.pubkey(), usdc)
    bal = (await client.get_token_account_balance(ata)).value
    assert (bal.amount, bal.decimals, bal.ui_amount_string) == ("1234500000", 6, "1234.5")

    by_mint = (await client.get_token_accounts_by_owner(owner.pubkey(), TokenAccountOpts(mint=usdc))).value
    assert [str(a.pubkey) for a in by_mint] == [str(ata)]
    by_program = await client.get_token_accounts_by_owner_json_parsed(
        owner.pubkey(), TokenAccountOpts(program_id=Pubkey.from_string(TOKEN_PROGRAM))
    )
    amounts = {a.account.data.parsed["info"]["mint"]: a.account.data.parsed["info"]["tokenAmount"]["amount"]
               for a in by_program.value}
    assert amounts == {USDC: "1234500000", JUP: "7"}

    mint = (await client.get_account_info_json_parsed(usdc)).value
    assert str(mint.owner) == TOKEN_PROGRAM
    assert mint.data.parsed["type"] == "mint" and mint.data.parsed["info"]["decimals"] == 6
    raw = (await client.get_account_info(ata)).value
    assert len(raw.data) == 165 and str(raw.owner) == TOKEN_PROGRAM


async def test_cluster_methods(client: AsyncClient, api: Api) -> None:
    assert (await api.rpc("getHealth")) == "ok"
    assert "solana-core" in (await api.rpc("getVersion"))
    assert (await client.get_minimum_balance_for_rent_exemption(165)).value == 2_039_280
    slot = (await client.get_slot()).value
    await wait_until(lambda: _slot_after(client, slot))
    fees = (await client.get_recent_prioritization_fees()).value
    assert fees and all(f.prioritization_fee >= 0 for f in fees)
    assert fees[-1].slot >= slot


async def _slot_after(client: AsyncClient, slot: int) -> bool:
    return (await client.get_slot()).value > slot


async def test_get_fee_for_message(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)
    msg = base64.b64encode(to_bytes_versioned(tx.message)).decode()
    assert (await api.rpc("getFeeForMessage", [msg]))["value"] == 5_000


async def test_airdrop_and_batched_signature_statuses(client: AsyncClient, api: Api) -> None:
    a, b = Keypair().pubkey(), Keypair().pubkey()
    sig_a = (await client.request_airdrop(a, 2 * LAMPORTS)).value
    sig_b = (await client.request_airdrop(b, 3 * LAMPORTS)).value
    unknown = Signature.default()
    await api.wait_confirmed(str(sig_b))
    statuses = (await client.get_signature_statuses([sig_a, unknown, sig_b])).value
    assert statuses[0] is not None and statuses[0].err is None
    assert statuses[1] is None
    assert statuses[2] is not None
    assert (await client.get_balance(a)).value == 2 * LAMPORTS
    assert (await client.get_balance(b)).value == 3 * LAMPORTS


async def test_resend_of_the_same_bytes_executes_once(client: AsyncClient, api: Api) -> None:
    payer = await api.new_wallet(lamports=5 * LAMPORTS)
    dest = Keypair().pubkey()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, dest, LAMPORTS, blockhash)
    first = await api.send(tx)
    sig = first["result"]
    assert sig == str(tx.signatures[0])
    # with preflight: the real error
    again = await api.send(tx)
    assert again["error"]["code"] == -32002
    assert again["error"]["data"]["err"] == "AlreadyProcessed"
    assert "already been processed" in again["error"]["message"]
    # without preflight: the signature, and nothing runs again
    skipped = await api.send(tx, skip_preflight=True)
    assert skipped["result"] == sig
    with_client = await client.send_raw_transaction(bytes(tx), opts=TxOpts(skip_preflight=True))
    assert str(with_client.value) == sig
    await api.wait_confirmed(sig)
    assert await api.balance(dest) == LAMPORTS
    assert await api.balance(payer.pubkey()) == 4 * LAMPORTS - 5_000


async def test_simulate_transaction(client: AsyncClient, api: Api) -> None:
    payer = await api.new_wallet(lamports=2 * LAMPORTS)
    dest = Keypair().pubkey()
    blockhash, _ = await api.latest_blockhash()
    ok = system_transfer(payer, dest, LAMPORTS, blockhash)
    sim = (await client.simulate_transaction(ok, sig_verify=True)).value
    assert sim.err is None and sim.units_consumed and sim.logs
    assert await api.balance(dest) == 0  # nothing committed

    too_much = system_transfer(payer, dest, 50 * LAMPORTS, blockhash)
    failed = (await client.simulate_transaction(too_much)).value
    assert failed.err is not None
    raw = await api.rpc("simulateTransaction", [base64.b64encode(bytes(too_much)).decode(), {"encoding": "base64"}])
    assert raw["value"]["err"] == {"InstructionError": [0, {"Custom": 1}]}

    stale = system_transfer(payer, dest, LAMPORTS, "11111111111111111111111111111111")
    replaced = (await client.simulate_transaction(stale, replace_recent_blockhash=True)).value
    assert replaced.err is None and replaced.replacement_blockhash is not None
    refused = (await client.simulate_transaction(stale)).value
    assert api_err(refused.err) == "BlockhashNotFound"


def api_err(err: object) -> str:
    return str(err).split(".")[-1]


async def test_preflight_and_parameter_errors_use_real_codes(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), 100 * LAMPORTS, blockhash)
    failed = await api.send(tx)
    assert failed["error"]["code"] == -32002
    assert failed["error"]["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert any("insufficient lamports" in line for line in failed["error"]["data"]["logs"])

    unsigned = VersionedTransaction.populate(tx.message, [Signature.default()])
    bad_sig = await api.send(unsigned)
    assert bad_sig["error"]["code"] == -32003

    assert (await api.rpc_raw("getBalance", ["not-a-pubkey"]))["error"]["code"] == -32602
    assert (await api.rpc_raw("getBalance", []))["error"]["code"] == -32602
    assert (await api.rpc_raw("sendTransaction", ["AAAA", {"encoding": "base64"}]))["error"]["code"] == -32602
    assert (await api.rpc_raw("noSuchMethod"))["error"]["code"] == -32601
    resp = await api.http.post("/", content=b"{not json")
    assert resp.json()["error"]["code"] == -32700
    batch = await api.http.post("/", json=[{"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                                          {"jsonrpc": "2.0", "id": 2, "method": "getHealth"}])
    assert [item["id"] for item in batch.json()] == [1, 2]


async def test_preflight_error_parses_in_solana_py(client: AsyncClient, api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), 100 * LAMPORTS, blockhash)
    try:
        await client.send_transaction(tx)
    except RPCException as exc:
        assert isinstance(exc.args[0], SendTransactionPreflightFailureMessage)
        assert exc.args[0].data.err is not None
    else:
        raise AssertionError("preflight should have failed")


async def test_get_transaction_of_v0_needs_max_supported_version(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    sig = (await api.send(system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)))["result"]
    await api.wait_confirmed(sig)
    resp = await api.rpc_raw("getTransaction", [sig, {"commitment": "confirmed"}])
    assert resp["error"]["code"] == -32015
    processed = await api.rpc_raw("getTransaction", [sig, {"commitment": "processed"}])
    assert processed["error"]["code"] == -32602
    b64 = await api.rpc("getTransaction", [sig, {"commitment": "confirmed", "encoding": "base64",
                                                  "maxSupportedTransactionVersion": 0}])
    assert b64["version"] == 0 and b64["transaction"][1] == "base64"
    assert b64["meta"]["status"] == {"Ok": None}


async def test_send_transaction_accepts_base58(api: Api) -> None:
    payer = await api.new_wallet()
    blockhash, _ = await api.latest_blockhash()
    tx = system_transfer(payer, Keypair().pubkey(), LAMPORTS, blockhash)
    sig = await api.rpc("sendTransaction", [base58.b58encode(bytes(tx)).decode()])  # base58 is the default encoding
    assert sig == str(tx.signatures[0])
    assert (await api.wait_confirmed(sig))["err"] is None
