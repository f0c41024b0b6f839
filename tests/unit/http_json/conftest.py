"""Fixtures for the HTTP/JSON adapter tests (the fake service lives in http_json_support)."""

from __future__ import annotations

import httpx
import pytest

from http_json_support import MAX_BODY, SERVICE, FakeService, serve
from tradewire.gateway.http_json import build_http_json_app


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def errors_seen() -> list:
    return []


@pytest.fixture
def app(fake, errors_seen):
    return build_http_json_app(
        fake, SERVICE, max_body_bytes=MAX_BODY, on_error=lambda err, ctx: errors_seen.append((err, ctx))
    )


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        yield c


@pytest.fixture
async def live_url(app):
    async with serve(app) as url:
        yield url
