"""SQLite (WAL) store: the one-process default for trades, idempotency keys, positions and
the webhook outbox.

Statements are short and indexed (sub-millisecond), so they run on the event loop; the
connection is used from that one thread only.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tradewire.core import lifecycle
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance, apply_fill
from tradewire.core.store.base import (VOIDED_RECEIPT, FillIdUsed, HistoryPage, HistoryQuery, OutboxEntry, TradeRecord,
                                       UnfinishedTrade, check_page_limit, realized_change)
from tradewire.v1 import trade_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    mode INTEGER NOT NULL,
    status INTEGER NOT NULL,
    input_mint TEXT NOT NULL,
    output_mint TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    result BLOB NOT NULL,
    events BLOB,
    UNIQUE (principal, request_id)
);
CREATE INDEX IF NOT EXISTS trades_by_principal ON trades (principal, seq DESC);
CREATE TABLE IF NOT EXISTS holdings (
    principal TEXT NOT NULL,
    mode INTEGER NOT NULL,
    mint TEXT NOT NULL,
    amount INTEGER NOT NULL,
    cost_basis INTEGER NOT NULL,
    realized_pnl INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (principal, mode, mint)
);
CREATE TABLE IF NOT EXISTS applied_fills (
    principal TEXT NOT NULL,
    mode INTEGER NOT NULL,
    fill_id TEXT NOT NULL,
    applied_ns INTEGER NOT NULL,
    receipt TEXT,
    realized_change INTEGER,
    PRIMARY KEY (principal, mode, fill_id)
);
CREATE TABLE IF NOT EXISTS wallets (
    principal TEXT NOT NULL,
    mode INTEGER NOT NULL,
    PRIMARY KEY (principal, mode)
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    trace TEXT,
    UNIQUE (principal, request_id, url)
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (state, next_attempt_ns);
CREATE INDEX IF NOT EXISTS applied_fills_by_time ON applied_fills (applied_ns);
"""
# Columns added after the first schema, for data directories created before them.
_ADDED_COLUMNS = {"trades": (("request", "BLOB"), ("rerun", "INTEGER NOT NULL DEFAULT 0"), ("published", "INTEGER")),
                  "applied_fills": (("receipt", "TEXT"), ("realized_change", "INTEGER")),
                  "webhook_outbox": (("trace", "TEXT"),)}
_TERMINAL = tuple(sorted({trade_pb2.TRADE_STATUS_FILLED, trade_pb2.TRADE_STATUS_REJECTED, trade_pb2.TRADE_STATUS_FAILED,
                          trade_pb2.TRADE_STATUS_CANCELLED, trade_pb2.TRADE_STATUS_EXPIRED}))
_OUTBOX_COLUMNS = "id, principal, request_id, url, body, state, attempts, next_attempt_ns, last_error, trace"


def pack_events(events: Sequence[trade_pb2.ExecutionStatus]) -> bytes:
    """Length-prefixed serialized events, in order."""
    return b"".join(len(raw).to_bytes(4, "big") + raw for raw in (e.SerializeToString() for e in events))


def unpack_events(blob: bytes | None) -> tuple[trade_pb2.ExecutionStatus, ...]:
    out, i = [], 0
    while blob and i < len(blob):
        size = int.from_bytes(blob[i:i + 4], "big")
        out.append(trade_pb2.ExecutionStatus.FromString(blob[i + 4:i + 4 + size]))
        i += 4 + size
    return tuple(out)


def _as_int64(ns: int) -> int:
    """A time bound SQLite can bind. The contract's timestamps run from year 1 to 9999, past what a
    signed 64-bit count of ns holds (1677 to 2262), and every stored created_ns lies within it: the
    bound clamped to that range selects the same rows (binding it as it was raised OverflowError)."""
    return min(max(ns, -(2**63)), 2**63 - 1)


def _local_only(slot: object) -> None:
    """In-flight slots are counted in this process with the embedded store: none to take here."""
    if slot is not None:
        raise ValueError("the embedded store shares no in-flight slots")


class SqliteStore:
    shared = False  # one process's

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        # Holdings per (principal, mode) as last read or written by this connection: a paper
        # trade reads them for its dry run and again to book the fill. Valid while
        # PRAGMA data_version is unchanged, i.e. no other connection committed since.
        self._holdings: dict[tuple[str, int], dict[str, Holding]] = {}
        self._data_version: int | None = None
        # Packed events of running trades saved before (the commit point): each save only
        # packs the events added since. Dropped when the trade is saved in a final state.
        self._packed: dict[tuple[str, str], tuple[int, object, bytes]] = {}

    # -- trades --------------------------------------------------------------------------

    def claim(self, principal_id: str, request_id: str, fingerprint: str, result: trade_pb2.TradeResult,
              request: trade_pb2.TradeRequest | None = None, slot: None = None) -> TradeRecord | None:
        _local_only(slot)
        insert = ("INSERT INTO trades (principal, request_id, fingerprint, mode, status, input_mint, output_mint,"
                  " created_ns, result, request) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (principal, request_id)"
                  " DO NOTHING",
                  (principal_id, request_id, fingerprint, result.mode, result.status, result.input_mint,
                   result.output_mint, result.created_at.ToNanoseconds(), result.SerializeToString(),
                   request.SerializeToString() if request is not None else None))
        if self._db.execute(*insert).rowcount == 1:
            return None
        # A trade that may run again (lifecycle.may_run_again) is claimed afresh by the same payload,
        # as a new row: its new seq lists it first in history (newest first), as its new created_at
        # says — an update in place left it where its first attempt was, pages away from the top.
        with self._transaction():
            if self._db.execute("DELETE FROM trades WHERE principal = ? AND request_id = ? AND rerun = 1"
                                " AND fingerprint = ?", (principal_id, request_id, fingerprint)).rowcount:
                self._db.execute(*insert)
                return None
        return self.get(principal_id, request_id)

    def save(self, principal_id: str, result: trade_pb2.TradeResult,
             events: Sequence[trade_pb2.ExecutionStatus] = (), outbox: Sequence[OutboxEntry] = (),
             release: None = None, published: int | None = None) -> None:
        _local_only(release)
        update = (
            "UPDATE trades SET status = ?, result = ?, events = COALESCE(?, events), rerun = ?,"
            " published = COALESCE(?, published) WHERE principal = ? AND request_id = ?",
            (result.status, result.SerializeToString(),
             self._pack_incrementally((principal_id, result.request_id), events, result.status) if events else None,
             lifecycle.may_run_again(result), published, principal_id, result.request_id),
        )
        if not outbox:
            self._db.execute(*update)
            return
        with self._transaction():
            self._db.execute(*update)
            self._insert_webhooks(outbox)

    def _pack_incrementally(self, key: tuple[str, str], events: Sequence[trade_pb2.ExecutionStatus],
                            status: int) -> bytes:
        """pack_events(events), reusing the bytes packed at this trade's previous save when
        ``events`` extends the same (append-only) sequence."""
        cached = self._packed.pop(key, None)
        if cached is not None and cached[0] <= len(events) and events[cached[0] - 1] is cached[1]:
            packed = cached[2] + pack_events(events[cached[0]:])
        else:
            packed = pack_events(events)
        if status not in _TERMINAL:
            self._packed[key] = (len(events), events[-1], packed)
        return packed

    def _insert_webhooks(self, outbox: Sequence[OutboxEntry]) -> None:
        now = time.time_ns()
        self._db.executemany(
            "INSERT INTO webhook_outbox (id, principal, request_id, url, body, state, attempts, next_attempt_ns,"
            " last_error, created_ns, updated_ns, trace) VALUES (?,?,?,?,?,'pending',0,?,'',?,?,?)"
            " ON CONFLICT (principal, request_id, url) DO NOTHING",
            [(e.id, e.principal_id, e.request_id, e.url, e.body, e.next_attempt_ns or now, now, now, e.trace)
             for e in outbox],
        )

    def unfinished(self) -> list[UnfinishedTrade]:
        rows = self._db.execute(
            f"SELECT principal, request_id, fingerprint, result, events, request, published FROM trades"
            f" WHERE status NOT IN ({','.join('?' * len(_TERMINAL))}) ORDER BY seq",
            _TERMINAL,
        ).fetchall()
        return [UnfinishedTrade(
            TradeRecord(r[0], r[1], r[2], trade_pb2.TradeResult.FromString(r[3]), unpack_events(r[4]), r[6]),
            trade_pb2.TradeRequest.FromString(r[5]) if r[5] is not None else None,
        ) for r in rows]

    def get(self, principal_id: str, request_id: str) -> TradeRecord | None:
        row = self._db.execute(
            "SELECT fingerprint, result, events, published FROM trades WHERE principal = ? AND request_id = ?",
            (principal_id, request_id),
        ).fetchone()
        if row is None:
            return None
        return TradeRecord(principal_id, request_id, row[0], trade_pb2.TradeResult.FromString(row[1]),
                           unpack_events(row[2]), row[3])

    def request_of(self, principal_id: str, request_id: str) -> trade_pb2.TradeRequest | None:
        row = self._db.execute("SELECT request FROM trades WHERE principal = ? AND request_id = ?",
                               (principal_id, request_id)).fetchone()
        return trade_pb2.TradeRequest.FromString(row[0]) if row is not None and row[0] is not None else None

    def history(self, principal_id: str, query: HistoryQuery, limit: int, after: int | None) -> HistoryPage:
        check_page_limit(limit)
        sql = ["SELECT seq, result FROM trades WHERE principal = ?"]
        args: list = [principal_id]
        if after is not None:
            sql.append("AND seq < ?")
            args.append(after)
        if query.mode:
            sql.append("AND mode = ?")
            args.append(query.mode)
        if query.mint:
            sql.append("AND (input_mint = ? OR output_mint = ?)")
            args += [query.mint, query.mint]
        if query.statuses:
            sql.append(f"AND status IN ({','.join('?' * len(query.statuses))})")
            args += list(query.statuses)
        if query.start_ns is not None:
            sql.append("AND created_ns >= ?")
            args.append(_as_int64(query.start_ns))
        if query.end_ns is not None:
            sql.append("AND created_ns < ?")
            args.append(_as_int64(query.end_ns))
        sql.append("ORDER BY seq DESC LIMIT ?")
        args.append(limit + 1)  # one more tells whether another page exists
        rows = self._db.execute(" ".join(sql), args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage([trade_pb2.TradeResult.FromString(r[1]) for r in rows], rows[-1][0] if more else None)

    # -- webhook outbox ------------------------------------------------------------------

    @staticmethod
    def _entry(row) -> OutboxEntry:
        return OutboxEntry(id=row[0], principal_id=row[1], request_id=row[2], url=row[3], body=bytes(row[4]),
                           state=row[5], attempts=row[6], next_attempt_ns=row[7], last_error=row[8], trace=row[9])

    def outbox_take_due(self, now_ns: int, limit: int, lease_until_ns: int) -> list[OutboxEntry]:
        with self._transaction():
            rows = self._db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM webhook_outbox WHERE state = 'pending' AND next_attempt_ns <= ?"
                " ORDER BY next_attempt_ns LIMIT ?", (now_ns, limit)).fetchall()
            self._db.executemany("UPDATE webhook_outbox SET next_attempt_ns = ? WHERE id = ?",
                                 [(lease_until_ns, r[0]) for r in rows])
        return [self._entry(r) for r in rows]

    def outbox_next_due_ns(self) -> int | None:
        row = self._db.execute("SELECT MIN(next_attempt_ns) FROM webhook_outbox WHERE state = 'pending'").fetchone()
        return row[0]

    def outbox_update(self, entry_id: str, state: str, attempts: int, next_attempt_ns: int, last_error: str) -> None:
        self._db.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = ?, next_attempt_ns = ?, last_error = ?, updated_ns = ?"
            " WHERE id = ?", (state, attempts, next_attempt_ns, last_error[:500], time.time_ns(), entry_id))

    def outbox_prune_delivered(self, before_ns: int) -> int:
        """Delete entries delivered before ``before_ns``; returns how many."""
        return self._db.execute("DELETE FROM webhook_outbox WHERE state = 'delivered' AND updated_ns < ?",
                                (before_ns,)).rowcount

    def outbox_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "dead": 0}
        counts.update(dict(self._db.execute("SELECT state, COUNT(*) FROM webhook_outbox GROUP BY state").fetchall()))
        return counts

    def outbox_entries(self, request_id: str | None = None) -> list[OutboxEntry]:
        if request_id is None:
            rows = self._db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM webhook_outbox ORDER BY created_ns").fetchall()
        else:
            rows = self._db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM webhook_outbox WHERE request_id = ?"
                                    " ORDER BY created_ns", (request_id,)).fetchall()
        return [self._entry(r) for r in rows]

    # -- holdings ------------------------------------------------------------------------

    def holdings(self, principal_id: str, mode: int) -> dict[str, Holding]:
        return dict(self._current_holdings(principal_id, mode))  # a copy: Holding is frozen

    def holdings_changed_ns(self, principal_id: str, mode: int) -> dict[str, int]:
        # (a holding's row is written only when a fill or the starting wallet changes it)
        return dict(self._db.execute("SELECT mint, updated_ns FROM holdings WHERE principal = ? AND mode = ?",
                                     (principal_id, mode)).fetchall())

    def _current_holdings(self, principal_id: str, mode: int) -> dict[str, Holding]:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # another connection wrote: forget what we knew
            self._holdings.clear()
            self._data_version = version
        cached = self._holdings.get((principal_id, mode))
        if cached is None:
            rows = self._db.execute(
                "SELECT mint, amount, cost_basis, realized_pnl FROM holdings WHERE principal = ? AND mode = ?",
                (principal_id, mode),
            ).fetchall()
            cached = self._holdings[(principal_id, mode)] = {r[0]: Holding(r[0], r[1], r[2], r[3]) for r in rows}
        return cached

    def ensure_wallet(self, principal_id: str, mode: int, initial: Sequence[Holding]) -> None:
        self._holdings.pop((principal_id, mode), None)
        with self._transaction():
            cur = self._db.execute("INSERT OR IGNORE INTO wallets VALUES (?, ?)", (principal_id, mode))
            if cur.rowcount == 1:
                self._write_holdings(principal_id, mode, {h.mint: h for h in initial})

    def apply_fill(self, principal_id: str, mode: int, legs: FillLegs, fill_id: str | None = None,
                   once: bool = False, receipt: str | None = None) -> dict[str, Holding]:
        key = (principal_id, mode)
        with self._transaction():  # BEGIN IMMEDIATE first: data_version is then checked under the write lock
            current = self._current_holdings(principal_id, mode)
            try:
                updated, refused = apply_fill(current, legs), None
            except InsufficientBalance as exc:  # raised below, unless the fill was applied before
                updated, refused = current, exc
            # The id row, with what this fill realised, commits or rolls back with the holdings
            # (a refused fill records no id).
            if fill_id is not None and not self._record_fill_id(principal_id, mode, fill_id, receipt,
                                                                realized_change(current, updated)):
                if once:
                    raise FillIdUsed(fill_id)
                return dict(current)  # applied before: nothing to change
            if refused is not None:
                raise refused
            self._holdings.pop(key, None)  # until committed
            self._write_holdings(principal_id, mode, {m: h for m, h in updated.items() if current.get(m) != h})
        self._holdings[key] = updated
        return dict(updated)

    def void_fill(self, principal_id: str, mode: int, fill_id: str) -> bool:
        return self._record_fill_id(principal_id, mode, fill_id, VOIDED_RECEIPT)

    def fill_receipt(self, principal_id: str, mode: int, fill_id: str) -> str | None:
        row = self._db.execute("SELECT receipt FROM applied_fills WHERE principal=? AND mode=? AND fill_id=?",
                               (principal_id, mode, fill_id)).fetchone()
        return None if row is None else row[0]

    def fill_realized_change(self, principal_id: str, mode: int, fill_id: str) -> int | None:
        row = self._db.execute("SELECT realized_change FROM applied_fills WHERE principal=? AND mode=? AND fill_id=?",
                               (principal_id, mode, fill_id)).fetchone()
        return None if row is None else row[0]

    def prune_fill_ids(self, before_ns: int, limit: int) -> int:
        return self._db.execute(
            "DELETE FROM applied_fills WHERE rowid IN (SELECT rowid FROM applied_fills WHERE applied_ns < ? LIMIT ?)",
            (before_ns, limit)).rowcount

    def _record_fill_id(self, principal_id: str, mode: int, fill_id: str, receipt: str | None = None,
                        realized: int | None = None) -> bool:
        """False when the fill id was recorded before."""
        return self._db.execute(
            "INSERT INTO applied_fills (principal, mode, fill_id, applied_ns, receipt, realized_change)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (principal, mode, fill_id) DO NOTHING",
            (principal_id, mode, fill_id, time.time_ns(), receipt, realized)).rowcount == 1

    def _write_holdings(self, principal_id: str, mode: int, holdings: dict[str, Holding]) -> None:
        now = time.time_ns()
        self._db.executemany(
            "INSERT INTO holdings VALUES (?,?,?,?,?,?,?) ON CONFLICT (principal, mode, mint) DO UPDATE SET"
            " amount = excluded.amount, cost_basis = excluded.cost_basis,"
            " realized_pnl = excluded.realized_pnl, updated_ns = excluded.updated_ns",
            [(principal_id, mode, h.mint, h.amount, h.cost_basis, h.realized_pnl, now) for h in holdings.values()],
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def health(self) -> tuple[bool, str]:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return False, f"sqlite: {exc}"
        return True, "sqlite"

    def close(self) -> None:
        self._db.close()
