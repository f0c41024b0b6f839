"""The core in this process (``build_core``, as ``serve`` builds it) with one API key, for tests
that call TradeService directly, without a transport."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tradewire.core.auth.api_keys import hash_key
from tradewire.core.config import Settings
from tradewire.core.context import CallContext, Protocol
from tradewire.gateway.assembly import build_core


@asynccontextmanager
async def core_with_key(data_dir: Path, key: str, owner: str, scopes: Iterable[str] = ("read", "trade:paper"),
                        **sections: Any) -> AsyncIterator[Any]:
    """A started core whose one API key is ``key`` (owned by ``owner``); ``sections``: more
    settings by section (``limits={...}``, ``paper={...}``). Webhooks off unless given."""
    settings = Settings.model_validate({
        "storage": {"data_dir": str(data_dir)},
        "auth": {"api_keys": [{"prefix": key[:11], "sha256": hash_key(key), "owner": owner, "scopes": list(scopes)}]},
        "webhooks": {"enabled": False},
        **sections,
    })
    core = build_core(settings)
    await core.start()
    try:
        yield core
    finally:
        await core.close()


@asynccontextmanager
async def core_maker(data_dir: Path, key: str, owner: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await make(**paper)``: another started core (a data folder of its own) with the one key
    and those ``[paper]`` settings; every core made is closed at the end."""
    made = itertools.count()
    async with contextlib.AsyncExitStack() as cores:
        async def make(**paper: Any) -> Any:
            return await cores.enter_async_context(core_with_key(data_dir / str(next(made)), key, owner, paper=paper))
        yield make


def call_with_key(key: str, method: str) -> CallContext:
    """The context of a native gRPC call of ``method`` carrying ``key``."""
    return CallContext(protocol=Protocol.GRPC, method=method, headers={"authorization": f"Bearer {key}"},
                       peer="127.0.0.1:1")
