"""Request validation: the contract's protovalidate rules, then Solana-specific checks.

protovalidate enforces what the proto declares (browsers get the same rules); what CEL
cannot express — a base58 string that decodes to exactly 32 bytes, a supported pair, an
amount within the mint's decimals and range — is checked here with solders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import protovalidate
from solders.pubkey import Pubkey

from tradewire.core.audit.events import holds_api_key, looks_like_credential
from tradewire.core.errors import FieldViolation, invalid_fields, shortened
from tradewire.core.market import Market
from tradewire.core.order import MevParams, Order
from tradewire.v1 import service_pb2, trade_pb2

# Message-level rules have no field of their own; name the field a caller should fix.
_MESSAGE_RULE_FIELDS = {"trade_request.distinct_mints": "output_mint", "get_trade_history.time_range": "end_time",
                        "mev_protection.jito_tip_required": "jito_tip_lamports",
                        "mev_protection.tip_only_for_jito": "jito_tip_lamports",
                        "mev_protection.no_priority_fee_with_jito": "compute_unit_price_micro_lamports"}

_validator = protovalidate.Validator()  # one compiled rule cache for the process


def map_key_subscript(key) -> str:
    """A map entry in a field path, as every protocol names it: ``client_metadata["k"]`` (a long
    key shortened)."""
    return f"[{json.dumps(shortened(key) if isinstance(key, str) else key)}]"


def _path(violation) -> str:
    """"trades[2].input_mint" style path (protovalidate's FieldPath is a protobuf-py message)."""
    parts: list[str] = []
    field_path = violation.proto.field
    for element in field_path.elements if field_path is not None else ():
        part = element.field_name
        subscript = element.subscript  # None, or Oneof(field=..., value=...)
        if subscript is not None:
            part += f"[{subscript.value}]" if subscript.field == "index" else map_key_subscript(subscript.value)
        parts.append(part)
    rule_field = _MESSAGE_RULE_FIELDS.get(violation.proto.rule_id)
    if rule_field:
        parts.append(rule_field)
    return ".".join(parts)


def check_rules(message, prefix: str = "") -> list[FieldViolation]:
    """protovalidate violations as field violations (empty when valid)."""
    try:
        _validator.validate(message)
    except protovalidate.ValidationError as exc:
        return [FieldViolation(prefix + _path(v), v.proto.message) for v in exc.violations]
    return []


def require_valid(message) -> None:
    """Raise INVALID_ARGUMENT naming every field the contract's rules refuse."""
    violations = check_rules(message)
    if violations:
        raise invalid_fields(violations)


_NOT_A_PUBKEY = "not a valid base58 public key of 32 bytes"


def _is_pubkey(text: str) -> bool:
    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True


def _pubkey_violations(request: trade_pb2.TradeRequest, prefix: str) -> Iterable[FieldViolation]:
    for field_name in ("input_mint", "output_mint"):
        if not _is_pubkey(getattr(request, field_name)):
            yield FieldViolation(prefix + field_name, _NOT_A_PUBKEY)


def check_mint_filter(request: service_pb2.GetTradeHistoryRequest | service_pb2.GetPositionsRequest) -> None:
    """A mint filter is refused as a trade's mint is, when it is no address at all (the contract's
    pattern lets through base58 text of any 32-44 characters): an empty answer would say
    "nothing in that mint"."""
    if request.mint and not _is_pubkey(request.mint):
        raise invalid_fields([FieldViolation("mint", _NOT_A_PUBKEY)])


# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)
_TIMESTAMP_NANOS = range(1_000_000_000)


def _timestamp_violation(ts, field_path: str) -> FieldViolation | None:
    # (JSON cannot spell an invalid one; the binary encodings can, and ToNanoseconds() then raises)
    if ts.seconds in _TIMESTAMP_SECONDS and ts.nanos in _TIMESTAMP_NANOS:
        return None
    return FieldViolation(field_path, "not a valid timestamp: seconds from 0001-01-01 to 9999-12-31 UTC, "
                                      "nanos from 0 to 999,999,999")


def timestamp_ns(message, field_name: str, prefix: str = "") -> int | None:
    """``message.<field_name>`` in ns since the epoch (None when unset), or INVALID_ARGUMENT naming it."""
    if not message.HasField(field_name):
        return None
    ts = getattr(message, field_name)
    violation = _timestamp_violation(ts, prefix + field_name)
    if violation is not None:
        raise invalid_fields([violation])
    return ts.seconds * 1_000_000_000 + ts.nanos


_CREDENTIAL_ID = ("looks like a credential (a JWT, an API key or its secret): request ids are logged and audited, "
                  "so one must never be a secret")


def check_trade_lookup(request, prefix: str = "") -> None:
    """A request naming a trade by its client request id (GetTrade, CancelTrade,
    StreamExecutionStatus): an id shaped like a credential is refused, as ExecuteTrade refuses it,
    before a lookup's NOT_FOUND could repeat it back to the caller."""
    if looks_like_credential(request.request_id):
        raise invalid_fields([FieldViolation(prefix + "request_id", _CREDENTIAL_ID)])


def check_cancel(request: service_pb2.CancelTradeRequest, prefix: str = "") -> None:
    """What the contract's rules cannot say about a cancel: its reason becomes the trade's error
    message (kept, returned, sent in webhooks), so it must not hold a credential; nor its id."""
    check_trade_lookup(request, prefix)
    if looks_like_credential(request.reason):
        raise invalid_fields([FieldViolation(prefix + "reason", "looks like a credential (a JWT, an API key or "
                                                                "its secret): the reason is stored and shown with "
                                                                "the trade")])


def _identity_violations(request: trade_pb2.TradeRequest, prefix: str) -> Iterable[FieldViolation]:
    """Text a trade keeps that must not be a secret: its id (logged, audited), its client metadata
    (stored, returned, sent with its webhooks), and its webhook URL (called from here: a tradewire
    key in it would go to the webhook's host; other tokens in it are that host's own)."""
    if looks_like_credential(request.request_id):
        yield FieldViolation(prefix + "request_id", _CREDENTIAL_ID)
    for key, value in request.client_metadata.items():
        if looks_like_credential(key):  # (named without the key: an error is logged and audited)
            yield FieldViolation(prefix + "client_metadata", "a key looks like a credential (a JWT, an API key or "
                                                              "its secret): client metadata is stored and returned")
        elif looks_like_credential(value):
            yield FieldViolation(prefix + "client_metadata" + map_key_subscript(key),
                                 "looks like a credential (a JWT, an API key or its secret): client metadata is "
                                 "stored, returned and sent with webhooks")
    if holds_api_key(request.webhook_url):
        yield FieldViolation(prefix + "webhook_url", "holds a tradewire API key, which would be sent to the "
                                                     "webhook's host")


def validate_trade(request: trade_pb2.TradeRequest, principal_id: str, market: Market, prefix: str = "") -> Order:
    """A normalized :class:`Order` from a request, or INVALID_ARGUMENT naming every bad field."""
    violations = check_rules(request, prefix) or list(_pubkey_violations(request, prefix)) \
        or list(_identity_violations(request, prefix))
    if violations:
        raise invalid_fields(violations)
    input_mint = market.mint(request.input_mint, prefix + "input_mint")
    output_mint = market.mint(request.output_mint, prefix + "output_mint")
    market.pool(request.input_mint, request.output_mint, prefix)
    exact_out = request.swap_mode == trade_pb2.SWAP_MODE_EXACT_OUT
    amount_atomic = (output_mint if exact_out else input_mint).to_atomic(request.amount, prefix + "amount")
    mev = request.mev_protection
    return Order(
        principal_id=principal_id,
        request_id=request.request_id,
        mode=request.mode,
        input_mint=input_mint,
        output_mint=output_mint,
        exact_out=exact_out,
        amount_atomic=amount_atomic,
        slippage_bps=request.slippage_bps,
        mev=MevParams(
            strategy=mev.strategy or trade_pb2.MEV_STRATEGY_NONE,
            compute_unit_price_micro_lamports=mev.compute_unit_price_micro_lamports,
            compute_unit_limit=mev.compute_unit_limit,
            max_priority_fee_lamports=mev.max_priority_fee_lamports,
            jito_tip_lamports=mev.jito_tip_lamports,
        ),
        max_price_impact_bps=request.max_price_impact_bps,
        deadline_unix_ns=timestamp_ns(request, "deadline", prefix),
        client_metadata=dict(request.client_metadata),
        webhook_url=request.webhook_url,
        request=request,
    )
