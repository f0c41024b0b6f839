"""API keys in Redis, for replicas on several machines: a key created with ``tradewire keys``
works on every replica at once, and one revoked stops working on every replica within a
second.

Keys: ``tw:apikey:{prefix}`` (hash: ``hash`` — SHA-256 of the whole key, never the key —
``owner``, ``name``, ``scopes`` space-separated, ``created_at``, ``expires_at`` and
``revoked_at`` in epoch seconds, the last two only when set) and ``tw:apikeys`` (set: every
prefix, for listing).

A round trip to Redis costs ~0.15–0.3 ms of CPU here (redis-py), over ten times a SQLite
lookup, so a key proven here is kept for ``cache_s`` (1 s) and read again after that: a
revocation made elsewhere holds on this replica within that second (at once when made through
this store; long calls re-check their key about once a second anyway). A cache that is always
current would need a round trip of its own per call, or pushed invalidations whose loss (a
dead subscriber) would go unnoticed. Unknown keys are not kept. While Redis does not answer,
a verification that has to read it raises redis.ConnectionError: the caller gets UNAVAILABLE
STORE_UNAVAILABLE (retryable), never a pass.

A replica started with Redis copies the keys of its local key database in (:meth:`copy_in`),
so moving a gateway to Redis keeps its keys; a prefix Redis already has is left as it is
there (a key revoked in Redis stays revoked whatever a local copy says).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import redis

from tradewire.core.auth.api_keys import (
    DuplicatePrefix, KeyNotFound, KeyRecord, check_presented, hash_key, parse_key,
)
from tradewire.core.errors import TradewireError

INDEX = "tw:apikeys"

# KEYS: the key's hash, the index; ARGV: prefix, then field/value pairs. 0 when the prefix is taken.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the key's hash; ARGV: when. Revokes once (a second revocation keeps the first time);
# the record after it, or nothing when there is no such key.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


class RedisApiKeyStore:
    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time, cache_s: float = 1.0,
                 cache_size: int = 1024, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._r = client
        self._clock = clock
        self._add = client.register_script(_ADD)
        self._revoke = client.register_script(_REVOKE)
        self.cache_s = cache_s
        self._cache_size = cache_size
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, str, KeyRecord]] = OrderedDict()  # prefix → (read at, hash, record)
        self._lock = threading.Lock()
        # Counts this store's revocations: a record read before one is not kept, or a key revoked
        # while its verification was reading it would pass for another cache period.
        self._revocations = 0

    # -- request path ------------------------------------------------------------------

    def verify(self, key: str) -> KeyRecord:
        prefix = parse_key(key)
        presented = hash_key(key)
        now = self._monotonic()
        with self._lock:
            kept = self._cache.get(prefix)
            revocations = self._revocations
        read = kept is None or now - kept[0] >= self.cache_s
        entry = self._load(prefix) if read else kept[1:]
        stored_hash, record = entry if entry is not None else (None, None)
        try:
            verified = check_presented(prefix, record, stored_hash, presented, self._clock())
        except TradewireError:
            if read:  # (revoked or expired since it was kept)
                with self._lock:
                    self._cache.pop(prefix, None)
            raise
        if read:  # kept from when it was read (only keys just proven get here)
            with self._lock:
                if revocations != self._revocations:
                    return verified
                self._cache[prefix] = (now, *entry)
                self._cache.move_to_end(prefix)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return verified

    def get(self, prefix: str) -> KeyRecord | None:
        entry = self._load(prefix)
        return None if entry is None else entry[1]

    # -- admin -------------------------------------------------------------------------

    def list_records(self) -> list[KeyRecord]:
        prefixes = sorted(p.decode() for p in self._r.smembers(INDEX))
        pipe = self._r.pipeline(transaction=False)
        for prefix in prefixes:
            pipe.hgetall(_key(prefix))
        return [_record(prefix, fields) for prefix, fields in zip(prefixes, pipe.execute()) if fields]

    def add(self, record: KeyRecord, key_hash: str) -> None:
        fields = {"hash": key_hash, "owner": record.owner, "name": record.name,
                  "scopes": " ".join(sorted(record.scopes)), "created_at": repr(record.created_at.timestamp())}
        for name, value in (("expires_at", record.expires_at), ("revoked_at", record.revoked_at)):
            if value is not None:
                fields[name] = repr(value.timestamp())
        pairs = [item for pair in fields.items() for item in pair]
        if not self._add(keys=[_key(record.prefix), INDEX], args=[record.prefix, *pairs]):
            raise DuplicatePrefix(record.prefix)

    def revoke(self, prefix: str, at: datetime | None = None) -> KeyRecord:
        at = at or datetime.fromtimestamp(self._clock(), UTC)
        with self._lock:
            self._revocations += 1
        flat = self._revoke(keys=[_key(prefix)], args=[repr(at.timestamp())])
        with self._lock:
            self._revocations += 1
            self._cache.pop(prefix, None)
        if not flat:
            raise KeyNotFound(prefix)
        return _record(prefix, dict(zip(flat[::2], flat[1::2])))

    def copy_in(self, entries: Iterable[tuple[KeyRecord, str]]) -> int:
        """Add each (record, hash) whose prefix Redis does not have; how many were added."""
        added = 0
        for record, key_hash in entries:
            try:
                self.add(record, key_hash)
                added += 1
            except DuplicatePrefix:
                pass
        return added

    def close(self) -> None:
        """(The client is the caller's.)"""

    # -- internals ----------------------------------------------------------------------

    def _load(self, prefix: str) -> tuple[str, KeyRecord] | None:
        fields = self._r.hgetall(_key(prefix))
        return (fields[b"hash"].decode(), _record(prefix, fields)) if fields else None


def _key(prefix: str) -> str:
    return f"tw:apikey:{prefix}"


def _record(prefix: str, fields: dict[bytes, bytes]) -> KeyRecord:
    def when(name: bytes) -> datetime | None:
        value = fields.get(name)
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    return KeyRecord(prefix=prefix, owner=fields[b"owner"].decode(), name=fields[b"name"].decode(),
                     scopes=frozenset(fields[b"scopes"].decode().split()), created_at=when(b"created_at"),
                     expires_at=when(b"expires_at"), revoked_at=when(b"revoked_at"))
