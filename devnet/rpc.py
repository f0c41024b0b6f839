"""Solana JSON-RPC 2.0 (POST /) with mainnet's request and response shapes.

Every method answers from ``Chain`` after catching the clock up. Errors use the real
codes: -32700 parse, -32600 invalid request, -32601 unknown method, -32602 invalid params,
-32002 preflight failure (``data`` is the simulation result with ``err`` and ``logs``),
-32003 signature verification failure, -32015 unsupported transaction version,
-32016 minimum context slot not reached. A notification (a request without ``id``) is
not run and gets no answer, as with Agave; bodies over 50 KiB get HTTP 413.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from solders.hash import Hash, ParseHashError
from solders.message import Message, MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .chain import SLOTS_PER_EPOCH, Chain, SimResult
from .constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from .encoding import (
    EncodingError,
    encode_account,
    encode_confirmed_transaction,
    inner_instructions,
    return_data,
    status_of,
    ui_token_amount,
)
from .seed import Market
from .spl_token import parse_mint, parse_token_account
from .txutil import DecodeError, decode_transaction, err_json, err_message, fee_for_message

log = logging.getLogger("tradewire.devnet.rpc")

API_VERSION = "2.2.0"
FEATURE_SET = 3294202862
MAX_SIGNATURE_STATUSES = 256
MAX_MULTIPLE_ACCOUNTS = 100
MAX_PRIORITIZATION_FEE_ACCOUNTS = 128
MAX_REQUEST_BODY_SIZE = 50 * 1024  # Agave's rpc_service: larger bodies get 413
_COMMITMENTS = ("processed", "confirmed", "finalized", "recent", "single", "singleGossip", "root", "max")


class RpcError(Exception):
    """A JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(message: str) -> RpcError:
    return RpcError(-32602, message)


# ----- parameter helpers -------------------------------------------------------------


def _param(params: list[Any], index: int, name: str, required: bool = True) -> Any:
    if index < len(params):
        return params[index]
    if required:
        raise invalid_params(f"Invalid params: missing field `{name}`")
    return None


def _config(params: list[Any], index: int) -> dict[str, Any]:
    value = params[index] if index < len(params) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_params(f"Invalid params: invalid type: {type(value).__name__}, expected a config object")
    for name in ("commitment", "preflightCommitment"):  # both are a CommitmentLevel on Agave
        commitment = value.get(name)
        if commitment is not None and commitment not in _COMMITMENTS:
            raise invalid_params(f"Invalid params: unknown variant `{commitment}`")
    return value


def _flag(config: dict[str, Any], name: str) -> bool:
    """A boolean config field: anything but true/false is invalid params (never "truthy")."""
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise invalid_params(f"Invalid params: invalid type: {type(value).__name__}, expected a boolean for `{name}`")
    return value


def _base58_param(value: Any, parse: Callable[[str], Any]) -> Any:
    """A base58 pubkey, signature or hash param, refused as Agave words it (WrongSize | Invalid)."""
    if not isinstance(value, str):
        raise invalid_params("Invalid param: Invalid")
    try:
        return parse(value)
    except (ValueError, ParseHashError) as exc:  # (a hash's parse error is no ValueError)
        raise invalid_params("Invalid param: WrongSize" if "size" in str(exc).lower() else "Invalid param: Invalid") from None


def parse_pubkey(value: Any) -> Pubkey:
    return _base58_param(value, Pubkey.from_string)


def _signature(value: Any) -> Signature:
    return _base58_param(value, Signature.from_string)


def _u64(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise invalid_params(f"Invalid params: invalid value for `{name}`, expected u64")
    return value


class JsonRpcService:
    """JSON-RPC 2.0 envelope handling (single and batch) over a method table."""

    methods: dict[str, Callable[[list[Any]], Any]]

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    # ----- envelope --------------------------------------------------------------------

    def handle_payload(self, payload: Any) -> Any:
        """A decoded JSON body → the response body (batch → list), None when nothing is answered."""
        if isinstance(payload, list):
            if not payload:
                return _error(None, RpcError(-32600, "Invalid request"))
            answers = [answer for answer in map(self.handle_one, payload) if answer is not None]
            return answers or None
        return self.handle_one(payload)

    def handle_one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            return _error(request.get("id") if isinstance(request, dict) else None, RpcError(-32600, "Invalid request"))
        if "id" not in request:  # a notification: Agave runs only notification handlers, and it has none
            return None
        req_id = request["id"]
        method = self.methods.get(request["method"])
        if method is None:
            return _error(req_id, RpcError(-32601, "Method not found"))
        params = request.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            return _error(req_id, invalid_params("Invalid params: expected an array of parameters"))
        try:
            self.chain.sync()
            result = method(params)
        except RpcError as exc:
            return _error(req_id, exc)
        except EncodingError as exc:
            return _error(req_id, RpcError(-32600, str(exc)))
        except Exception:  # noqa: BLE001 - never leak a traceback to the client
            log.exception("devnet rpc: %s failed", request["method"])
            return _error(req_id, RpcError(-32603, "Internal error"))
        return {"jsonrpc": "2.0", "result": result, "id": req_id}

class SolanaRpc(JsonRpcService):
    """The Solana method table."""

    def __init__(self, chain: Chain, market: Market) -> None:
        super().__init__(chain)
        self.market = market
        self.genesis_hash = str(Hash(hashlib.sha256(f"{chain.config.seed}:genesis".encode()).digest()))
        self.methods: dict[str, Callable[[list[Any]], Any]] = {
            "getAccountInfo": self.get_account_info,
            "getBalance": self.get_balance,
            "getBlockHeight": self.get_block_height,
            "getEpochInfo": self.get_epoch_info,
            "getFeeForMessage": self.get_fee_for_message,
            "getGenesisHash": lambda _p: self.genesis_hash,
            "getHealth": lambda _p: "ok",
            "getLatestBlockhash": self.get_latest_blockhash,
            "getMinimumBalanceForRentExemption": self.get_minimum_balance_for_rent_exemption,
            "getMultipleAccounts": self.get_multiple_accounts,
            "getRecentPrioritizationFees": self.get_recent_prioritization_fees,
            "getSignatureStatuses": self.get_signature_statuses,
            "getSlot": self.get_slot,
            "getTokenAccountBalance": self.get_token_account_balance,
            "getTokenAccountsByOwner": self.get_token_accounts_by_owner,
            "getTokenSupply": self.get_token_supply,
            "getTransaction": self.get_transaction,
            "getTransactionCount": lambda _p: self.chain.tx_count,
            "getVersion": lambda _p: {"solana-core": API_VERSION, "feature-set": FEATURE_SET},
            "isBlockhashValid": self.is_blockhash_valid,
            "requestAirdrop": self.request_airdrop,
            "sendTransaction": self.send_transaction,
            "simulateTransaction": self.simulate_transaction,
        }

    def context(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "slot": self.chain.slot}

    def _with_context(self, value: Any) -> dict[str, Any]:
        return {"context": self.context(), "value": value}

    def _min_context_slot(self, config: dict[str, Any]) -> None:
        wanted = config.get("minContextSlot")
        if wanted is not None and _u64(wanted, "minContextSlot") > self.chain.slot:
            raise RpcError(-32016, "Minimum context slot has not been reached", {"contextSlot": self.chain.slot})

    # ----- cluster / clock ---------------------------------------------------------------

    def get_slot(self, params: list[Any]) -> int:
        self._min_context_slot(_config(params, 0))
        return self.chain.slot

    def get_block_height(self, params: list[Any]) -> int:
        self._min_context_slot(_config(params, 0))
        return self.chain.block_height

    def get_epoch_info(self, params: list[Any]) -> dict[str, Any]:
        _config(params, 0)
        return {
            "absoluteSlot": self.chain.slot,
            "blockHeight": self.chain.block_height,
            "epoch": self.chain.epoch(),
            "slotIndex": self.chain.slot % SLOTS_PER_EPOCH,
            "slotsInEpoch": SLOTS_PER_EPOCH,
            "transactionCount": self.chain.tx_count,
        }

    def get_latest_blockhash(self, params: list[Any]) -> dict[str, Any]:
        self._min_context_slot(_config(params, 0))
        blockhash, last_valid = self.chain.latest_blockhash()
        return self._with_context({"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})

    def is_blockhash_valid(self, params: list[Any]) -> dict[str, Any]:
        blockhash = _base58_param(_param(params, 0, "blockhash"), Hash.from_string)
        self._min_context_slot(_config(params, 1))  # (RpcContextConfig, as Agave's)
        return self._with_context(self.chain.is_blockhash_valid(blockhash))

    def get_minimum_balance_for_rent_exemption(self, params: list[Any]) -> int:
        size = _param(params, 0, "data_len")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 10 * 1024 * 1024:
            raise invalid_params("Invalid params: invalid value for `data_len`")
        return self.chain.rent_exempt(size)

    def get_recent_prioritization_fees(self, params: list[Any]) -> list[dict[str, int]]:
        raw = _param(params, 0, "addresses", required=False) or []
        if not isinstance(raw, list):
            raise invalid_params("Invalid params: expected an array of addresses")
        if len(raw) > MAX_PRIORITIZATION_FEE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_PRIORITIZATION_FEE_ACCOUNTS}")
        accounts = [parse_pubkey(a) for a in raw]
        return [{"slot": s, "prioritizationFee": f} for s, f in self.chain.recent_prioritization_fees(accounts)]

    def get_fee_for_message(self, params: list[Any]) -> dict[str, Any]:
        raw = _param(params, 0, "message")
        _config(params, 1)
        try:
            msg = from_bytes_versioned(base64.b64decode(raw, validate=True))
        except Exception:  # noqa: BLE001
            raise invalid_params("Invalid params: invalid message") from None
        if self.chain.blockhash_last_valid_height(msg.recent_blockhash) is None:
            return self._with_context(None)
        return self._with_context(fee_for_message(msg))

    # ----- accounts ----------------------------------------------------------------------

    def _account_config(self, config: dict[str, Any]) -> tuple[str, dict[str, int] | None]:
        encoding = config.get("encoding", "binary")  # mainnet's default: legacy base58 string
        if encoding not in ("base58", "base64", "jsonParsed", "binary"):
            raise invalid_params(f"Invalid params: unsupported encoding `{encoding}`")
        data_slice = config.get("dataSlice")
        if data_slice is not None:
            if not isinstance(data_slice, dict):
                raise invalid_params("Invalid params: dataSlice must be an object")
            for name in ("offset", "length"):
                if name not in data_slice:
                    raise invalid_params(f"Invalid params: missing field `{name}`")
            data_slice = {name: _u64(data_slice[name], name) for name in ("offset", "length")}
        return encoding, data_slice

    def get_account_info(self, params: list[Any]) -> dict[str, Any]:
        pubkey = parse_pubkey(_param(params, 0, "pubkey"))
        config = _config(params, 1)
        self._min_context_slot(config)
        encoding, data_slice = self._account_config(config)
        return self._with_context(encode_account(self.chain, self.chain.get_account(pubkey), encoding, data_slice))

    def get_multiple_accounts(self, params: list[Any]) -> dict[str, Any]:
        raw = _param(params, 0, "pubkeys")
        if not isinstance(raw, list):
            raise invalid_params("Invalid params: expected an array of pubkeys")
        if len(raw) > MAX_MULTIPLE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        keys = [parse_pubkey(k) for k in raw]
        config = _config(params, 1)
        encoding, data_slice = self._account_config(config)
        return self._with_context(
            [encode_account(self.chain, self.chain.get_account(k), encoding, data_slice) for k in keys]
        )

    def get_balance(self, params: list[Any]) -> dict[str, Any]:
        pubkey = parse_pubkey(_param(params, 0, "pubkey"))
        self._min_context_slot(_config(params, 1))
        return self._with_context(self.chain.balance(pubkey))

    def get_token_account_balance(self, params: list[Any]) -> dict[str, Any]:
        pubkey = parse_pubkey(_param(params, 0, "pubkey"))
        _config(params, 1)
        acct = self.chain.get_account(pubkey)
        if acct is None:
            raise invalid_params("Invalid param: could not find account")
        state = parse_token_account(acct)
        if state is None:
            raise invalid_params("Invalid param: not a Token account")
        decimals = self.chain.decimals(state.mint)
        if decimals is None:
            raise invalid_params("Invalid param: could not find mint")
        return self._with_context(ui_token_amount(state.amount, decimals))

    def get_token_supply(self, params: list[Any]) -> dict[str, Any]:
        pubkey = parse_pubkey(_param(params, 0, "pubkey"))
        _config(params, 1)
        mint = parse_mint(self.chain.get_account(pubkey))
        if mint is None:
            raise invalid_params("Invalid param: not a Token mint")
        return self._with_context(ui_token_amount(mint.supply, mint.decimals))

    def get_token_accounts_by_owner(self, params: list[Any]) -> dict[str, Any]:
        owner = parse_pubkey(_param(params, 0, "owner"))
        flt = _param(params, 1, "filter")
        if not isinstance(flt, dict) or len(flt) != 1 or not ({"mint", "programId"} & flt.keys()):
            raise invalid_params("Invalid params: expected a filter object with `mint` or `programId`")
        config = _config(params, 2)
        self._min_context_slot(config)
        encoding, data_slice = self._account_config(config)
        mint: Pubkey | None = None
        if "mint" in flt:
            mint = parse_pubkey(flt["mint"])
            mint_acct = self.chain.get_account(mint)
            if parse_mint(mint_acct) is None or mint_acct is None:
                raise invalid_params("Invalid param: could not find mint")
            programs = [mint_acct.owner]
        else:
            program = parse_pubkey(flt["programId"])
            if program not in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
                raise invalid_params("Invalid param: unrecognized Token program id")
            programs = [program]
        value = []
        for program in programs:
            for key, acct in self.chain.svm.get_program_accounts(program):
                if acct.lamports == 0:
                    continue
                state = parse_token_account(acct)
                if state is None or state.owner != owner or (mint is not None and state.mint != mint):
                    continue
                value.append({"pubkey": str(key), "account": encode_account(self.chain, acct, encoding, data_slice)})
        value.sort(key=lambda item: item["pubkey"])
        return self._with_context(value)

    # ----- transactions --------------------------------------------------------------------

    def get_signature_statuses(self, params: list[Any]) -> dict[str, Any]:
        raw = _param(params, 0, "signatures")
        if not isinstance(raw, list):
            raise invalid_params("Invalid params: expected an array of signatures")
        if len(raw) > MAX_SIGNATURE_STATUSES:
            raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        sigs = [_signature(s) for s in raw]
        # Without searchTransactionHistory a validator answers from its status cache only.
        history = _flag(_config(params, 1), "searchTransactionHistory")
        value = []
        for sig in sigs:
            record = self.chain.records.get(sig)
            if record is None or not (history or self.chain.in_status_cache(record)):
                value.append(None)
                continue
            status = self.chain.commitment_of(record)
            value.append(
                {
                    "slot": record.slot,
                    "confirmations": None if status == "finalized" else self.chain.slot - record.slot,
                    "err": err_json(record.err),
                    "status": status_of(record.err),
                    "confirmationStatus": status,
                }
            )
        return self._with_context(value)

    def get_transaction(self, params: list[Any]) -> dict[str, Any] | None:
        sig = _signature(_param(params, 0, "signature"))
        config = params[1] if len(params) > 1 else None
        if isinstance(config, str):  # legacy form: the encoding as second param
            config = {"encoding": config}
        config = _config([config], 0)
        encoding = config.get("encoding", "json")
        if encoding not in ("json", "jsonParsed", "base64", "base58"):
            raise invalid_params(f"Invalid params: unsupported encoding `{encoding}`")
        commitment = config.get("commitment", "finalized")
        if commitment == "processed":
            raise invalid_params("Method does not support commitment below `confirmed`")
        record = self.chain.records.get(sig)
        if record is None:
            return None
        status = self.chain.commitment_of(record)
        if status == "processed" or (commitment in ("finalized", "max", "root") and status != "finalized"):
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        if max_version is not None and _u64(max_version, "maxSupportedTransactionVersion") > 255:
            raise invalid_params("Invalid params: invalid value for `maxSupportedTransactionVersion`, expected u8")
        if not isinstance(record.tx.message, Message) and (max_version is None or max_version < 0):
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try the request "
                'again with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        return encode_confirmed_transaction(record, encoding)

    def _decode_tx(self, params: list[Any], config: dict[str, Any]) -> VersionedTransaction:
        raw = _param(params, 0, "transaction")
        if not isinstance(raw, str):
            raise invalid_params("Invalid params: transaction must be an encoded string")
        try:
            return decode_transaction(raw, config.get("encoding", "base58"))
        except DecodeError as exc:
            raise invalid_params(str(exc)) from None

    def send_transaction(self, params: list[Any], *, force_skip_preflight: bool = False) -> str:
        config = _config(params, 1)
        tx = self._decode_tx(params, config)
        self._min_context_slot(config)
        sig = tx.signatures[0]
        skip = _flag(config, "skipPreflight") or force_skip_preflight
        if not skip:
            if not all(tx.verify_with_results()):
                raise RpcError(-32003, "Transaction signature verification failure")
            sim = self.chain.simulate(tx)
            if sim.err is not None:
                raise RpcError(
                    -32002,
                    f"Transaction simulation failed: {err_message(sim.err)}",
                    _preflight_data(sim),
                )
        self.chain.execute(tx)  # with skipPreflight, a transaction that cannot land is silently dropped
        return str(sig)

    def simulate_transaction(self, params: list[Any]) -> dict[str, Any]:
        config = _config(params, 1)
        tx = self._decode_tx(params, config)
        self._min_context_slot(config)
        sig_verify = _flag(config, "sigVerify")
        replace = _flag(config, "replaceRecentBlockhash")
        inner = _flag(config, "innerInstructions")
        if sig_verify and replace:
            raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        if sig_verify and not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        replacement = None
        if replace:
            blockhash, last_valid = self.chain.latest_blockhash()
            tx = _with_blockhash(tx, blockhash)
            replacement = {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}
        sim = self.chain.simulate(tx, check_blockhash=not replace)
        accounts_cfg = config.get("accounts")
        accounts = None
        if accounts_cfg is not None:
            if not isinstance(accounts_cfg, dict) or not isinstance(accounts_cfg.get("addresses"), list):
                raise invalid_params("Invalid params: accounts.addresses must be an array")
            encoding = accounts_cfg.get("encoding", "base64")
            if encoding in ("base58", "binary"):  # as Agave: simulated accounts come as base64 or jsonParsed
                raise invalid_params("base58 encoding not supported")
            if encoding not in ("base64", "jsonParsed"):
                raise invalid_params(f"Invalid params: unsupported encoding `{encoding}`")
            if sim.keys is not None and len(accounts_cfg["addresses"]) > len(sim.keys.keys):
                raise invalid_params(f"Too many accounts provided; max {len(sim.keys.keys)}")
            accounts = []
            for raw in accounts_cfg["addresses"]:
                key = parse_pubkey(raw)
                acct = sim.post_accounts.get(key) if sim.err is None else None
                if acct is None:
                    acct = self.chain.get_account(key)
                elif acct.lamports == 0:
                    acct = None
                accounts.append(encode_account(self.chain, acct, encoding))
        value = {
            "err": err_json(sim.err),
            "logs": sim.logs,
            "accounts": accounts,
            "unitsConsumed": sim.units_consumed,
            "returnData": return_data(sim.return_data),
            "innerInstructions": inner_instructions(sim.inner_instructions) if inner else None,
            "replacementBlockhash": replacement,
            "fee": sim.fee if sim.err is None or sim.pre_balances else None,
            "preBalances": sim.pre_balances or None,
            "postBalances": sim.post_balances or None,
            "loadedAccountsDataSize": None,
            "preTokenBalances": None,
            "postTokenBalances": None,
            "loadedAddresses": None,
        }
        return self._with_context(value)

    def request_airdrop(self, params: list[Any]) -> str:
        pubkey = parse_pubkey(_param(params, 0, "pubkey"))
        lamports = _u64(_param(params, 1, "lamports"), "lamports")
        _config(params, 2)
        limit = self.chain.config.airdrop_max_lamports
        if lamports == 0 or lamports > limit:
            raise invalid_params(f"Invalid params: airdrop amount must be between 1 and {limit} lamports")
        result = self.chain.transfer_from(self.market.faucet, pubkey, lamports)
        if result.record is None:
            raise RpcError(-32603, f"Internal error: airdrop failed: {err_message(result.err)}")
        return str(result.signature)


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    msg = tx.message
    if isinstance(msg, MessageV0):
        new = MessageV0(msg.header, list(msg.account_keys), blockhash, list(msg.instructions), list(msg.address_table_lookups))
    else:
        h = msg.header
        new = Message.new_with_compiled_instructions(
            h.num_required_signatures,
            h.num_readonly_signed_accounts,
            h.num_readonly_unsigned_accounts,
            list(msg.account_keys),
            blockhash,
            list(msg.instructions),
        )
    return VersionedTransaction.populate(new, list(tx.signatures))


def _preflight_data(sim: SimResult) -> dict[str, Any]:
    """The ``data`` of a -32002 error: an RpcSimulateTransactionResult, as Agave sends it."""
    result = RpcSimulateTransactionResult(
        err=sim.err, logs=sim.logs, accounts=None, units_consumed=sim.units_consumed, return_data=None
    )
    data = json.loads(result.to_json())
    data["returnData"] = return_data(sim.return_data)
    return data


def _error(req_id: Any, exc: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (the rest is never buffered)."""
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():  # chunked bodies declare no length
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def json_rpc_endpoint(dispatch: Callable[[Any], Any], max_body_size: int | None = None):
    """A Starlette endpoint that parses JSON-RPC bodies and hands them to ``dispatch``."""

    async def endpoint(request: Request) -> Response:
        if max_body_size is None:
            body = await request.body()
        else:
            body = await _read_body(request, max_body_size)
            if body is None:
                return PlainTextResponse("request body size exceeds allowed maximum", status_code=413)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # (nested too deep to parse)
            return JSONResponse(_error(None, RpcError(-32700, "Parse error")))
        answer = dispatch(payload)
        if answer is None:  # only notifications: an empty 200, as Agave's HTTP server sends
            return Response(media_type="application/json")
        return JSONResponse(answer)

    return endpoint


__all__ = ["MAX_REQUEST_BODY_SIZE", "JsonRpcService", "RpcError", "SolanaRpc", "json_rpc_endpoint", "parse_pubkey"]
