"""Transaction helpers shared by the RPC, Jito and Jupiter layers: decoding wire bytes,
resolving account keys, reading compute-budget settings, computing fees, and turning
solders error values into their JSON-RPC shape and human message."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any, Callable

import base58
from solders.account import Account
from solders.address_lookup_table_account import AddressLookupTable
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorInstructionError,
)

from .constants import (
    COMPUTE_BUDGET_PROGRAM_ID,
    DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT,
    LAMPORTS_PER_SIGNATURE,
    MAX_COMPUTE_UNIT_LIMIT,
    MICRO_LAMPORTS_PER_LAMPORT,
)


PACKET_DATA_SIZE = 1232  # the largest transaction a validator accepts
# The longest encodings of PACKET_DATA_SIZE bytes: longer text is refused before decoding
# (base58 decoding takes time quadratic in the length).
MAX_ENCODED_SIZE = {"base58": 1683, "base64": 1644}


class DecodeError(ValueError):
    """Wire bytes that are not a transaction (mapped to JSON-RPC -32602)."""


def decode_transaction(data: str, encoding: str) -> VersionedTransaction:
    """Decode a base58/base64 wire transaction exactly as the RPC's sendTransaction does."""
    limit = MAX_ENCODED_SIZE.get(encoding)
    if limit is not None and len(data) > limit:
        raise DecodeError(
            f"{encoding} encoded solana_transaction::versioned::VersionedTransaction too large: "
            f"{len(data)} bytes (max: encoded/raw {limit}/{PACKET_DATA_SIZE})"
        )
    if encoding == "base64":
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"invalid base64 encoding: {exc}") from None
    elif encoding == "base58":
        try:
            raw = base58.b58decode(data)
        except ValueError as exc:
            raise DecodeError(f"invalid base58 encoding: {exc}") from None
    else:
        raise DecodeError(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")
    if len(raw) > PACKET_DATA_SIZE:
        raise DecodeError(
            f"{encoding} encoded solana_transaction::versioned::VersionedTransaction too large: "
            f"{len(raw)} bytes (max: {PACKET_DATA_SIZE} bytes)"
        )
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - solders raises its own error types
        raise DecodeError(
            f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {exc}"
        ) from None
    try:
        tx.sanitize()
    except Exception:  # noqa: BLE001
        raise DecodeError("invalid transaction: Transaction failed to sanitize accounts offsets correctly") from None
    return tx


@dataclass(frozen=True)
class LoadedKeys:
    """All account keys of a transaction in index order (static, then ALT writable, readonly)."""

    keys: list[Pubkey]
    writable: list[bool]
    loaded_writable: list[Pubkey]
    loaded_readonly: list[Pubkey]


def _lookups(msg: MessageV0) -> list[tuple[Pubkey, list[int], list[int]]]:
    out = []
    for lookup in msg.address_table_lookups:
        raw = json.loads(lookup.to_json())
        out.append(
            (Pubkey.from_string(raw["accountKey"]), list(raw["writableIndexes"]), list(raw["readonlyIndexes"]))
        )
    return out


def load_keys(tx: VersionedTransaction, get_account: Callable[[Pubkey], Account | None]) -> LoadedKeys:
    """Resolve a transaction's account keys (address lookup tables read from chain state)."""
    msg = tx.message
    header = msg.header
    static = list(msg.account_keys)
    n = len(static)
    n_signed = header.num_required_signatures
    writable = []
    for i in range(n):
        if i < n_signed:
            writable.append(i < n_signed - header.num_readonly_signed_accounts)
        else:
            writable.append(i < n - header.num_readonly_unsigned_accounts)
    loaded_w: list[Pubkey] = []
    loaded_r: list[Pubkey] = []
    if isinstance(msg, MessageV0):
        for table_key, w_idx, r_idx in _lookups(msg):
            acct = get_account(table_key)
            if acct is None:
                continue
            try:
                addresses = AddressLookupTable.deserialize(bytes(acct.data)).addresses
            except Exception:  # noqa: BLE001 - not a lookup table; LiteSVM reports the error
                continue
            loaded_w += [addresses[i] for i in w_idx if i < len(addresses)]
            loaded_r += [addresses[i] for i in r_idx if i < len(addresses)]
    keys = static + loaded_w + loaded_r
    writable += [True] * len(loaded_w) + [False] * len(loaded_r)
    # Program ids invoked by the message are never write-locked.
    for ix in msg.instructions:
        if ix.program_id_index < len(writable):
            writable[ix.program_id_index] = False
    return LoadedKeys(keys, writable, loaded_w, loaded_r)


@dataclass(frozen=True)
class ComputeBudget:
    unit_limit: int
    unit_price: int  # micro-lamports per CU
    explicit_limit: bool

    @property
    def priority_fee(self) -> int:
        """ceil(price × limit / 1e6) lamports."""
        return -(-self.unit_price * self.unit_limit // MICRO_LAMPORTS_PER_LAMPORT)


def compute_budget(msg: Message | MessageV0) -> ComputeBudget:
    """The CU limit/price a message requests (SetComputeUnitLimit=2, SetComputeUnitPrice=3)."""
    keys = list(msg.account_keys)
    limit: int | None = None
    price = 0
    other = 0
    for ix in msg.instructions:
        program = keys[ix.program_id_index] if ix.program_id_index < len(keys) else None
        data = bytes(ix.data)
        if program == COMPUTE_BUDGET_PROGRAM_ID and data:
            if data[0] == 2 and len(data) >= 5:
                limit = struct.unpack_from("<I", data, 1)[0]
            elif data[0] == 3 and len(data) >= 9:
                price = struct.unpack_from("<Q", data, 1)[0]
        else:
            other += 1
    explicit = limit is not None
    if limit is None:
        limit = DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT * other
    return ComputeBudget(min(limit, MAX_COMPUTE_UNIT_LIMIT), price, explicit)


def fee_for_message(msg: Message | MessageV0) -> int:
    """Base fee (5,000 per signature) plus the prioritization fee."""
    return LAMPORTS_PER_SIGNATURE * msg.header.num_required_signatures + compute_budget(msg).priority_fee


# ----- errors -------------------------------------------------------------------------


def err_json(err: Any) -> Any:
    """A solders TransactionError as mainnet serializes it (e.g. {"InstructionError":[2,{"Custom":6001}]})."""
    if err is None:
        return None
    sim = RpcSimulateTransactionResult(err=err, logs=None, accounts=None, units_consumed=None, return_data=None)
    return json.loads(sim.to_json())["err"]


_FIELDLESS_MESSAGES = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "CallChainTooDeep": "Loader call chain is too deep",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "ClusterMaintenance": "Transactions are currently disabled due to cluster maintenance",
    "AccountBorrowOutstanding": "Transaction processing left an account with an outstanding borrowed reference",
    "WouldExceedMaxBlockCostLimit": "Transaction would exceed max Block Cost Limit",
    "UnsupportedVersion": "Transaction version is unsupported",
    "InvalidWritableAccount": "Transaction loads a writable account that cannot be written",
    "TooManyAccountLocks": "Transaction locked too many accounts",
}

_INSTRUCTION_MESSAGES = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "ExternalAccountLamportSpend": "instruction spent from the balance of an account it does not own",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "IllegalOwner": "Provided owner is not allowed",
}


def err_message(err: Any) -> str:
    """The Display text of a TransactionError (what follows "Transaction simulation failed: ")."""
    value = err_json(err)
    if isinstance(value, str):
        return _FIELDLESS_MESSAGES.get(value, value)
    if isinstance(value, dict) and "InstructionError" in value:
        index, inner = value["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            text = f"custom program error: {inner['Custom']:#x}"
        elif isinstance(inner, str):
            text = _INSTRUCTION_MESSAGES.get(inner, inner)
        else:
            text = json.dumps(inner)
        return f"Error processing Instruction {index}: {text}"
    if isinstance(value, dict) and "InsufficientFundsForRent" in value:
        idx = value["InsufficientFundsForRent"].get("account_index")
        return f"Transaction results in an account ({idx}) with insufficient funds for rent"
    return json.dumps(value)


def custom_error_code(err: Any) -> int | None:
    """The custom program error number of an InstructionError, if any."""
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        if isinstance(inner, InstructionErrorCustom):
            return inner.code
    return None
