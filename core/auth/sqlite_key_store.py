"""API keys in a local SQLite file (WAL), with a small cache of verified keys.

Sync on purpose: a lookup is one indexed read (``prefix`` is the PRIMARY KEY) on a local
file, measured in µs (bench/auth_bench.py), and a cache hit costs one ``PRAGMA
data_version``. That pragma changes whenever ANOTHER connection commits — e.g. the
``tradewire keys revoke`` CLI in a different process — so the cache is dropped on any
outside write, and a revocation takes effect on the very next request. Own writes
invalidate the cache directly. The file stores hashes, never secrets (and is chmod 600).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .api_keys import (
    DuplicatePrefix,
    KeyNotFound,
    KeyRecord,
    check_presented,
    hash_key,
    parse_key,
    with_revoked,
)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    prefix     TEXT PRIMARY KEY,          -- public, indexed: the lookup key
    key_hash   TEXT NOT NULL,             -- sha256 hex of the whole key; never the key
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    scopes     TEXT NOT NULL,             -- space-separated
    created_at REAL NOT NULL,             -- epoch seconds, UTC
    expires_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner);
"""
_COLUMNS = "prefix, key_hash, owner, name, scopes, created_at, expires_at, revoked_at"


class SqliteApiKeyStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 1024,
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, KeyRecord]] = OrderedDict()
        self._lock = threading.Lock()
        in_memory = self.path == ":memory:"
        if not in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).touch(mode=0o600, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        if not in_memory:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._data_version = self._read_data_version()

    # -- request path ------------------------------------------------------------------

    def verify(self, key: str) -> KeyRecord:
        prefix = parse_key(key)
        presented = hash_key(key)
        with self._lock:  # one critical section, so a concurrent revoke cannot be re-cached
            self._drop_cache_if_changed()
            entry = self._cache.get(prefix)
            if entry is None:
                entry = self._load(prefix)
            stored_hash, record = entry if entry is not None else (None, None)
            verified = check_presented(prefix, record, stored_hash, presented, self._clock())
            self._cache[prefix] = entry  # type: ignore[assignment]  # only keys just proven
            self._cache.move_to_end(prefix)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified

    def get(self, prefix: str) -> KeyRecord | None:
        with self._lock:
            self._drop_cache_if_changed()
            entry = self._cache.get(prefix) or self._load(prefix)
        return None if entry is None else entry[1]

    # -- admin -------------------------------------------------------------------------

    def list_records(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, prefix").fetchall()
        return [_record(row) for row in rows]

    def entries(self) -> list[tuple[KeyRecord, str]]:
        """Every key with its hash, to copy them into another store (never to show)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, prefix").fetchall()
        return [(_record(row), row[1]) for row in rows]

    def add(self, record: KeyRecord, key_hash: str) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.prefix,
                        key_hash,
                        record.owner,
                        record.name,
                        " ".join(sorted(record.scopes)),
                        record.created_at.timestamp(),
                        _ts(record.expires_at),
                        _ts(record.revoked_at),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicatePrefix(record.prefix) from exc

    def revoke(self, prefix: str, at: datetime | None = None) -> KeyRecord:
        at = at or datetime.fromtimestamp(self._clock(), UTC)
        with self._lock:
            self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
                (at.timestamp(), prefix),
            )
            self._cache.pop(prefix, None)
            entry = self._load(prefix)
        if entry is None:
            raise KeyNotFound(prefix)
        return with_revoked(entry[1], at)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._conn.close()

    def __enter__(self) -> SqliteApiKeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (call with the lock held) -------------------------------------------

    def _load(self, prefix: str) -> tuple[str, KeyRecord] | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = ?", (prefix,)).fetchone()
        return None if row is None else (row[1], _record(row))

    def _read_data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _drop_cache_if_changed(self) -> None:
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()


def _record(row: tuple) -> KeyRecord:
    prefix, _hash, owner, name, scopes, created, expires, revoked = row
    return KeyRecord(
        prefix=prefix,
        owner=owner,
        name=name,
        scopes=frozenset(scopes.split()),
        created_at=datetime.fromtimestamp(created, UTC),
        expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
        revoked_at=None if revoked is None else datetime.fromtimestamp(revoked, UTC),
    )


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()
