"""Raw ASGI response helpers: one place that turns bytes or a TradewireError into a reply.

Every error body is google.rpc.Status JSON from gateway/errors.py with its HTTP status and
``Retry-After``; the headers the core put in ``ctx.response_headers`` go on every reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import orjson

from tradewire.core.errors import TradewireError
from tradewire.gateway.errors import http_status, retry_after_header, status_json

Send = Callable[[dict], Awaitable[None]]
JSON = b"application/json"
_RESERVED = frozenset({"content-type", "content-length", "transfer-encoding", "connection"})


def header_list(extra: Mapping[str, str] | None, *more: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    """Encodes header maps for ASGI, dropping framing headers and values that would break
    the response (CR/LF) — those could only come from a bug, never from the client."""
    out: list[tuple[bytes, bytes]] = []
    for mapping in (extra, *more):
        if not mapping:
            continue
        for name, value in mapping.items():
            low = name.lower()
            value = str(value)
            if low in _RESERVED or "\n" in value or "\r" in value or "\n" in low or "\r" in low:
                continue
            try:
                out.append((low.encode("latin-1"), value.encode("latin-1")))
            except UnicodeEncodeError:
                continue
    return out


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = JSON,
    head_only: bool = False,
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head_only else body, "more_body": False})


def error_body(error: TradewireError) -> bytes:
    return orjson.dumps(status_json(error))


async def send_error(
    send: Send,
    error: TradewireError,
    response_headers: Mapping[str, str] | None = None,
    *,
    status: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> None:
    headers = header_list({**(response_headers or {}), **retry_after_header(error)}, extra_headers)
    await send_bytes(send, status or http_status(error), error_body(error), headers)
