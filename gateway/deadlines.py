"""A call's deadline, enforced the same way by every HTTP adapter (Connect, gRPC-Web, HTTP/JSON):
connect-python parses Connect's and gRPC-Web's timeout headers but does not enforce them, and
HTTP/JSON has its own header (gateway/http_json/deadline.py). Native gRPC's are grpcio's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from tradewire.core.context import CallContext
from tradewire.core.errors import deadline_exceeded

T = TypeVar("T")


async def within_deadline(call: Awaitable[T], ctx: CallContext) -> T:
    """``call``, cut off when ``ctx``'s deadline passes (none: it runs to its end). Only the
    deadline firing is DEADLINE_EXCEEDED: a TimeoutError of the call's own is left as it is."""
    if ctx.deadline is None:  # (most calls: no timer to arm)
        return await call
    deadline = asyncio.timeout(ctx.time_remaining())
    try:
        async with deadline:
            return await call
    except TimeoutError:
        if not deadline.expired():
            raise
        raise deadline_exceeded() from None


async def until_deadline(messages: AsyncIterator[T], ctx: CallContext) -> AsyncIterator[T]:
    """A stream's messages, cut off when ``ctx``'s deadline passes while the next one is awaited —
    not while the caller's framework sends one (cancelled there, a call ends as a bare
    cancellation, not DEADLINE_EXCEEDED; a deadline passed meanwhile fires at the next)."""
    while True:
        try:
            message = await within_deadline(anext(messages), ctx)
        except StopAsyncIteration:
            return
        yield message
