"""A binding without a body (every GET) takes its fields from the URL path and query string:
a request that sends a body anyway is refused INVALID_ARGUMENT, saying so — not answered as if
the body were not there (a default page instead of the one asked for) — and a body past the
size limit is 413, as on a POST."""

from __future__ import annotations

import httpx
import pytest

TOO_LARGE = 70_000  # past the test gateway's max_body_bytes (64 KiB)


async def get(gateway, path: str, **options) -> httpx.Response:
    headers = {"authorization": f"Bearer {gateway.key('alice')}", **options.pop("headers", {})}
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=20) as http:
        return await http.request("GET", path, headers=headers, **options)


def reason_of(response: httpx.Response) -> str:
    return next(d["reason"] for d in response.json()["details"] if d["@type"].endswith("ErrorInfo"))


@pytest.mark.parametrize("path", ["/v1/trades", "/v1/market", "/v1/health", "/v1/trades/some-trade"])
async def test_a_body_on_a_get_is_refused_naming_where_the_fields_go(gateway, path):
    response = await get(gateway, path, content=b'{"pageSize":1}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and reason_of(response) == "MALFORMED_REQUEST", response.text
    message = response.json()["message"]
    assert "path and query" in message and "no request body" in message, message


async def test_a_body_on_a_status_stream_is_refused_before_it_opens(gateway):
    response = await get(gateway, "/v1/trades/some-trade/status", content=b"{}",
                         headers={"content-type": "application/json", "accept": "text/event-stream"})
    assert response.status_code == 400 and reason_of(response) == "MALFORMED_REQUEST", response.text


async def chunks(body: bytes, count: int = 4):
    """``body`` sent chunked (no content-length: the limit is found while reading)."""
    size = -(-len(body) // count)
    for at in range(0, len(body), size):
        yield body[at:at + size]


@pytest.mark.parametrize("sent", ["with content-length", "chunked"])
async def test_a_body_past_the_limit_on_a_get_is_413(gateway, sent):
    body = b"x" * TOO_LARGE
    response = await get(gateway, "/v1/market", content=body if sent == "with content-length" else chunks(body))
    assert response.status_code == 413 and reason_of(response) == "PAYLOAD_TOO_LARGE", response.text


async def test_a_get_without_a_body_is_answered(gateway):
    paged = await get(gateway, "/v1/trades", params={"pageSize": 1})
    assert paged.status_code == 200, paged.text
    empty = await get(gateway, "/v1/market", content=b"", headers={"content-length": "0"})
    assert empty.status_code == 200, empty.text
