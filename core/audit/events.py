"""The audit event model (DESIGN.md §5): one frozen ``AuditEvent`` per row of one of five tables.

Rules every event obeys, checked when it is built:

* ``table`` is one of the five declared tables (:data:`TABLES`). The QuestDB sink writes over
  ILP, which would silently create an unknown table or column without DEDUP, so a stray name
  is refused here rather than discovered in production.
* ``symbols``/``columns`` use only the declared names with the declared types (``int`` for
  LONG, ``float`` for DOUBLE -- an ``int`` is accepted and widened --, ``str`` for VARCHAR,
  ``bool`` for BOOLEAN). Money never travels as a float: atomic amounts are decimal strings.
* ``event_id`` is deterministic: it is derived from the identity of the thing that happened
  (for a transition: principal, request_id, stage, sequence), never from a counter or the
  clock, so re-emitting or replaying the same event hits the same DEDUP key.
* ``ts_ns`` is the time of the event, taken when it happened, and travels with the event;
  the server clock is never used. Together with ``event_id`` it is the DEDUP key
  ``(ts, event_id)``, so a replay is exactly-once. Code that re-creates an event after a
  crash must pass the original ``ts_ns``.
* No secrets: keys that look like credentials (token, secret, password, authorization, ...)
  are refused with :class:`SecretLeakError`; values that look like one (``Bearer ...``, a JWT,
  a tradewire API key -- whole, cut short, or its secret alone --, a PEM block, a keypair byte
  array) are written as :data:`REDACTED`.
  A value is redacted rather than refused because a client can put one anywhere it writes
  text (an id, a header): the row must still land, and the trade must not fail for it.

Constructors raise ``ValueError`` on bad input: that is a programming error in the caller,
found by its tests; the sinks themselves never raise into the request path.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, Mapping, Union

ColumnValue = Union[int, float, str, bool]

__all__ = [
    "AuditEvent",
    "ColumnValue",
    "REDACTED",
    "SecretLeakError",
    "TABLES",
    "TableSchema",
    "looks_like_credential",
    "make_event_id",
    "redacted",
    "request_event",
    "auth_attempt_event",
    "transition_event",
    "fill_event",
    "admin_event",
    "ADMIN_ACTIONS",
    "trusted_event",
    "trusted_transition_event",
    "trusted_request_event",
    "trusted_auth_attempt_event",
]

_LONG_MIN: Final = -(2**63) + 1  # Long.MIN_VALUE is QuestDB's NULL for LONG
_LONG_MAX: Final = 2**63 - 1
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DIGITS_RE: Final = re.compile(r"0|[1-9][0-9]{0,38}")  # (fullmatch: "$" would let a trailing newline in)
MAX_KEY_PREFIX_LEN: Final = 16

QdbType = Literal["LONG", "DOUBLE", "VARCHAR", "BOOLEAN"]


class SecretLeakError(ValueError):
    """An audit event carried something that looks like a credential."""


@dataclass(frozen=True)
class TableSchema:
    """A declared audit table: SYMBOL columns, typed value columns, plus ``event_id`` and ``ts``."""

    name: str
    symbols: tuple[str, ...]
    columns: Mapping[str, QdbType]

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` with DEDUP on ``(ts, event_id)`` (exactly-once replays)."""
        cols = [f"{s} SYMBOL" for s in self.symbols]
        cols += [f"{c} {t}" for c, t in self.columns.items()]
        cols += ["event_id VARCHAR", "ts TIMESTAMP"]
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(cols)}) "
            "TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, event_id)"
        )


def _schema(name: str, symbols: tuple[str, ...], **columns: QdbType) -> TableSchema:
    return TableSchema(name, symbols, MappingProxyType(dict(columns)))


TABLES: Final[Mapping[str, TableSchema]] = MappingProxyType(
    {
        s.name: s
        for s in (
            _schema(
                "tw_requests",
                ("method", "protocol", "principal", "code", "reason"),
                request_id="VARCHAR",
                correlation_id="VARCHAR",
                latency_us="LONG",
                key_label="VARCHAR",  # the API key id (e.g. tw_ab12cd34) or "jwt:<subject>" the call came with
                # the client's request id of the trade the call was about (ExecuteTrade, GetTrade,
                # CancelTrade, StreamExecutionStatus): joins tw_transitions/tw_fills on (principal, request_id)
                trade_request_id="VARCHAR",
            ),
            _schema(
                "tw_auth_attempts",
                ("principal", "method", "protocol", "outcome", "reason"),
                request_id="VARCHAR",
                key_prefix="VARCHAR",
                peer="VARCHAR",
                correlation_id="VARCHAR",
            ),
            _schema(
                "tw_transitions",
                ("principal", "mode", "stage"),
                request_id="VARCHAR",
                sequence="LONG",
                percent="DOUBLE",
                message="VARCHAR",
            ),
            _schema(
                "tw_fills",
                ("principal", "mode", "input_mint", "output_mint"),
                request_id="VARCHAR",
                amount_in="VARCHAR",
                amount_out="VARCHAR",
                fee_lamports="LONG",
                signature="VARCHAR",
                slot="LONG",
            ),
            _schema(
                "tw_admin",
                ("action", "actor", "principal", "store"),
                target="VARCHAR",  # the key id (tw_ab12cd34), or live_kill_switch
                location="VARCHAR",  # the SQLite file, the switch file, or Redis's host:port
                host="VARCHAR",
                detail="VARCHAR",
            ),
        )
    }
)

#: What ``tw_admin`` records: an administration command that changed something.
ADMIN_ACTIONS: Final = ("key_created", "key_revoked", "kill_switch_set")

# ---------------------------------------------------------------------------------------------
# secret guard

_SECRET_KEY_PARTS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "private_key",
    "privkey",
    "keypair",
    "mnemonic",
    "seed",
    "bearer",
    "cookie",
    "credential",
    "jwt",
    "signing_key",
)

# The shapes, one pattern each (case-sensitive: where case may vary it is spelled out).
_BEARER: Final = r"\s*+(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{16,}\s*"  # a whole Authorization header value
_KEYPAIR: Final = r"\s*+\[\s*\d{1,3}(?:\s*,\s*\d{1,3}){31,}\s*\]\s*"  # a whole keypair file's bytes
_JWT: Final = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\."  # (base64url of '{"' is always eyJ)
# A tradewire API key (core/auth/api_keys.py: tw_<8 of [a-z0-9]>_<43 base62>), also cut short or
# padded: 16 characters of its secret are 95 bits, a credential still.
_API_KEY: Final = r"[Tt][Ww]_[A-Za-z0-9]{8}_[A-Za-z0-9]{16}"
# A bare API-key secret (or 32+ characters of one) without its tw_<prefix>_, as a run of 32+
# letters and digits, from the run's first character. A secret is drawn from all 62, so such a
# run mixing upper case, lower case and digits is one -- unless it is base58, which lacks 0, O, I
# and l: Solana mints and signatures (32-88 base58 characters) must pass anywhere, so the run must
# hold one of those four. A secret lacks all four 6% of the time (a 32-character piece of one,
# 12%) and is then not told from a mint. Hex ids (a uuid, dashed or not) have one case and pass;
# so do words, which have no digit. The length is checked first (most runs are short); each
# look-ahead after it is possessive and stops at the run's end.
_SECRET_RUN: Final = (r"(?=[A-Za-z0-9]{32})(?=[1-9A-HJ-NP-Za-km-z]*+[0OIl])(?=[a-z0-9]*+[A-Z])"
                      r"(?=[A-Z0-9]*+[a-z])(?=[A-Za-z]*+[0-9])[A-Za-z0-9]{32}")
_PEM_AFTER_DASH: Final = r"-{4}(?i:BEGIN [A-Z ]*PRIVATE KEY)-----"

#: Each shape on its own, as a search pattern (the union below is these, arranged for speed).
_SECRET_VALUE_RES: Final = (
    rf"^{_BEARER}$",
    rf"^{_KEYPAIR}$",
    _JWT,
    _API_KEY,
    rf"(?<![A-Za-z0-9]){_SECRET_RUN}",
    rf"-{_PEM_AFTER_DASH}",
)


def _check_key(table: str, key: str) -> None:
    low = key.lower()
    for part in _SECRET_KEY_PARTS:
        if part in low:
            raise SecretLeakError(f"{table}: field {key!r} looks like a secret; refusing it")


# One pass over a value instead of one per shape. A search tries every alternative at every
# position, so there are few, each failing on its first character: the shapes that start the
# value; a run of letters and digits after any other character (a PEM block's first dash is one);
# a JWT; an API key (also inside a run: "xtw_..."). Nothing shorter than 12 characters matches.
_SECRET_VALUE_RE: Final = re.compile(
    rf"^(?:{_BEARER}$|{_KEYPAIR}$|{_SECRET_RUN})"
    rf"|[^A-Za-z0-9](?:{_SECRET_RUN}|{_PEM_AFTER_DASH})"
    rf"|{_JWT}"
    rf"|{_API_KEY}"
)
_SHORTEST_SECRET: Final = 12


#: What is written in place of a value that looks like a credential.
REDACTED: Final = "[redacted: looked like a credential]"


def looks_like_credential(value: str) -> bool:
    """True for text holding something shaped like a credential (see the module docstring)."""
    size = len(value)
    if size < _SHORTEST_SECRET:
        return False
    if size <= _REMEMBERED_UP_TO:
        return _remembered_verdict(value)
    return _SECRET_VALUE_RE.search(value) is not None


# A trade's ids, its principal and the executors' stage messages come back on every one of its
# ~12 audit rows and log lines: their verdicts are remembered (bounded; short values only, so
# the cache never holds a large string alive).
_REMEMBERED_UP_TO: Final = 256


@functools.lru_cache(maxsize=4096)
def _remembered_verdict(value: str) -> bool:
    return _SECRET_VALUE_RE.search(value) is not None


_API_KEY_RE: Final = re.compile(_API_KEY)


def holds_api_key(value: str) -> bool:
    """True for text holding a tradewire API key (or 16+ characters of its secret after its prefix)."""
    return _API_KEY_RE.search(value) is not None


def redacted(value: str) -> str:
    """``value``, or :data:`REDACTED` when it looks like a credential (for log lines too)."""
    return REDACTED if looks_like_credential(value) else value


# The schemas themselves are checked once: events may then only use their keys.
for _schema_entry in TABLES.values():
    for _key in (*_schema_entry.symbols, *_schema_entry.columns):
        _check_key(_schema_entry.name, _key)


# ---------------------------------------------------------------------------------------------
# the event


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit row. Immutable; validated on construction (see the module docstring)."""

    table: str
    event_id: str
    ts_ns: int
    symbols: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, ColumnValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        schema = TABLES.get(self.table)
        if schema is None:
            raise ValueError(f"unknown audit table {self.table!r}; known: {sorted(TABLES)}")
        if not isinstance(self.event_id, str) or not self.event_id or len(self.event_id) > 256:
            raise ValueError(f"{self.table}: event_id must be a non-empty string (<= 256 chars)")
        if isinstance(self.ts_ns, bool) or not isinstance(self.ts_ns, int) or self.ts_ns <= 0:
            raise ValueError(f"{self.table}: ts_ns must be a positive int (ns since the epoch)")
        if self.ts_ns > _LONG_MAX:
            raise ValueError(f"{self.table}: ts_ns out of range")

        symbols: dict[str, str] = {}
        for key, value in dict(self.symbols).items():
            if key not in schema.symbols:
                _check_key(self.table, key)
                raise ValueError(f"{self.table}: unknown symbol {key!r}")
            if not isinstance(value, str):
                raise ValueError(f"{self.table}: symbol {key!r} must be a str")
            symbols[key] = redacted(value)

        columns: dict[str, ColumnValue] = {}
        for key, value in dict(self.columns).items():
            qtype = schema.columns.get(key)
            if qtype is None:
                _check_key(self.table, key)
                raise ValueError(f"{self.table}: unknown column {key!r}")
            columns[key] = _coerce(self.table, key, qtype, value)

        # freeze the mappings so the event really is immutable and hashable-by-identity safe
        object.__setattr__(self, "symbols", MappingProxyType(symbols))
        object.__setattr__(self, "columns", MappingProxyType(columns))

    # -- (de)serialisation used by the journal -------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"v":1,"table","event_id","ts_ns","symbols","columns"}``."""
        return {
            "v": 1,
            "table": self.table,
            "event_id": self.event_id,
            "ts_ns": self.ts_ns,
            "symbols": dict(self.symbols),
            "columns": dict(self.columns),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> "AuditEvent":
        return cls(
            table=rec["table"],
            event_id=rec["event_id"],
            ts_ns=rec["ts_ns"],
            symbols=rec.get("symbols") or {},
            columns=rec.get("columns") or {},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuditEvent):
            return NotImplemented
        return (
            self.table == other.table
            and self.event_id == other.event_id
            and self.ts_ns == other.ts_ns
            and dict(self.symbols) == dict(other.symbols)
            and dict(self.columns) == dict(other.columns)
        )

    def __hash__(self) -> int:
        return hash((self.table, self.event_id, self.ts_ns))


def trusted_event(table: str, event_id: str, ts_ns: int, symbols: dict[str, str],
                  columns: dict[str, ColumnValue], free_text: tuple[str, ...]) -> AuditEvent:
    """An AuditEvent built by the core's own recorder, without ``__post_init__``.

    Why: the generic validation (table/key lookups, type coercion, per-field checks) costs
    more than the rest of the recording on the per-transition hot path, and the recorder
    passes declared keys with the declared types by construction (tests/audit checks the
    result equals the validated constructors'). The secret-value redaction is *kept* for every
    value named in ``free_text`` — anything a client, an identity provider, an executor or an
    upstream could have written (messages, reasons, client-chosen ids, principals, peers); the
    rest are server-made values (method, protocol, code, mode and stage names; numbers) that
    cannot hold a credential.
    ``symbols`` must already omit empty values and ``columns`` None values; both dicts are
    taken over, not copied.
    """
    for key in free_text:
        holder = symbols if key in symbols else columns
        value = holder.get(key)
        if value.__class__ is str and looks_like_credential(value):
            holder[key] = REDACTED
    event = object.__new__(AuditEvent)
    _set = object.__setattr__
    _set(event, "table", table)
    _set(event, "event_id", event_id)
    _set(event, "ts_ns", ts_ns)
    _set(event, "symbols", MappingProxyType(symbols))
    _set(event, "columns", MappingProxyType(columns))
    return event


_TRANSITION_FREE_TEXT: Final = ("request_id", "message", "principal")


def trusted_transition_event(request_id: str, principal: str, mode: str, stage: str, sequence: int,
                             percent: float, message: str, ts_ns: int) -> AuditEvent:
    """:func:`transition_event` for the recorder: the same row and id, without generic validation."""
    return trusted_event(
        "tw_transitions", make_event_id("tw_transitions", principal, request_id, stage, sequence), ts_ns,
        _syms(principal=principal, mode=mode, stage=stage),
        {"request_id": request_id, "sequence": sequence, "percent": float(percent), "message": message},
        _TRANSITION_FREE_TEXT)


_REQUEST_FREE_TEXT: Final = ("correlation_id", "reason", "principal", "key_label", "trade_request_id")


def trusted_request_event(method: str, protocol: str, principal: str | None, request_id: str | None,
                          correlation_id: str, code: str, latency_us: int, reason: str | None,
                          ts_ns: int, key_label: str | None = None,
                          trade_request_id: str | None = None, item: int | None = None) -> AuditEvent:
    """:func:`request_event` for the recorder: the same row and id, without generic validation."""
    return trusted_event(
        "tw_requests", _request_event_id(principal, request_id, correlation_id, method, protocol, trade_request_id,
                                         item), ts_ns,
        _syms(method=method, protocol=protocol, principal=principal, code=code, reason=reason),
        _cols(request_id=request_id, correlation_id=correlation_id, latency_us=latency_us, key_label=key_label,
              trade_request_id=trade_request_id),
        _REQUEST_FREE_TEXT)


_AUTH_FREE_TEXT: Final = ("reason", "key_prefix", "peer", "correlation_id", "principal")


def trusted_auth_attempt_event(method: str, protocol: str, outcome: str, correlation_id: str, request_id: str,
                               principal: str | None, key_prefix: str | None, peer: str | None,
                               reason: str | None, ts_ns: int) -> AuditEvent:
    """:func:`auth_attempt_event` for the recorder (same row and id; the key-prefix length rule kept)."""
    if key_prefix is not None and len(key_prefix) > MAX_KEY_PREFIX_LEN:
        raise SecretLeakError(f"key_prefix longer than {MAX_KEY_PREFIX_LEN} chars: pass the public prefix only")
    return trusted_event(
        "tw_auth_attempts",
        make_event_id("tw_auth_attempts", request_id, method, protocol, principal, key_prefix, outcome), ts_ns,
        _syms(principal=principal, method=method, protocol=protocol, outcome=outcome, reason=reason),
        _cols(request_id=request_id, key_prefix=key_prefix, peer=peer, correlation_id=correlation_id),
        _AUTH_FREE_TEXT)


def _coerce(table: str, key: str, qtype: QdbType, value: object) -> ColumnValue:
    if qtype == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{table}: column {key!r} must be a bool")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{table}: column {key!r} must not be a bool")
    if qtype == "LONG":
        if not isinstance(value, int):
            raise ValueError(f"{table}: column {key!r} must be an int")
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise ValueError(f"{table}: column {key!r} out of the signed 64-bit range")
        return int(value)
    if qtype == "DOUBLE":
        if not isinstance(value, (int, float)):
            raise ValueError(f"{table}: column {key!r} must be a float")
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{table}: column {key!r} must be finite")
        return f
    # VARCHAR
    if not isinstance(value, str):
        raise ValueError(f"{table}: column {key!r} must be a str")
    return redacted(value)


# ---------------------------------------------------------------------------------------------
# ids and constructors


def make_event_id(table: str, *parts: object) -> str:
    """A deterministic id: 32 hex chars of BLAKE2b over the table name and the identity parts.

    ``None`` and ``""`` are distinct from each other and from every other value, and the
    parts are length-prefixed, so ``("a", "bc")`` and ``("ab", "c")`` never collide.
    """
    # The bytes hashed are, per part: 4-byte big-endian length, then b"\x00" for None or
    # b"\x01" + UTF-8; built in one buffer and hashed in one call (hot: one id per audit row).
    buf = bytearray(_ID_PREFIX.get(table) or _id_chunk(table))
    for p in parts:
        if p is None:
            buf += b"\x00\x00\x00\x01\x00"
        else:
            # (surrogatepass: a lone surrogate — an undecodable byte of a file name or argv — hashes
            # instead of raising in the recorder; valid text's bytes, and so its ids, are unchanged)
            raw = (p if p.__class__ is str else str(p)).encode("utf-8", "surrogatepass")
            buf += (len(raw) + 1).to_bytes(4, "big")
            buf += b"\x01"
            buf += raw
    return hashlib.blake2b(buf, digest_size=16, person=b"tw-audit-ev1").hexdigest()


def _id_chunk(part: str) -> bytes:
    raw = b"\x01" + part.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


_ID_PREFIX: Final = {name: _id_chunk(name) for name in TABLES}


def _now_ns(ts_ns: int | None) -> int:
    return time.time_ns() if ts_ns is None else ts_ns


def _syms(**kv: str | None) -> dict[str, str]:
    return {k: v for k, v in kv.items() if v is not None and v != ""}


def _cols(**kv: ColumnValue | None) -> dict[str, ColumnValue]:
    return {k: v for k, v in kv.items() if v is not None}


def _atomic(name: str, value: int | str) -> str:
    """Atomic token amounts as canonical decimal strings (a u64 does not fit in a LONG)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer amount")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name} must not be negative")
        return str(value)
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        return value
    raise ValueError(f"{name} must be a non-negative integer (atomic units), got {value!r}")


def request_event(
    *,
    method: str,
    protocol: str,
    principal: str | None,
    request_id: str | None,
    correlation_id: str,
    code: str,
    latency_us: int,
    reason: str | None = None,
    ts_ns: int | None = None,
    key_label: str | None = None,
    trade_request_id: str | None = None,
    item: int | None = None,
) -> AuditEvent:
    """``tw_requests``: one row per RPC call (``code`` is the canonical gRPC code name), under
    the principal every other table names (the key's owner, the token's subject), the
    label of the credential it called with and the trade it was about (its client request id).
    A trade or cancel carried inside a call (a batch's item, a session's message) has a row of
    its own under the call's ids, its method ``<call's method>.<part>``, ``item`` its ordinal
    among the call's (1, 2, ...)."""
    return AuditEvent(
        table="tw_requests",
        event_id=_request_event_id(principal, request_id, correlation_id, method, protocol, trade_request_id, item),
        ts_ns=_now_ns(ts_ns),
        symbols=_syms(
            method=method, protocol=protocol, principal=principal, code=code, reason=reason
        ),
        columns=_cols(request_id=request_id, correlation_id=correlation_id, latency_us=latency_us,
                      key_label=key_label, trade_request_id=trade_request_id),
    )


def _request_event_id(principal: str | None, request_id: str | None, correlation_id: str, method: str,
                      protocol: str, trade_request_id: str | None, item: int | None) -> str:
    """A call's row is the call's; a row of a trade or cancel carried inside it (a batch's item, a
    session's message) is that item's, by its ordinal: two items may name the same trade, or none
    (a request id refused), and their rows may share a microsecond, QuestDB's ``ts`` unit."""
    return make_event_id("tw_requests", principal, request_id, correlation_id, method, protocol, trade_request_id,
                         *(() if item is None else (item,)))


def auth_attempt_event(
    *,
    method: str,
    protocol: str,
    outcome: Literal["success", "failure"],
    correlation_id: str,
    request_id: str,
    principal: str | None = None,
    key_prefix: str | None = None,
    peer: str | None = None,
    reason: str | None = None,
    ts_ns: int | None = None,
) -> AuditEvent:
    """``tw_auth_attempts``: every authentication attempt; ``request_id`` is the server's call id.

    Identify the caller by ``principal`` (when known) and/or ``key_prefix`` -- the public
    prefix of an API key, at most 16 characters -- never by the secret itself.
    """
    if outcome not in ("success", "failure"):
        raise ValueError("outcome must be 'success' or 'failure'")
    if key_prefix is not None and len(key_prefix) > MAX_KEY_PREFIX_LEN:
        raise SecretLeakError(
            f"key_prefix longer than {MAX_KEY_PREFIX_LEN} chars: pass the public prefix only"
        )
    return AuditEvent(
        table="tw_auth_attempts",
        event_id=make_event_id(
            "tw_auth_attempts", request_id, method, protocol, principal, key_prefix, outcome
        ),
        ts_ns=_now_ns(ts_ns),
        symbols=_syms(
            principal=principal, method=method, protocol=protocol, outcome=outcome, reason=reason
        ),
        columns=_cols(request_id=request_id, key_prefix=key_prefix, peer=peer, correlation_id=correlation_id),
    )


def transition_event(
    *,
    request_id: str,
    principal: str,
    mode: str,
    stage: str,
    sequence: int,
    percent: float,
    message: str = "",
    ts_ns: int | None = None,
) -> AuditEvent:
    """``tw_transitions``: one lifecycle transition; id = (principal, request_id, stage, sequence)."""
    return AuditEvent(
        table="tw_transitions",
        event_id=make_event_id("tw_transitions", principal, request_id, stage, sequence),
        ts_ns=_now_ns(ts_ns),
        symbols=_syms(principal=principal, mode=mode, stage=stage),
        columns=_cols(request_id=request_id, sequence=sequence, percent=percent, message=message),
    )


def fill_event(
    *,
    request_id: str,
    principal: str,
    mode: str,
    input_mint: str,
    output_mint: str,
    amount_in: int | str,
    amount_out: int | str,
    fee_lamports: int,
    signature: str | None = None,
    slot: int | None = None,
    ts_ns: int | None = None,
) -> AuditEvent:
    """``tw_fills``: the fill of one order (one per (principal, request_id)).

    ``amount_in``/``amount_out`` are atomic units (int or decimal string), stored as decimal
    strings; ``fee_lamports`` is the total of base fee, priority fee, tip and rent.
    """
    return AuditEvent(
        table="tw_fills",
        event_id=make_event_id("tw_fills", principal, request_id),
        ts_ns=_now_ns(ts_ns),
        symbols=_syms(
            principal=principal, mode=mode, input_mint=input_mint, output_mint=output_mint
        ),
        columns=_cols(
            request_id=request_id,
            amount_in=_atomic("amount_in", amount_in),
            amount_out=_atomic("amount_out", amount_out),
            fee_lamports=fee_lamports,
            signature=signature,
            slot=slot,
        ),
    )


def admin_event(
    *,
    action: str,
    actor: str,
    host: str,
    store: str,
    target: str,
    location: str = "",
    principal: str | None = None,
    detail: str = "",
    ts_ns: int | None = None,
) -> AuditEvent:
    """``tw_admin``: one administration command that changed something (:data:`ADMIN_ACTIONS`),
    by whom (``actor``: the operator's account) on which ``host``, in which ``store`` (``redis``,
    ``sqlite``, ``file``) at which ``location``; ``principal`` is the owner of the key acted on.
    Its id takes the time: who did what to what, when (see the module docstring)."""
    if action not in ADMIN_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ADMIN_ACTIONS)}, not {action!r}")
    ts_ns = _now_ns(ts_ns)
    return AuditEvent(
        table="tw_admin",
        event_id=make_event_id("tw_admin", action, target, actor, host, ts_ns),
        ts_ns=ts_ns,
        symbols=_syms(action=action, actor=actor, principal=principal, store=store),
        columns=_cols(target=target, location=location or None, host=host, detail=detail or None),
    )
