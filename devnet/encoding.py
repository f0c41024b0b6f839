"""JSON shapes of the Solana RPC wire format: accounts (base58/base64/jsonParsed),
token amounts, transactions and their status meta.

Shared by the JSON-RPC server and the Jito endpoint so both answer exactly as mainnet.
Money stays integer: ``amount`` strings carry atomic units; the float ``uiAmount`` exists
only because the wire format has it (display, never arithmetic).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import base58
from solders.account import Account
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from .chain import Chain, TokenBalance, TxRecord
from .constants import MINT_LEN
from .spl_token import TOKEN_PROGRAMS, parse_mint, parse_token_account
from .txutil import err_json


class EncodingError(ValueError):
    """An encoding the request asked for but the data cannot be given in (-32600)."""


def _base58(data: bytes) -> str:
    return base58.b58encode(data).decode()


def ui_amount_string(amount: int, decimals: int) -> str:
    if decimals == 0:
        return str(amount)
    digits = str(amount).rjust(decimals + 1, "0")
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def ui_token_amount(amount: int, decimals: int, zero_is_null: bool = False) -> dict[str, Any]:
    text = ui_amount_string(amount, decimals)
    ui: float | None = None if (zero_is_null and amount == 0) else float(Decimal(text))
    return {"amount": str(amount), "decimals": decimals, "uiAmount": ui, "uiAmountString": text}


def _parsed_account(chain: Chain, acct: Account) -> dict[str, Any] | None:
    if acct.owner not in TOKEN_PROGRAMS:
        return None
    program = "spl-token" if acct.owner == TOKEN_PROGRAMS[0] else "spl-token-2022"
    if len(acct.data) == MINT_LEN:
        mint = parse_mint(acct)
        if mint is None:
            return None
        info = {
            "decimals": mint.decimals,
            "freezeAuthority": str(mint.freeze_authority) if mint.freeze_authority else None,
            "isInitialized": mint.is_initialized,
            "mintAuthority": str(mint.mint_authority) if mint.mint_authority else None,
            "supply": str(mint.supply),
        }
        return {"parsed": {"info": info, "type": "mint"}, "program": program, "space": len(acct.data)}
    state = parse_token_account(acct)
    if state is None:
        return None
    decimals = chain.decimals(state.mint)
    if decimals is None:
        return None
    info: dict[str, Any] = {
        "isNative": state.is_native is not None,
        "mint": str(state.mint),
        "owner": str(state.owner),
        "state": "frozen" if str(state.state).endswith("Frozen") else "initialized",
        "tokenAmount": ui_token_amount(state.amount, decimals),
    }
    if state.is_native is not None:
        info["rentExemptReserve"] = ui_token_amount(state.is_native, 9)
    if state.delegate is not None:
        info["delegate"] = str(state.delegate)
        info["delegatedAmount"] = ui_token_amount(state.delegated_amount, decimals)
    if state.close_authority is not None:
        info["closeAuthority"] = str(state.close_authority)
    return {"parsed": {"info": info, "type": "account"}, "program": program, "space": len(acct.data)}


def encode_account(
    chain: Chain, acct: Account | None, encoding: str = "base64", data_slice: dict[str, int] | None = None
) -> dict[str, Any] | None:
    """An account as getAccountInfo returns it (``None`` → JSON null)."""
    if acct is None:
        return None
    data = bytes(acct.data)
    if data_slice:
        offset = int(data_slice.get("offset", 0))
        data = data[offset : offset + int(data_slice.get("length", 0))]
    if encoding == "jsonParsed" and not data_slice:
        parsed = _parsed_account(chain, acct)
        encoded: Any = parsed if parsed is not None else [base64.b64encode(data).decode(), "base64"]
    elif encoding in ("base64", "jsonParsed"):
        encoded = [base64.b64encode(data).decode(), "base64"]
    elif encoding in ("base58", "binary"):
        if len(data) > 128:
            raise EncodingError("Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.")
        encoded = _base58(data) if encoding == "binary" else [_base58(data), "base58"]
    else:
        raise EncodingError(f"unsupported encoding: {encoding}")
    return {
        "data": encoded,
        "executable": acct.executable,
        "lamports": acct.lamports,
        "owner": str(acct.owner),
        "rentEpoch": acct.rent_epoch,
        "space": len(acct.data),
    }


# ----- transactions ------------------------------------------------------------------


def _header(msg: Message | MessageV0) -> dict[str, int]:
    h = msg.header
    return {
        "numRequiredSignatures": h.num_required_signatures,
        "numReadonlySignedAccounts": h.num_readonly_signed_accounts,
        "numReadonlyUnsignedAccounts": h.num_readonly_unsigned_accounts,
    }


def _lookups(msg: Message | MessageV0) -> list[dict[str, Any]] | None:
    if not isinstance(msg, MessageV0):
        return None
    return [json.loads(l.to_json()) for l in msg.address_table_lookups]


def _compiled(ix: Any, stack_height: int | None) -> dict[str, Any]:
    return {
        "programIdIndex": ix.program_id_index,
        "accounts": list(bytes(ix.accounts)),
        "data": _base58(bytes(ix.data)),
        "stackHeight": stack_height,
    }


def _partially_decoded(ix: Any, keys: list[Pubkey], stack_height: int | None) -> dict[str, Any]:
    return {
        "programId": str(keys[ix.program_id_index]),
        "accounts": [str(keys[i]) for i in bytes(ix.accounts)],
        "data": _base58(bytes(ix.data)),
        "stackHeight": stack_height,
    }


def encode_transaction(record: TxRecord, encoding: str) -> Any:
    tx = record.tx
    msg = tx.message
    if encoding == "base64":
        return [base64.b64encode(bytes(tx)).decode(), "base64"]
    if encoding == "base58":
        return [_base58(bytes(tx)), "base58"]
    sigs = [str(s) for s in tx.signatures]
    if encoding == "jsonParsed":
        keys = record.keys.keys
        n_static = len(msg.account_keys)
        account_keys = [
            {
                "pubkey": str(k),
                "signer": i < msg.header.num_required_signatures,
                "writable": record.keys.writable[i],
                "source": "transaction" if i < n_static else "lookupTable",
            }
            for i, k in enumerate(keys)
        ]
        message: dict[str, Any] = {
            "accountKeys": account_keys,
            "recentBlockhash": str(msg.recent_blockhash),
            "instructions": [_partially_decoded(ix, keys, None) for ix in msg.instructions],
        }
    else:
        message = {
            "header": _header(msg),
            "accountKeys": [str(k) for k in msg.account_keys],
            "recentBlockhash": str(msg.recent_blockhash),
            "instructions": [_compiled(ix, None) for ix in msg.instructions],
        }
    lookups = _lookups(msg)
    if lookups is not None:
        message["addressTableLookups"] = lookups
    return {"signatures": sigs, "message": message}


def token_balances(balances: list[TokenBalance], zero_is_null: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "accountIndex": b.account_index,
            "mint": str(b.mint),
            "uiTokenAmount": ui_token_amount(b.amount, b.decimals, zero_is_null),
            "owner": str(b.owner),
            "programId": str(b.program_id),
        }
        for b in balances
    ]


def inner_instructions(groups: list[Any], keys: list[Pubkey] | None = None) -> list[dict[str, Any]]:
    out = []
    for index, group in enumerate(groups):
        if not group:
            continue
        items = []
        for inner in group:
            height = json.loads(inner.to_json()).get("stackHeight")
            ix = inner.instruction()
            items.append(_partially_decoded(ix, keys, height) if keys is not None else _compiled(ix, height))
        out.append({"index": index, "instructions": items})
    return out


def return_data(value: Any) -> dict[str, Any] | None:
    if value is None or not bytes(value.data):
        return None
    return {"programId": str(value.program_id), "data": [base64.b64encode(bytes(value.data)).decode(), "base64"]}


def status_of(err: Any) -> dict[str, Any]:
    return {"Ok": None} if err is None else {"Err": err_json(err)}


def encode_meta(record: TxRecord, parsed: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "err": err_json(record.err),
        "status": status_of(record.err),
        "fee": record.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "innerInstructions": inner_instructions(record.inner_instructions, record.keys.keys if parsed else None),
        "logMessages": record.logs,
        "preTokenBalances": token_balances(record.pre_token_balances),
        "postTokenBalances": token_balances(record.post_token_balances),
        "rewards": [],
        "computeUnitsConsumed": record.compute_units,
    }
    if not parsed:
        meta["loadedAddresses"] = {
            "writable": [str(k) for k in record.keys.loaded_writable],
            "readonly": [str(k) for k in record.keys.loaded_readonly],
        }
    rd = return_data(record.return_data)
    if rd is not None:
        meta["returnData"] = rd
    return meta


def transaction_version(tx: VersionedTransaction) -> Any:
    return "legacy" if isinstance(tx.message, Message) else 0


def encode_confirmed_transaction(record: TxRecord, encoding: str) -> dict[str, Any]:
    """The result object of getTransaction."""
    return {
        "slot": record.slot,
        "blockTime": record.block_time,
        "transaction": encode_transaction(record, encoding),
        "meta": encode_meta(record, parsed=encoding == "jsonParsed"),
        "version": transaction_version(record.tx),
    }
