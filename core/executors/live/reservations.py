"""The book of what LIVE trades in flight may still take from the wallet and add to it.

The risk checks (safety.py, "Trades in flight") count every other trade's reservation; this
module keeps them. :class:`LocalReservations` is one process's book, the default; several
replicas trading one wallet share one in Redis instead (core/shared/redis_reservations.py),
so a trade admitted on one replica counts on the others. Both answer the same questions:

* ``epoch()`` — where the book stands before a balance read: a reservation released from then
  on still counts for a check on those balances (its effect may not be in what was read);
* ``admit(key, since, settled, check, make)`` — count the others, run ``check`` on that sum,
  and hold ``make()`` for ``key`` when it passes: one step, so two trades never both pass on
  the same room;
* ``hold`` / ``holds`` / ``release`` — for a trade already sent, and when a trade is final.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

Key = tuple[str, str]  # (principal, request id)
RELEASED_KEPT_S = 300.0  # far longer than a trade takes from its balance read to its checks

Refusal = TypeVar("Refusal")


@dataclass
class Reservation:
    """What one admitted trade may still take from the wallet and add to it, until it is final."""

    spend: dict[str, int]  # mint → atomic units at most (SOL in lamports, fees included)
    buy_mint: str
    buy: int  # atomic units of buy_mint
    loss: int  # worst-case realised loss, valuation-mint atomic units


@dataclass
class InFlight:
    """The sum of the reservations a check counts."""

    spend: dict[str, int] = field(default_factory=dict)
    buys: dict[str, int] = field(default_factory=dict)
    loss: int = 0
    trades: int = 0

    def add(self, r: Reservation, in_balances: bool = False) -> None:
        if not in_balances:
            for mint, amount in r.spend.items():
                self.spend[mint] = self.spend.get(mint, 0) + amount
            self.buys[r.buy_mint] = self.buys.get(r.buy_mint, 0) + r.buy
        self.loss += r.loss  # not in any balance: it counts until booked
        self.trades += 1


class ReservationBook(Protocol):
    def epoch(self) -> int: ...

    def admit(self, key: Key, since: int, settled: frozenset[Key], check: Callable[[InFlight], Refusal | None],
              make: Callable[[], Reservation]) -> Refusal | None: ...

    def hold(self, key: Key, reservation: Reservation) -> None: ...

    def holds(self, key: Key) -> bool: ...

    def release(self, key: Key) -> None: ...

    async def keep_renewed(self) -> None: ...


class LocalReservations:
    """One process's book: the trades this process admitted or follows."""

    def __init__(self, monotonic=time.monotonic) -> None:
        self._monotonic = monotonic
        self._held: dict[Key, Reservation] = {}
        self._released: deque[tuple[int, float, Key, Reservation]] = deque()  # (epoch, when, trade, reservation)
        self._epoch = 0  # counts releases

    def epoch(self) -> int:
        return self._epoch

    def admit(self, key: Key, since: int, settled: frozenset[Key], check: Callable[[InFlight], Refusal | None],
              make: Callable[[], Reservation]) -> Refusal | None:
        others = InFlight()
        for other, reservation in self._held.items():
            if other != key:
                others.add(reservation, other in settled)
        for epoch, _, other, reservation in self._released:
            if epoch > since:  # released after the balances were read: maybe not in them
                others.add(reservation, other in settled)
        refusal = check(others)
        if refusal is None:
            self._held[key] = make()
        return refusal

    def hold(self, key: Key, reservation: Reservation) -> None:
        self._held[key] = reservation

    def holds(self, key: Key) -> bool:
        return key in self._held

    def release(self, key: Key) -> None:
        reservation = self._held.pop(key, None)
        if reservation is None:
            return
        self._epoch += 1
        now = self._monotonic()
        self._released.append((self._epoch, now, key, reservation))
        while self._released and self._released[0][1] < now - RELEASED_KEPT_S:
            self._released.popleft()

    async def keep_renewed(self) -> None:
        """Nothing to renew: the book lives and dies with the process."""
