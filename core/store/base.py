"""What the core needs from a store; SQLite is the embedded default, Redis the scale-out one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tradewire.core.portfolio import FillLegs, Holding
from tradewire.v1 import trade_pb2

if TYPE_CHECKING:
    from tradewire.core.shared.redis_inflight import InFlightSlot


class TakenOver(Exception):
    """A shared store gave this trade to another replica (this one was presumed dead): this
    process must not write or publish anything more about it."""


class TradeLost(TakenOver):
    """The shared store no longer has the trade at all (it restarted without its data): this
    process must not write it back either — the store's other records of it are gone too."""


# The receipt a voided fill id is kept with: a later settlement tells "voided, nothing booked"
# from "booked by a version that kept no receipt".
VOIDED_RECEIPT = "voided"


def realized_change(before: dict[str, Holding], after: dict[str, Holding]) -> int:
    """How much a fill moved the realised PnL of a principal's holdings (``before`` → ``after``)."""
    return sum(h.realized_pnl for h in after.values()) - sum(h.realized_pnl for h in before.values())


class FillIdUsed(Exception):
    """``apply_fill(..., once=True)``: the fill id was applied or voided before; nothing changed."""


@dataclass(frozen=True)
class TradeRecord:
    principal_id: str
    request_id: str
    fingerprint: str
    result: trade_pb2.TradeResult
    events: tuple[trade_pb2.ExecutionStatus, ...] = ()
    # The highest sequence its runner may have published by its next save (it publishes some
    # transitions without storing them): a restart continues after it. None: not recorded.
    published: int | None = None


@dataclass(frozen=True)
class UnfinishedTrade:
    """A trade without a terminal status in the store (the process stopped while it ran)."""

    record: TradeRecord
    request: trade_pb2.TradeRequest | None  # None for rows written before requests were kept


@dataclass(frozen=True)
class OutboxEntry:
    """One webhook to deliver (the durable outbox); the signing secret is never stored."""

    id: str
    principal_id: str
    request_id: str
    url: str
    body: bytes
    state: str = "pending"  # pending | delivered | dead
    attempts: int = 0
    next_attempt_ns: int = 0
    last_error: str = ""
    # The trade's W3C trace context (core.tracing.trace_to_text), sent with every attempt
    # from any process; None without one.
    trace: str | None = None


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
    # Opaque position the next page starts after (exclusive), None when there is no more. A
    # store that bounds the rows one call examines (Redis) may set it on a page holding fewer
    # trades than asked, even none: the position of the last row it examined.
    last_cursor: int | None


def check_page_limit(limit: int) -> None:
    """A history page holds at least one trade: with none, no position tells where the next
    page starts (SQLite raised IndexError, Redis answered a cursor that skipped a trade)."""
    if limit < 1:
        raise ValueError(f"a history page holds at least one trade, not {limit}")


class TradeStore(Protocol):
    # Shared by several replicas (one of which takes over what a stopped replica left).
    shared: bool

    def claim(self, principal_id: str, request_id: str, fingerprint: str,
              result: trade_pb2.TradeResult, request: trade_pb2.TradeRequest | None = None,
              slot: InFlightSlot | None = None) -> TradeRecord | None:
        """Record a new trade (with its request, so an unfinished one can resume after a
        restart); return the existing record instead if the id is taken.

        ``slot`` (a shared store, with in-flight counts shared by replicas): a new trade takes
        the caller's in-flight slot in the same atomic step, or raises
        core.inflight.AtInFlightLimit and claims nothing; a known request id takes none."""

    def save(self, principal_id: str, result: trade_pb2.TradeResult,
             events: Sequence[trade_pb2.ExecutionStatus] = (), outbox: Sequence[OutboxEntry] = (),
             release: InFlightSlot | None = None, published: int | None = None) -> None:
        """Store a trade's latest state and its events so far; with ``outbox``, enqueue those
        webhooks in the same transaction (a terminal status and its webhooks are durable together).
        ``release`` (a shared store): give the trade's in-flight slot back in the same step.
        ``published``: the record's new TradeRecord.published (None keeps it; a claim clears it).
        Raises TakenOver, writing nothing, when a shared store gave the trade to another replica."""

    def unfinished(self) -> list[UnfinishedTrade]:
        """Trades whose stored status is not terminal, oldest first."""

    def health(self) -> tuple[bool, str]:
        """Whether the store answers now, and which store it is (HealthCheck's component)."""

    # -- webhook outbox ------------------------------------------------------------------

    def outbox_take_due(self, now_ns: int, limit: int, lease_until_ns: int) -> list[OutboxEntry]:
        """Pending entries whose next attempt is due, earliest first, each leased as it is
        taken (its next attempt moved to ``lease_until_ns``, atomically with the read), so no
        other dispatcher on the store takes it while this attempt runs, and it is due again
        if the taker dies. The entries are returned as they were before the lease."""

    def outbox_next_due_ns(self) -> int | None:
        """When the earliest pending entry is due (None when nothing is pending)."""

    def outbox_update(self, entry_id: str, state: str, attempts: int, next_attempt_ns: int, last_error: str) -> None:
        ...

    def outbox_prune_delivered(self, before_ns: int) -> int:
        """Delete entries delivered before ``before_ns``; returns how many."""

    def outbox_counts(self) -> dict[str, int]:
        """Entries per state."""

    def outbox_entries(self, request_id: str | None = None) -> list[OutboxEntry]: ...

    def get(self, principal_id: str, request_id: str) -> TradeRecord | None: ...

    def request_of(self, principal_id: str, request_id: str) -> trade_pb2.TradeRequest | None:
        """The request the trade was claimed with (None: unknown, or stored before it was)."""

    def history(self, principal_id: str, query: HistoryQuery, limit: int, after: int | None) -> HistoryPage: ...

    def holdings(self, principal_id: str, mode: int) -> dict[str, Holding]: ...

    def holdings_changed_ns(self, principal_id: str, mode: int) -> dict[str, int]:
        """When each holding last changed (a fill, or the starting wallet), in ns since the
        epoch; a holding missing here: not known (written before the store kept it)."""

    def ensure_wallet(self, principal_id: str, mode: int, initial: Sequence[Holding]) -> None:
        """Give a principal its starting holdings once."""

    def apply_fill(self, principal_id: str, mode: int, legs: FillLegs, fill_id: str | None = None,
                   once: bool = False, receipt: str | None = None) -> dict[str, Holding]:
        """Atomically apply a fill and return the holdings after it; raises
        portfolio.InsufficientBalance and changes nothing then.

        With ``fill_id`` the fill is applied at most once per (principal, mode): the id is
        recorded atomically with the holdings change, and if it was applied before, nothing
        changes (no balance check either) and the current holdings are returned — or, with
        ``once``, FillIdUsed is raised. So a booking interrupted by a crash can simply be run
        again with the same id, and a booking that must be the first can tell. ``receipt``
        (what was booked, in the booker's words) is kept with the id, in the same write, and so
        is the fill's own realised-PnL change (:meth:`fill_realized_change`)."""

    def void_fill(self, principal_id: str, mode: int, fill_id: str) -> bool:
        """Record ``fill_id`` as applied without changing any holding, unless it was applied
        before (its receipt: VOIDED_RECEIPT). True: this call voided it, and no booking with that
        id can happen from now on; False: it was booked (or voided) before."""

    def fill_receipt(self, principal_id: str, mode: int, fill_id: str) -> str | None:
        """The receipt kept with ``fill_id`` (VOIDED_RECEIPT when it was voided); None if it is
        unknown, or was booked or voided by a version that kept none."""

    def fill_realized_change(self, principal_id: str, mode: int, fill_id: str) -> int | None:
        """How much the fill applied with ``fill_id`` changed the realised PnL, as recorded with the
        id when it was applied (computed on the very holdings it changed, whatever other fills land
        before or after it); None if unknown, voided, or applied by a version that kept none."""

    def prune_fill_ids(self, before_ns: int, limit: int) -> int:
        """Forget up to ``limit`` fill ids recorded before ``before_ns``, with their receipts and
        realised changes; returns how many. Their trades were settled long before
        (core/store/retention.py)."""

    def close(self) -> None: ...
