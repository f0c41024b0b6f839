"""In-memory API-key stores: keys given in configuration, and a chain of stores.

Configuration holds only (prefix, SHA-256 hash, owner, scopes[, expires_at]) — the
operator hashes the key with ``tradewire.core.auth.api_keys.hash_key`` (or
``printf %s "$KEY" | sha256sum``), so no plaintext secret sits in config files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tradewire.core.context import ALL_SCOPES

from .api_keys import (
    SHA256_HEX_RE,
    ApiKeyStore,
    DuplicatePrefix,
    KeyNotFound,
    KeyRecord,
    ReadOnlyStore,
    check_presented,
    hash_key,
    normalize_prefix,
    parse_key,
)


@dataclass(frozen=True)
class StaticKeyConfig:
    prefix: str
    sha256: str = field(repr=False)
    owner: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    name: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StaticKeyConfig:
        """``{"prefix": "tw_ab12cd34", "sha256": "<64 hex>", "owner": "bot-1",
        "scopes": ["read", "trade:paper"] or "read trade:paper", "expires_at":
        "2026-12-31T00:00:00Z" | epoch seconds | null, "name": "..."}``"""
        unknown = set(data) - {"prefix", "sha256", "owner", "scopes", "expires_at", "name"}
        if unknown:
            raise ValueError(f"unknown API key field(s): {', '.join(sorted(unknown))}")
        scopes = data.get("scopes", ())
        if isinstance(scopes, str):
            scopes = scopes.replace(",", " ").split()
        return cls(
            prefix=str(data.get("prefix", "")),
            sha256=str(data.get("sha256", "")),
            owner=str(data.get("owner", "")),
            scopes=frozenset(scopes),
            expires_at=_to_datetime(data.get("expires_at")),
            name=str(data.get("name", "")),
        )


class StaticApiKeyStore:
    """Read-only keys from configuration; verification is a dict lookup."""

    def __init__(
        self,
        entries: Iterable[StaticKeyConfig | Mapping[str, Any]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._keys: dict[str, tuple[KeyRecord, str]] = {}
        loaded_at = datetime.fromtimestamp(clock(), UTC)
        for entry in entries:
            cfg = entry if isinstance(entry, StaticKeyConfig) else StaticKeyConfig.from_mapping(entry)
            prefix = normalize_prefix(cfg.prefix)
            digest = cfg.sha256.lower()
            if not SHA256_HEX_RE.fullmatch(digest):
                raise ValueError(f"API key tw_{prefix}: sha256 must be 64 hex characters")
            if not cfg.owner:
                raise ValueError(f"API key tw_{prefix}: owner is required")
            unknown = cfg.scopes - ALL_SCOPES
            if unknown:
                raise ValueError(f"API key tw_{prefix}: unknown scope(s) {', '.join(sorted(unknown))}")
            if prefix in self._keys:
                raise ValueError(f"API key tw_{prefix} is configured twice")
            record = KeyRecord(prefix, cfg.owner, cfg.name, frozenset(cfg.scopes), loaded_at, cfg.expires_at)
            self._keys[prefix] = (record, digest)

    def verify(self, key: str) -> KeyRecord:
        prefix = parse_key(key)
        record, digest = self._keys.get(prefix, (None, None))
        return check_presented(prefix, record, digest, hash_key(key), self._clock())

    def get(self, prefix: str) -> KeyRecord | None:
        entry = self._keys.get(prefix)
        return None if entry is None else entry[0]

    def list_records(self) -> list[KeyRecord]:
        return [record for record, _ in self._keys.values()]

    def add(self, record: KeyRecord, key_hash: str) -> None:
        raise ReadOnlyStore("keys from configuration cannot be added at run time")

    def revoke(self, prefix: str, at: datetime | None = None) -> KeyRecord:
        raise ReadOnlyStore("keys from configuration are revoked by removing them from the configuration")


class ChainApiKeyStore:
    """Several stores seen as one (e.g. configured keys + the SQLite database).

    A prefix is owned by the first store that knows it; new keys go to the first writable
    store, and a prefix already used anywhere in the chain is refused.
    """

    def __init__(self, *stores: ApiKeyStore) -> None:
        if not stores:
            raise ValueError("ChainApiKeyStore needs at least one store")
        self.stores = stores

    def verify(self, key: str) -> KeyRecord:
        prefix = parse_key(key)
        for store in self.stores[:-1]:
            if store.get(prefix) is not None:
                return store.verify(key)
        return self.stores[-1].verify(key)  # unknown everywhere -> the last store says so

    def get(self, prefix: str) -> KeyRecord | None:
        for store in self.stores:
            record = store.get(prefix)
            if record is not None:
                return record
        return None

    def list_records(self) -> list[KeyRecord]:
        return [record for store in self.stores for record in store.list_records()]

    def add(self, record: KeyRecord, key_hash: str) -> None:
        if self.get(record.prefix) is not None:
            raise DuplicatePrefix(record.prefix)
        for store in self.stores:
            try:
                store.add(record, key_hash)
                return
            except ReadOnlyStore:
                continue
        raise ReadOnlyStore("no writable API key store configured")

    def revoke(self, prefix: str, at: datetime | None = None) -> KeyRecord:
        for store in self.stores:
            if store.get(prefix) is not None:
                return store.revoke(prefix, at)
        raise KeyNotFound(prefix)


def _to_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("expires_at must be an ISO-8601 time, epoch seconds or null")
