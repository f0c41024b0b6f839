"""API keys: format, hashing, the record, the store interface and the admin functions.

A key looks like ``tw_<prefix>_<secret>``: ``prefix`` is 8 public characters
([a-z0-9]) that identify the key in lists, logs and audit rows; ``secret`` is 43
base62 characters from ``secrets`` (~256 bits). The plaintext is returned once by
:func:`create_key` and never stored: stores keep SHA-256(whole key) and the prefix.

Why plain SHA-256 and not bcrypt/argon2: slow KDFs exist to protect LOW-entropy
passwords from offline guessing. A 256-bit random secret cannot be guessed however fast
the hash is, so a slow hash would only add milliseconds to every request. Hashing the
whole key (prefix included) binds the prefix to the secret.

Verification order matters: the hash is compared (constant time) BEFORE revocation or
expiry is reported, so knowing a prefix alone reveals nothing about the key's state.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from tradewire.core.context import ALL_SCOPES
from tradewire.core.errors import TradewireError

KEY_TAG = "tw"
PREFIX_LENGTH = 8
SECRET_LENGTH = 43  # 43 base62 characters = 256 bits
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"tw_([a-z0-9]{8})_([A-Za-z0-9]{32,128})")
_PREFIX_RE = re.compile(r"(?:tw_)?([a-z0-9]{8})")
_OWNER_RE = re.compile(r"[A-Za-z0-9._@:+-]{1,128}")
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")


class KeyNotFound(LookupError):
    """No key with that prefix (admin operations; requests get AUTH_INVALID)."""


class DuplicatePrefix(ValueError):
    """A key with that prefix already exists."""


class ReadOnlyStore(RuntimeError):
    """The store's keys come from configuration and cannot be changed at run time."""


@dataclass(frozen=True)
class KeyRecord:
    """Everything known about a key except its secret and hash (safe to list and log)."""

    prefix: str
    owner: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def key_id(self) -> str:
        """The visible identifier, e.g. ``tw_ab12cd34``: the Principal label."""
        return f"{KEY_TAG}_{self.prefix}"

    def status(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at.timestamp() <= now:
            return "expired"
        return "active"


@runtime_checkable
class ApiKeyStore(Protocol):
    """Where key records live. ``verify`` is on the request path and must be sub-ms."""

    def verify(self, key: str) -> KeyRecord:
        """The record for a presented plaintext key, or TradewireError (AUTH_INVALID,
        API_KEY_REVOKED, API_KEY_EXPIRED) carrying metadata ``credential``."""
        ...

    def get(self, prefix: str) -> KeyRecord | None: ...

    def list_records(self) -> list[KeyRecord]: ...

    def add(self, record: KeyRecord, key_hash: str) -> None:
        """Store a new key (DuplicatePrefix if taken; ReadOnlyStore if not writable)."""
        ...

    def revoke(self, prefix: str, at: datetime | None = None) -> KeyRecord:
        """Mark revoked (idempotent; KeyNotFound if unknown)."""
        ...


# -- format and hashing -----------------------------------------------------------------


def generate_key() -> tuple[str, str]:
    """A new (prefix, plaintext key)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return prefix, f"{KEY_TAG}_{prefix}_{secret}"


def hash_key(key: str) -> str:
    """Hex SHA-256 of the whole plaintext key (see module docstring for why SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key(key: str) -> str:
    """The prefix of a well-formed key, else AUTH_INVALID (the key is never echoed)."""
    match = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise key_error("AUTH_INVALID", "API key is malformed", "api_key:malformed")
    return match.group(1)


def normalize_prefix(prefix: str) -> str:
    """Accept ``ab12cd34`` or ``tw_ab12cd34``; refuse anything else (a full key included)."""
    match = _PREFIX_RE.fullmatch(prefix.strip()) if isinstance(prefix, str) else None
    if match is None:
        raise ValueError(f"expected a key prefix like 'tw_ab12cd34': {PREFIX_LENGTH} lowercase letters or digits, "
                         "as keys are made (never pass the full key)")
    return match.group(1)


def key_error(reason: str, message: str, credential: str) -> TradewireError:
    return TradewireError(reason, message, metadata={"credential": credential, "credential_kind": "api_key"})


def check_presented(
    prefix: str, record: KeyRecord | None, stored_hash: str | None, presented_hash: str, now: float
) -> KeyRecord:
    """The one verification rule every store applies, in this order: known + hash matches
    (constant time) -> not revoked -> not expired."""
    if record is None or stored_hash is None:
        # compare anyway so unknown and wrong-secret cost the same
        hmac.compare_digest(presented_hash, "0" * 64)
        raise key_error("AUTH_INVALID", "API key is not valid", f"{KEY_TAG}_{prefix}")
    if not hmac.compare_digest(presented_hash, stored_hash):
        raise key_error("AUTH_INVALID", "API key is not valid", record.key_id)
    if record.revoked_at is not None:
        raise key_error("API_KEY_REVOKED", f"API key {record.key_id} has been revoked", record.key_id)
    if record.expires_at is not None and record.expires_at.timestamp() <= now:
        raise key_error("API_KEY_EXPIRED", f"API key {record.key_id} has expired", record.key_id)
    return record


# -- admin functions (wired into the CLI) -----------------------------------------------


def create_key(
    store: ApiKeyStore,
    owner: str,
    name: str,
    scopes: Iterable[str],
    expires_in: timedelta | float | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[str, KeyRecord]:
    """Create and store a key. Returns (plaintext, record): show the plaintext ONCE."""
    if not isinstance(owner, str) or not _OWNER_RE.fullmatch(owner):
        raise ValueError("owner must be 1-128 characters from [A-Za-z0-9._@:+-]")
    if len(name) > 200:
        raise ValueError("name must be at most 200 characters")
    if not name.isprintable():  # a newline or a terminal escape would forge lines in `keys list`
        raise ValueError("name must be printable text (no newline, tab or other control character)")
    scope_set = frozenset(s.strip() for s in scopes if s.strip())
    unknown = scope_set - ALL_SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(ALL_SCOPES))}")
    if not scope_set:
        raise ValueError("a key needs at least one scope")
    if isinstance(expires_in, int | float):
        expires_in = timedelta(seconds=expires_in)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("expires_in must be positive")
    now = datetime.fromtimestamp(clock(), UTC)
    for _ in range(5):  # 36^8 prefixes: a collision is rare, retrying is enough
        prefix, key = generate_key()
        record = KeyRecord(
            prefix=prefix,
            owner=owner,
            name=name,
            scopes=scope_set,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        try:
            store.add(record, hash_key(key))
        except DuplicatePrefix:
            continue
        return key, record
    raise RuntimeError("could not allocate a unique key prefix")


def list_keys(store: ApiKeyStore) -> list[KeyRecord]:
    """All keys, oldest first. Records carry no hash and no secret."""
    return sorted(store.list_records(), key=lambda r: (r.created_at, r.prefix))


def revoke_key(store: ApiKeyStore, prefix: str, *, clock: Callable[[], float] = time.time) -> KeyRecord:
    """Revoke by prefix (``ab12cd34`` or ``tw_ab12cd34``). Idempotent; KeyNotFound if unknown."""
    return store.revoke(normalize_prefix(prefix), at=datetime.fromtimestamp(clock(), UTC))


def with_revoked(record: KeyRecord, at: datetime) -> KeyRecord:
    return record if record.revoked_at is not None else replace(record, revoked_at=at)


def __getattr__(name: str):  # PEP 562: the stores live in their own modules
    if name == "SqliteApiKeyStore":
        from .sqlite_key_store import SqliteApiKeyStore

        return SqliteApiKeyStore
    if name in {"StaticApiKeyStore", "StaticKeyConfig", "ChainApiKeyStore"}:
        from . import key_stores

        return getattr(key_stores, name)
    raise AttributeError(name)
