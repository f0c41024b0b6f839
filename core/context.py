"""Transport-neutral call context and the authenticated principal."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Permission scopes (DESIGN.md §2, step 3).
SCOPE_READ = "read"
SCOPE_TRADE_PAPER = "trade:paper"
SCOPE_TRADE_LIVE = "trade:live"
SCOPE_ADMIN = "admin"
ALL_SCOPES = frozenset({SCOPE_READ, SCOPE_TRADE_PAPER, SCOPE_TRADE_LIVE, SCOPE_ADMIN})
# A transport's deadline timer and ours (read from its time_remaining() a moment after the
# call began) differ by this much at most.
DEADLINE_SLACK_S = 0.02


class Protocol(str, enum.Enum):
    GRPC = "grpc"
    GRPC_WEB = "grpc-web"
    CONNECT = "connect"
    HTTP_JSON = "http"


def combine_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers (or gRPC metadata) as one lower-cased value per name. A name sent more than once
    gets its values joined with ", " (RFC 9110 §5.3), on every protocol alike: so two
    credentials are seen as two (and refused), never one picked by the transport."""
    out: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        if name in out:
            out[name] = out[name] + ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``id`` owns trades; ``label`` is safe to log (never a secret)."""

    id: str
    scopes: frozenset[str]
    kind: str  # "api_key" | "jwt"
    label: str

    def has(self, scope: str) -> bool:
        return scope in self.scopes or SCOPE_ADMIN in self.scopes


@dataclass
class CallContext:
    """Everything the core needs to know about one call, whatever carried it.

    ``headers`` are lower-cased HTTP headers or gRPC metadata. ``response_headers`` are
    filled by the pipeline (correlation id, rate-limit state) and sent by the adapter.
    """

    protocol: Protocol
    method: str  # short RPC name, e.g. "ExecuteTrade"
    headers: Mapping[str, str]
    peer: str = ""
    deadline: float | None = None  # time.monotonic() value, None for no deadline
    request_id: str = ""
    correlation_id: str = ""
    trade_request_id: str = ""  # the client's request id of the trade the call is about, if one
    trace_id: str = ""
    principal: Principal | None = None
    # A public method's refused credentials (it answers anyway): the refusal's reason.
    credentials_refused: str = ""
    started: float = field(default_factory=time.monotonic)
    started_unix_ns: int = field(default_factory=time.time_ns)
    response_headers: dict[str, str] = field(default_factory=dict)
    # Set by Pipeline.authenticate_first, for a transport that reads the request only once the
    # credentials are known good: the call's ids, span and authentication are done already.
    authenticated: bool = False
    # The call's end is recorded (or will be, by Pipeline.call): never a second time.
    recorded: bool = False
    # Trades or cancels carried inside the call (a batch's items, a session's messages) recorded
    # so far: each item's row is numbered by it.
    items_recorded: int = 0

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def past_deadline(self) -> bool:
        """Whether the call's deadline has passed: it is not started then."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def ended_by_deadline(self) -> bool:
        """Whether a call cancelled now was cut off by its deadline, not by its caller: its
        deadline has come, within a transport's timer slack."""
        return self.deadline is not None and time.monotonic() >= self.deadline - DEADLINE_SLACK_S

    def cut_off_as(self) -> str:
        """Why a stream its transport closed early ended: "deadline", or "client_gone"."""
        return "deadline" if self.ended_by_deadline() else "client_gone"
