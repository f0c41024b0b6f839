"""JSON-RPC envelope and HTTP limits as Agave's RPC server applies them.

* A request without an ``id`` member is a notification (JSON-RPC 2.0 §4.1): it gets no
  answer. A body of notifications only gets an empty HTTP 200; in a batch they leave no
  element. ``"id": null`` is an ordinary request, answered with ``id`` null. Agave runs no
  RPC method for a notification, so a notified ``requestAirdrop`` moves no lamports.
* A body over 50 KiB (Agave's ``MAX_REQUEST_BODY_SIZE``) gets HTTP 413, whether it declares
  its length or comes chunked, and the 413 comes before the rest of the body is read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from devnet_support import Api
from solders.keypair import Keypair

KIB = 1024
LIMIT = 50 * KIB


def padded(request: dict[str, Any], size: int) -> bytes:
    """``request`` as JSON, padded with trailing whitespace to exactly ``size`` bytes."""
    body = json.dumps(request).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def post(api: Api, body: Any, path: str = "/"):
    return await api.http.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


async def raw_exchange(api: Api, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and only part of its body, then read the answer until it is complete."""
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        status_and_headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(
            int(line.split(b":", 1)[1])
            for line in status_and_headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status_and_headers + await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/", "/api/v1/bundles"])
async def test_a_notification_gets_an_empty_200(api: Api, path: str) -> None:
    resp = await post(api, {"jsonrpc": "2.0", "method": "getHealth", "params": []}, path)
    assert resp.status_code == 200
    assert resp.content == b""


async def test_a_batch_of_only_notifications_gets_an_empty_200(api: Api) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "getSlot"},
        {"jsonrpc": "2.0", "method": "noSuchMethod", "params": []},
        {"jsonrpc": "2.0", "method": "getBalance", "params": ["not a pubkey"]},
    ]
    resp = await post(api, batch)
    assert resp.status_code == 200
    assert resp.content == b""


async def test_a_batch_answers_only_its_requests_in_order(api: Api) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
        {"jsonrpc": "2.0", "method": "getHealth"},
        {"jsonrpc": "2.0", "id": "two", "method": "noSuchMethod"},
        {"jsonrpc": "2.0", "method": "noSuchMethod"},
        {"jsonrpc": "2.0", "id": None, "method": "getHealth"},
    ]
    resp = await post(api, batch)
    assert resp.status_code == 200
    answers = resp.json()
    assert [a["id"] for a in answers] == [1, "two", None]
    assert answers[0]["result"] == "ok"
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"] == "ok"


async def test_a_null_id_is_a_request_not_a_notification(api: Api) -> None:
    resp = await post(api, {"jsonrpc": "2.0", "id": None, "method": "getHealth"})
    assert resp.status_code == 200
    assert resp.json() == {"jsonrpc": "2.0", "result": "ok", "id": None}


async def test_an_invalid_request_without_id_is_still_answered_with_a_null_id(api: Api) -> None:
    resp = await post(api, {"jsonrpc": "2.0", "params": []})
    assert resp.status_code == 200
    assert resp.json() == {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}, "id": None}


async def test_a_notified_method_is_not_run(api: Api) -> None:
    owner = Keypair().pubkey()
    resp = await post(api, {"jsonrpc": "2.0", "method": "requestAirdrop", "params": [str(owner), 10**9]})
    assert resp.status_code == 200 and resp.content == b""
    assert await api.balance(owner) == 0
    airdrop = await api.rpc_raw("requestAirdrop", [str(owner), 10**9])
    assert "result" in airdrop, airdrop


@pytest.mark.parametrize("size", [49 * KIB, LIMIT])
async def test_a_body_up_to_50_kib_is_processed(api: Api, size: int) -> None:
    body = padded({"jsonrpc": "2.0", "id": 7, "method": "getHealth"}, size)
    resp = await api.http.post("/", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200
    assert resp.json() == {"jsonrpc": "2.0", "result": "ok", "id": 7}


@pytest.mark.parametrize("size", [LIMIT + 1, 51 * KIB, 4 * 1024 * KIB])
async def test_a_body_over_50_kib_gets_413(api: Api, size: int) -> None:
    body = padded({"jsonrpc": "2.0", "id": 7, "method": "getHealth"}, size)
    resp = await api.http.post("/", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert "exceeds" in resp.text
    assert await api.rpc("getHealth") == "ok"  # the connection and the server carry on


async def chunks(body: bytes, size: int = 4 * KIB) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


async def test_a_chunked_body_is_bounded_too(api: Api) -> None:
    request = {"jsonrpc": "2.0", "id": 8, "method": "getHealth"}
    small = await api.http.post("/", content=chunks(padded(request, 49 * KIB)),
                                headers={"content-type": "application/json"})
    assert small.request.headers.get("transfer-encoding") == "chunked"
    assert small.status_code == 200 and small.json()["result"] == "ok"

    large = await api.http.post("/", content=chunks(padded(request, 51 * KIB)),
                                headers={"content-type": "application/json"})
    assert large.request.headers.get("transfer-encoding") == "chunked"
    assert large.status_code == 413
    assert await api.rpc("getHealth") == "ok"


async def test_an_oversized_declared_length_gets_413_before_the_body_is_sent(api: Api) -> None:
    head = (b"POST / HTTP/1.1\r\nhost: devnet\r\ncontent-type: application/json\r\n"
            b"content-length: 100000000\r\n\r\n")
    answer = await raw_exchange(api, head, b"")
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_an_oversized_chunked_body_gets_413_before_it_ends(api: Api) -> None:
    head = (b"POST / HTTP/1.1\r\nhost: devnet\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    chunk = b"[" + b" " * (51 * KIB)
    answer = await raw_exchange(api, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))  # no last chunk: never ends
    assert answer.startswith(b"HTTP/1.1 413 ")
