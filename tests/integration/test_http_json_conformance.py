"""HTTP/JSON conformance on a real gateway, where an exploratory pass against grpc-gateway,
Envoy's transcoder and google/api/http.proto found the gateway apart from them: a status stream
asked for as SSE in another letter case, and a request id whose '%' starts no escape."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture(scope="module")
def finished_trade(gateway) -> str:
    request_id = f"conf-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{gateway.http_url}/v1/trades", timeout=30, json={
        "requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
        "amount": "0.01", "slippageBps": 50}, headers={"authorization": f"Bearer {gateway.key('bob')}"})
    assert response.status_code == 200, response.text
    return request_id


@pytest.mark.parametrize("accept", ["TEXT/EVENT-STREAM", "Text/Event-Stream; charset=utf-8"])
def test_a_status_stream_asked_for_as_sse_in_any_letter_case_is_sse(gateway, finished_trade, accept):
    # media types are case-insensitive (RFC 9110): this caller asked for SSE, not NDJSON
    response = httpx.get(f"{gateway.http_url}/v1/trades/{finished_trade}/status", timeout=30,
                         headers={"authorization": f"Bearer {gateway.key('bob')}", "accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith("id: 1\ndata: {") and response.text.endswith("event: end\ndata: {}\n\n")


def test_a_status_stream_refusing_sse_with_an_upper_case_q_gets_ndjson(gateway, finished_trade):
    response = httpx.get(f"{gateway.http_url}/v1/trades/{finished_trade}/status", timeout=30, headers={
        "authorization": f"Bearer {gateway.key('bob')}", "accept": "text/event-stream;Q=0, application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert json.loads(response.text.splitlines()[0])["result"]["sequence"] == "1"


async def raw_get(gateway, target: str, key: str) -> tuple[int, dict]:
    """GET ``target`` exactly as written (an HTTP client re-encodes a '%' that starts no escape)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n"
                     "connection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("target", ["/v1/trades/a%zz", "/v1/trades/abc%", "/v1/trades/a%4/status",
                                    "/v1/trades/%%41"])
async def test_a_malformed_percent_escape_in_the_path_is_refused_before_the_method(gateway, target):
    # grpc-gateway and Envoy refuse it as a malformed URL; read as it stands, "a%zz" reached the
    # method as that request id (and another field would have kept it)
    status, body = await raw_get(gateway, target, gateway.key("bob"))
    assert status == 400, body
    assert body["code"] == 3 and body["details"][0]["reason"] == "MALFORMED_REQUEST", body
    assert body["message"] == "the URL path is not valid percent-encoded UTF-8", body


async def test_a_well_formed_escape_in_the_request_id_still_finds_the_trade(gateway, finished_trade):
    escaped = "".join(f"%{ord(c):02X}" if c == "-" else c for c in finished_trade)
    status, body = await raw_get(gateway, f"/v1/trades/{escaped}", gateway.key("bob"))
    assert status == 200, body
    assert body["requestId"] == finished_trade
