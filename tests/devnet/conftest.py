"""Fixtures for the devnet tests: one in-process devnet on a free port (20 ms slots, so
confirmation is quick), shared by the session; every test funds its own fresh wallets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from devnet_support import Api
from solana.rpc.async_api import AsyncClient

from tradewire.devnet import Devnet, DevnetConfig, DevnetServer


@pytest.fixture(scope="session")
def devnet_config() -> DevnetConfig:
    return DevnetConfig(slot_ms=20, finalize_depth=4)


@pytest_asyncio.fixture(scope="session")
async def server(devnet_config: DevnetConfig) -> AsyncIterator[DevnetServer]:
    srv = DevnetServer(Devnet(devnet_config))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture(scope="session")
async def api(server: DevnetServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.rpc_url, timeout=10) as http:
        yield Api(server, http)


@pytest_asyncio.fixture(scope="session")
async def client(server: DevnetServer) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(server.rpc_url, timeout=10)
    try:
        yield c
    finally:
        await c.close()
