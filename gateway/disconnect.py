"""HTTP calls that stop when their client goes away (ASGI's ``http.disconnect``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Receive = Callable[[], Awaitable[dict]]


class ClientGone(Exception):
    """The client disconnected before its call was answered: nothing more is sent."""


async def wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(call: Awaitable[T], receive: Receive, answered: Callable[[], bool] = lambda: False) -> T:
    """Await a unary ``call`` whose request body is already read; cancel it if the client
    disconnects before ``answered()`` (a trade not yet sent is then stopped, see core/trades.py),
    and raise ClientGone."""
    task = asyncio.ensure_future(call)
    gone = False

    async def watch() -> None:
        nonlocal gone
        await wait_disconnect(receive)
        if not task.done() and not answered():
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():  # this request itself is cancelled (shutdown): pass it on
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        raise ClientGone() from None
    except Exception:  # (gRPC-Web turns the cancellation into a CANCELED error: nobody is listening)
        if gone:
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
