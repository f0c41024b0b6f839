"""The one error family of tradewire.

Every failure the core reports is a :class:`TradewireError` carrying a machine-readable
*reason*. The reason decides the canonical gRPC code (and, for the few cases HTTP has a
more precise status than the gRPC table gives, an HTTP status) through :data:`REASONS`, so
the mapping lives in exactly one place. Typed details (google.rpc ErrorInfo, BadRequest,
RetryInfo, QuotaFailure) are built here so every protocol sends the same ones.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "tradewire"


class Code(enum.IntEnum):
    """Canonical status codes (google.rpc.Code numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True)
class ReasonSpec:
    code: Code
    http_status: int | None = None  # only where HTTP is more precise than the code table


# Every reason tradewire can answer with. Adding a failure mode means adding a row here.
REASONS: Mapping[str, ReasonSpec] = {
    # malformed or invalid input
    "VALIDATION_FAILED": ReasonSpec(Code.INVALID_ARGUMENT),
    "MALFORMED_REQUEST": ReasonSpec(Code.INVALID_ARGUMENT),
    "UNSUPPORTED_PAIR": ReasonSpec(Code.INVALID_ARGUMENT),
    "UNSUPPORTED_MEDIA_TYPE": ReasonSpec(Code.INVALID_ARGUMENT, http_status=415),
    "PAYLOAD_TOO_LARGE": ReasonSpec(Code.RESOURCE_EXHAUSTED, http_status=413),
    "ROUTE_NOT_FOUND": ReasonSpec(Code.NOT_FOUND),
    # identity and permissions
    "AUTH_MISSING": ReasonSpec(Code.UNAUTHENTICATED),
    "AUTH_INVALID": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_EXPIRED": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_NOT_YET_VALID": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_AUDIENCE_INVALID": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_ISSUER_INVALID": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_KEY_UNKNOWN": ReasonSpec(Code.UNAUTHENTICATED),
    "TOKEN_ALGORITHM_REJECTED": ReasonSpec(Code.UNAUTHENTICATED),
    "API_KEY_REVOKED": ReasonSpec(Code.UNAUTHENTICATED),
    "API_KEY_EXPIRED": ReasonSpec(Code.UNAUTHENTICATED),
    "PERMISSION_DENIED": ReasonSpec(Code.PERMISSION_DENIED),
    # limits
    "RATE_LIMITED": ReasonSpec(Code.RESOURCE_EXHAUSTED),
    "TOO_MANY_IN_FLIGHT": ReasonSpec(Code.RESOURCE_EXHAUSTED),
    "SLOW_CONSUMER": ReasonSpec(Code.RESOURCE_EXHAUSTED),
    "TOO_MANY_STREAMS": ReasonSpec(Code.RESOURCE_EXHAUSTED),
    # idempotency and lookup
    "DUPLICATE_REQUEST_MISMATCH": ReasonSpec(Code.ALREADY_EXISTS),
    "TRADE_NOT_FOUND": ReasonSpec(Code.NOT_FOUND),
    # trading outcomes
    "LIVE_NOT_CONFIGURED": ReasonSpec(Code.FAILED_PRECONDITION),
    "INSUFFICIENT_FUNDS": ReasonSpec(Code.FAILED_PRECONDITION),
    "NOT_CANCELLABLE": ReasonSpec(Code.FAILED_PRECONDITION),
    "RISK_LIMIT": ReasonSpec(Code.FAILED_PRECONDITION),
    "PRICE_IMPACT_TOO_HIGH": ReasonSpec(Code.FAILED_PRECONDITION),
    "NO_ROUTE": ReasonSpec(Code.FAILED_PRECONDITION),
    "SLIPPAGE_EXCEEDED": ReasonSpec(Code.ABORTED),
    "BUNDLE_NOT_LANDED": ReasonSpec(Code.ABORTED),  # the block engine dropped it (outbid): submit again
    "TRADE_CANCELLED": ReasonSpec(Code.CANCELLED),
    "TRADE_EXPIRED": ReasonSpec(Code.DEADLINE_EXCEEDED),
    # service state
    "CIRCUIT_OPEN": ReasonSpec(Code.UNAVAILABLE),
    "UPSTREAM_UNAVAILABLE": ReasonSpec(Code.UNAVAILABLE),
    "SHUTTING_DOWN": ReasonSpec(Code.UNAVAILABLE),
    "TRADE_TAKEN_OVER": ReasonSpec(Code.UNAVAILABLE),
    "STORE_UNAVAILABLE": ReasonSpec(Code.UNAVAILABLE),
    "DEADLINE_EXCEEDED": ReasonSpec(Code.DEADLINE_EXCEEDED),
    "CANCELLED": ReasonSpec(Code.CANCELLED),
    "UNIMPLEMENTED": ReasonSpec(Code.UNIMPLEMENTED),
    "DUPLEX_UNSUPPORTED": ReasonSpec(Code.UNIMPLEMENTED),
    "INTERNAL": ReasonSpec(Code.INTERNAL),
}

#: Each code's HTTP status (google.rpc's mapping; 499 for a client that went away).
HTTP_STATUS: Mapping[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status_of(code: Code, reason: str = "") -> int:
    """The HTTP status of an outcome: its reason's, where HTTP is more precise, else its code's."""
    spec = REASONS.get(reason)
    return (spec.http_status if spec is not None else None) or HTTP_STATUS[code]


# Errors repeat what the caller sent (names, map keys, values); these bound how much, so an
# error stays readable and small enough for every transport (gRPC carries it in trailers).
MAX_ECHOED_CHARS = 64  # one name, key or value shown back
MAX_FIELD_PATH_CHARS = 256
MAX_DESCRIPTION_CHARS = 512
MAX_MESSAGE_CHARS = 1024


def shortened(text: str, limit: int = MAX_ECHOED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with "..."."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class FieldViolation:
    field: str  # proto field path, e.g. "input_mint" or "trades[2].amount"
    description: str

    def __post_init__(self) -> None:
        if len(self.field) > MAX_FIELD_PATH_CHARS:
            object.__setattr__(self, "field", shortened(self.field, MAX_FIELD_PATH_CHARS))
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            object.__setattr__(self, "description", shortened(self.description, MAX_DESCRIPTION_CHARS))


@dataclass(frozen=True)
class QuotaViolation:
    subject: str
    description: str


# When to retry an UNAVAILABLE error whose cause does not know better.
UNAVAILABLE_RETRY_AFTER_S = 1.0


@dataclass
class TradewireError(Exception):
    """A failure with a reason from :data:`REASONS`; safe to show to the caller."""

    reason: str
    message: str
    field_violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None
    quota_violations: tuple[QuotaViolation, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Response headers that go with this error on every protocol (the rate-limit state of a refusal).
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown error reason {self.reason!r}")
        if self.retry_after_s is None and REASONS[self.reason].code == Code.UNAVAILABLE:
            self.retry_after_s = UNAVAILABLE_RETRY_AFTER_S  # retryable by definition: say when
        if len(self.message) > MAX_MESSAGE_CHARS:
            self.message = shortened(self.message, MAX_MESSAGE_CHARS)
        super().__init__(self.message)

    @property
    def code(self) -> Code:
        return REASONS[self.reason].code

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    # -- typed details -------------------------------------------------------------------

    def details(self) -> list[any_pb2.Any]:
        """google.rpc detail messages, packed, in a stable order."""
        out: list[any_pb2.Any] = []

        def pack(msg) -> None:
            packed = any_pb2.Any()
            packed.Pack(msg)
            out.append(packed)

        pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=dict(self.metadata)))
        if self.field_violations:
            pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in self.field_violations
                    ]
                )
            )
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            pack(error_details_pb2.RetryInfo(retry_delay=delay))
        if self.quota_violations:
            pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
                        for v in self.quota_violations
                    ]
                )
            )
        return out

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=int(self.code), message=self.message, details=self.details())


def invalid(field_path: str, description: str, reason: str = "VALIDATION_FAILED") -> TradewireError:
    """A one-field validation failure; the message names the field."""
    return TradewireError(reason, f"{field_path}: {description}", field_violations=(FieldViolation(field_path, description),))


def nested_under(prefix: str, error: TradewireError) -> TradewireError:
    """``error`` with its field paths inside ``prefix`` (the message it names is nested in the
    request, e.g. a TradeSession's ``cancel.``)."""
    if not error.field_violations:
        return error
    return dataclasses.replace(error, field_violations=tuple(
        FieldViolation(prefix + v.field, v.description) for v in error.field_violations))


def invalid_fields(violations: Iterable[FieldViolation], reason: str = "VALIDATION_FAILED") -> TradewireError:
    """Every violation in the details; the message names as many as fit in it."""
    violations = tuple(violations)
    return TradewireError(reason, violations_summary(violations), field_violations=violations)


def violations_summary(violations: Sequence[FieldViolation], limit: int = MAX_MESSAGE_CHARS) -> str:
    """``field: description; …`` for as many as fit in ``limit`` characters, then how many more."""
    parts: list[str] = []
    used = 0
    for i, v in enumerate(violations):
        part = f"{v.field}: {v.description}"
        if parts and used + len(part) > limit - 48:  # room left for the count
            parts.append(f"and {len(violations) - i} more (see the error's field violations)")
            break
        parts.append(part)
        used += len(part) + 2
    return "; ".join(parts) or "invalid request"


def store_unavailable() -> TradewireError:
    """The shared store (Redis) did not answer: the call may be retried (request ids keep a trade from
    running twice)."""
    return TradewireError("STORE_UNAVAILABLE", "the gateway's shared store is unreachable; retry the call "
                          "(with the same request_id, a trade runs at most once)", retry_after_s=1.0)


def deadline_exceeded() -> TradewireError:
    """What a call cut off by its deadline is answered (Connect's words)."""
    return TradewireError("DEADLINE_EXCEEDED", "deadline exceeded")


def internal_error() -> TradewireError:
    """What a caller sees for an unexpected exception: nothing about the internals."""
    return TradewireError("INTERNAL", "internal error")
