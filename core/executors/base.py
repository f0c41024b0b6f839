"""The executor interface: an order in, lifecycle progress and one outcome out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from tradewire.core.errors import TradewireError
from tradewire.core.order import Fill, Order, Quote


@dataclass(frozen=True)
class Progress:
    status: int  # trade_pb2.TradeStatus, non-terminal
    message: str = ""
    # A transaction's signature, once it may be on the network: the runner stores it with this
    # status before publishing either (a restart then shows it and continues the same sequence).
    signature: str = ""


@dataclass(frozen=True)
class Outcome:
    """The end of an execution: FILLED with a fill, or a terminal failure with its error.

    A failure may still carry a fill: fees a failed transaction paid, amounts zero. A refusal
    after quoting carries the ``quote`` it was refused on (nothing booked), for the caller to see.
    """

    status: int  # trade_pb2.TradeStatus, terminal
    fill: Fill | None = None
    error: TradewireError | None = None
    quote: Quote | None = None  # only without a fill (a fill has its own quote)
    # A reconciled trade's statuses its record does not show yet (a LIVE transaction's
    # CONFIRMED): the runner publishes them before the outcome, as the normal path does.
    progress: tuple[Progress, ...] = ()


@dataclass(frozen=True)
class ExecutorHealth:
    ok: bool
    message: str = ""


class Executor(Protocol):
    """What TradeRunner routes orders to.

    Optional hooks, used when an executor has them (the LIVE one does):
      ``async start()`` / ``async close()`` — background work (e.g. a confirmation poller),
      run by the gateway's start-up and shutdown;
      ``async reconcile(order, result) -> Outcome`` — the true outcome of a trade a previous
      process left unfinished (after send: by its signature, never by sending again).
    """

    name: str

    def execute(self, order: Order) -> AsyncIterator[Progress | Outcome]:
        """Progress events, then exactly one Outcome."""

    def health(self) -> ExecutorHealth: ...
