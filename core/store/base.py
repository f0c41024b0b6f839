"""What the core needs from a store; SQLite is the embedded default, Redis the scale-out one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tradewire.core.portfolio import FillLegs, Holding
from tradewire.v1 import trade_pb2


@dataclass(frozen=True)
class TradeRecord:
    principal_id: str
    request_id: str
    fingerprint: str
    result: trade_pb2.TradeResult
    events: tuple[trade_pb2.ExecutionStatus, ...] = ()


@dataclass(frozen=True)
class HistoryQuery:
    mode: int = 0
    mint: str = ""
    statuses: tuple[int, ...] = ()
    start_ns: int | None = None
    end_ns: int | None = None


@dataclass(frozen=True)
class HistoryPage:
    trades: list[trade_pb2.TradeResult]
    last_cursor: int | None  # opaque position of the last row, None when there is no more


class TradeStore(Protocol):
    def claim(self, principal_id: str, request_id: str, fingerprint: str,
              result: trade_pb2.TradeResult) -> TradeRecord | None:
        """Record a new trade; return the existing record instead if the id is taken."""

    def save(self, principal_id: str, result: trade_pb2.TradeResult,
             events: Sequence[trade_pb2.ExecutionStatus] = ()) -> None:
        """Store a trade's latest state (and, when final, its events)."""

    def get(self, principal_id: str, request_id: str) -> TradeRecord | None: ...

    def history(self, principal_id: str, query: HistoryQuery, limit: int, after: int | None) -> HistoryPage: ...

    def holdings(self, principal_id: str, mode: int) -> dict[str, Holding]: ...

    def ensure_wallet(self, principal_id: str, mode: int, initial: Sequence[Holding]) -> None:
        """Give a principal its starting holdings once."""

    def apply_fill(self, principal_id: str, mode: int, legs: FillLegs) -> dict[str, Holding]:
        """Atomically apply a fill; raises portfolio.InsufficientBalance and changes nothing then."""

    def close(self) -> None: ...
