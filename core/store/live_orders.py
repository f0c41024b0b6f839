"""The journal of LIVE transactions: what was signed, and whether it may have been sent.

One row per signed swap transaction, written BEFORE it is sent (its own SQLite file, WAL,
``synchronous=FULL`` so a committed state survives a power cut, not just a crash):

    prepared ──► pending ──► landed | expired | dropped
        │           │
        └──► void ◄─┘ (from pending: its one send refused by the RPC's preflight)

* ``prepared``: signed and persisted; nothing has been sent.
* ``void``: prepared but abandoned before any send (simulation failed, cancelled, ...), or
  pending but its only send was refused by the RPC's preflight, which does not forward what
  it refuses (so the request may sign anew).
* ``pending``: written (and committed) right before the first send, so from here on the
  transaction may be on the network. Only the same signed bytes are ever re-broadcast;
  a pending row is resolved by its signature, never by signing again.
* ``landed`` (executed on-chain, succeeded or failed — fees were paid), ``expired`` (the block
  height passed lastValidBlockHeight and the signature is unknown: it can never land),
  ``dropped`` (a Jito bundle the engine reported Failed: nothing of it landed).

A partial unique index allows at most one non-void row per (principal, request id): a
second transaction for the same request cannot even be recorded while one may be live.

``booked``: 0 not booked, 1 booking claimed, 2 booked. Booking is claimed before the
holdings are changed (they live in another database: trades.db or Redis), and the holdings
change carries the transaction's signature as its fill id, which the trade store applies at
most once. A booking a crash interrupted (still 1 at start-up) is simply run again: the fill
is applied if it never was and skipped if it was, so every fill is booked exactly once.
``pnl_delta`` is the realised-PnL change the trade store recorded with the fill id as it
applied the fill (TradeStore.fill_realized_change), so that re-run records it too, and other
bookings of the principal made meanwhile (on other replicas) are never counted in it.
``realized_before`` (the principal's LIVE realised PnL when the booking was claimed) is only
noted by earlier versions, whose stores recorded no change with the fill: their bookings still
interrupted are finished from it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREPARED, PENDING, LANDED, EXPIRED, DROPPED, VOID = "prepared", "pending", "landed", "expired", "dropped", "void"
FINAL_STATES = frozenset({LANDED, EXPIRED, DROPPED})
ROUTE_RPC, ROUTE_JITO = "rpc", "jito"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_orders (
    signature TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL,
    route TEXT NOT NULL,
    tx BLOB NOT NULL,
    bundle BLOB,
    bundle_id TEXT,
    last_valid_block_height INTEGER NOT NULL,
    request BLOB NOT NULL,
    quote TEXT NOT NULL,
    outcome TEXT,
    booked INTEGER NOT NULL DEFAULT 0,
    pnl_delta INTEGER,
    realized_before INTEGER,
    broadcasts INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    final_ns INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS live_orders_one_per_request
    ON live_orders (principal, request_id) WHERE state != 'void';
CREATE INDEX IF NOT EXISTS live_orders_by_state ON live_orders (state);
CREATE INDEX IF NOT EXISTS live_orders_by_final ON live_orders (final_ns);
"""

# Columns added after the first schema, for journals created before them.
_ADDED_COLUMNS = (("realized_before", "INTEGER"),)

_COLUMNS = ("signature, principal, request_id, state, route, tx, bundle, bundle_id, last_valid_block_height,"
            " request, quote, outcome, booked, pnl_delta, broadcasts, created_ns, realized_before")


class AlreadyRecorded(Exception):
    """The request already has a transaction that is not void."""


@dataclass(frozen=True)
class LiveOrder:
    signature: str
    principal: str
    request_id: str
    state: str
    route: str
    tx: bytes  # the signed swap transaction, wire bytes
    bundle: tuple[bytes, ...]  # every transaction of a Jito bundle, in order (empty for RPC)
    bundle_id: str | None
    last_valid_block_height: int
    request: bytes  # serialized TradeRequest
    quote: dict[str, Any]
    outcome: dict[str, Any] | None
    booked: int
    pnl_delta: int | None
    broadcasts: int
    created_ns: int
    realized_before: int | None  # the principal's LIVE realised PnL when an earlier version claimed its booking

    @property
    def wires(self) -> tuple[bytes, ...]:
        """What goes on the wire: the bundle, or the single transaction."""
        return self.bundle or (self.tx,)


def _pack(blobs: Sequence[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in blobs)


def _unpack(blob: bytes | None) -> tuple[bytes, ...]:
    out, i = [], 0
    while blob and i < len(blob):
        size = int.from_bytes(blob[i:i + 4], "big")
        out.append(bytes(blob[i + 4:i + 4 + size]))
        i += 4 + size
    return tuple(out)


def _row(r) -> LiveOrder:
    return LiveOrder(
        signature=r[0], principal=r[1], request_id=r[2], state=r[3], route=r[4], tx=bytes(r[5]),
        bundle=_unpack(r[6]), bundle_id=r[7], last_valid_block_height=r[8], request=bytes(r[9]),
        quote=json.loads(r[10]), outcome=json.loads(r[11]) if r[11] else None, booked=r[12],
        pnl_delta=r[13], broadcasts=r[14], created_ns=r[15], realized_before=r[16],
    )


class LiveOrderStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(live_orders)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE live_orders ADD COLUMN {name} {kind}")

    # -- writes (each one statement: atomic) --------------------------------------------

    def prepare(self, *, signature: str, principal: str, request_id: str, route: str, tx: bytes,
                bundle: Sequence[bytes], bundle_id: str | None, last_valid_block_height: int, request: bytes,
                quote: dict[str, Any]) -> LiveOrder:
        now = time.time_ns()
        try:
            self._db.execute(
                "INSERT INTO live_orders (signature, principal, request_id, state, route, tx, bundle, bundle_id,"
                " last_valid_block_height, request, quote, created_ns, updated_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (signature, principal, request_id, PREPARED, route, tx, _pack(bundle) if bundle else None, bundle_id,
                 last_valid_block_height, request, json.dumps(quote), now, now),
            )
        except sqlite3.IntegrityError:
            raise AlreadyRecorded(request_id) from None
        order = self.get(signature)
        assert order is not None
        return order

    def _set_state(self, signature: str, state: str, from_states: Sequence[str]) -> bool:
        cur = self._db.execute(
            f"UPDATE live_orders SET state = ?, updated_ns = ? WHERE signature = ?"
            f" AND state IN ({','.join('?' * len(from_states))})",
            (state, time.time_ns(), signature, *from_states))
        return cur.rowcount == 1

    def mark_pending(self, signature: str) -> bool:
        """Right before the first send: from now on the transaction may be live."""
        return self._set_state(signature, PENDING, (PREPARED,))

    def adopt(self, principal: str, request_id: str) -> LiveOrder | None:
        """The transaction another process sent for this request, when this one took the trade
        over; a journal of one process knows none (core/shared/redis_live_orders.py does)."""
        return None

    def import_pending(self, row: LiveOrder) -> None:
        """Journal a transaction another process sent (adopted with its trade) as pending here;
        nothing happens if this journal has it, or another live one for its request, already."""
        now = time.time_ns()
        self._db.execute(
            "INSERT OR IGNORE INTO live_orders (signature, principal, request_id, state, route, tx, bundle, bundle_id,"
            " last_valid_block_height, request, quote, created_ns, updated_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row.signature, row.principal, row.request_id, PENDING, row.route, row.tx,
             _pack(row.bundle) if row.bundle else None, row.bundle_id, row.last_valid_block_height, row.request,
             json.dumps(row.quote), row.created_ns, now))

    def void(self, signature: str) -> bool:
        """Abandon a prepared transaction that was never sent."""
        return self._set_state(signature, VOID, (PREPARED,))

    def void_refused(self, signature: str) -> bool:
        """Abandon a pending transaction whose only send the RPC's preflight refused: the node
        did not forward it, so it is not on the network (the caller makes sure nothing else
        sent it)."""
        return self._set_state(signature, VOID, (PENDING,))

    def void_prepared(self, created_before_ns: int) -> int:
        """At start-up: a previous run's prepared rows were never sent (pending is committed
        before any send). Rows of this run (created since it started) are left alone."""
        return self._db.execute(
            "UPDATE live_orders SET state = ?, updated_ns = ? WHERE state = ? AND created_ns < ?",
            (VOID, time.time_ns(), PREPARED, created_before_ns)).rowcount

    def finalize(self, signature: str, state: str, outcome: dict[str, Any]) -> bool:
        if state not in FINAL_STATES:
            raise ValueError(state)
        now = time.time_ns()
        cur = self._db.execute(
            "UPDATE live_orders SET state = ?, outcome = ?, final_ns = ?, updated_ns = ? WHERE signature = ?"
            " AND state = ?", (state, json.dumps(outcome), now, now, signature, PENDING))
        return cur.rowcount == 1

    def claim_booking(self, signature: str, realized_before: int | None = None) -> bool:
        """Claim the row's booking (False if it was claimed before), noting the realised PnL
        it starts from, if given (see ``realized_before`` above)."""
        return self._db.execute("UPDATE live_orders SET booked = 1, realized_before = ? WHERE signature = ?"
                                " AND booked = 0", (realized_before, signature)).rowcount == 1

    def booked(self, signature: str, pnl_delta: int) -> None:
        self._db.execute("UPDATE live_orders SET booked = 2, pnl_delta = ? WHERE signature = ?",
                         (pnl_delta, signature))

    def note_broadcast(self, signature: str) -> None:
        self._db.execute("UPDATE live_orders SET broadcasts = broadcasts + 1 WHERE signature = ?", (signature,))

    def set_bundle_id(self, signature: str, bundle_id: str) -> None:
        self._db.execute("UPDATE live_orders SET bundle_id = ? WHERE signature = ?", (bundle_id, signature))

    def claim_signature(self, signature: str, principal: str, request_id: str) -> bool:
        """False when another transaction already has this signature: a byte-identical swap
        built for another request in the same slot, which would land once for both."""
        return self.get(signature) is None

    # -- reads ----------------------------------------------------------------------------

    def get(self, signature: str) -> LiveOrder | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM live_orders WHERE signature = ?", (signature,)).fetchone()
        return None if row is None else _row(row)

    def for_request(self, principal: str, request_id: str) -> LiveOrder | None:
        """The request's transaction that is not void (there is at most one)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM live_orders WHERE principal = ? AND request_id = ? AND state != ?",
            (principal, request_id, VOID)).fetchone()
        return None if row is None else _row(row)

    def in_state(self, *states: str) -> list[LiveOrder]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM live_orders WHERE state IN ({','.join('?' * len(states))}) ORDER BY created_ns",
            states).fetchall()
        return [_row(r) for r in rows]

    def final_since(self, since_ns: int) -> list[LiveOrder]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM live_orders WHERE final_ns >= ? ORDER BY final_ns",
                                (since_ns,)).fetchall()
        return [_row(r) for r in rows]

    def booking_interrupted(self) -> list[LiveOrder]:
        """Rows whose booking was claimed but not finished (the process stopped in between)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM live_orders WHERE booked = 1").fetchall()
        return [_row(r) for r in rows]

    def realized_since(self, since_ns: int) -> int:
        """Sum of the booked realised-PnL changes of LIVE trades finalized since ``since_ns``."""
        row = self._db.execute("SELECT COALESCE(SUM(pnl_delta), 0) FROM live_orders WHERE final_ns >= ?"
                               " AND pnl_delta IS NOT NULL", (since_ns,)).fetchone()
        return int(row[0])

    def count(self, state: str | None = None) -> int:
        if state is None:
            return self._db.execute("SELECT COUNT(*) FROM live_orders").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM live_orders WHERE state = ?", (state,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()
