"""The webhook signature scheme (documented for receivers in README.md, "Webhooks").

Every delivery carries ``tradewire-signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256, keyed with the shared secret, over the ASCII timestamp, a ``.``, and the raw
request body bytes exactly as received. Receivers recompute it, compare in constant time,
and refuse timestamps too far from their clock (replays). Each attempt is signed afresh,
so a retried delivery has a new timestamp and the same body and delivery id.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "tradewire-signature"
DELIVERY_HEADER = "tradewire-delivery"
EVENT_HEADER = "tradewire-event"
DEFAULT_TOLERANCE_S = 300


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}." + body``."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, body, t)}"


def verify(secret: bytes, body: bytes, header: str, tolerance_s: float = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """What a receiver does: parse, check the timestamp window, compare in constant time."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", ()))
