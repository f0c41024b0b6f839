"""Server streams: SSE and NDJSON framing, mid-stream errors, resume, disconnects.

Framing is checked through the in-process ASGI transport (which buffers); incremental
delivery and client disconnects through uvicorn on a real socket.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from http_json_support import status
from tradewire.core.errors import TradewireError
from tradewire.v1 import trade_pb2

SSE = {"accept": "text/event-stream"}


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event: dict = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            event[name] = value
        events.append(event)
    return events


async def test_ndjson_framing_is_grpc_gateway_shape(client, fake):
    fake.stream_script = [status(1), status(2, terminal=True)]
    r = await client.get("/v1/trades/r-1/status")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["x-correlation-id"] == "corr-1"
    lines = r.text.split("\n")
    assert lines[-1] == ""
    docs = [json.loads(line) for line in lines[:-1]]
    assert [d["result"]["sequence"] for d in docs] == ["1", "2"]
    assert docs[0]["result"]["stage"] == "TRADE_STATUS_QUOTED"
    assert docs[1]["result"]["terminal"] is True and docs[0]["result"]["terminal"] is False
    assert fake.last.request.request_id == "r-1"
    assert fake.stream_closed.is_set()


async def test_ndjson_mid_stream_error(client, fake):
    fake.stream_script = [status(1), TradewireError("UPSTREAM_UNAVAILABLE", "rpc node down", retry_after_s=3)]
    r = await client.get("/v1/trades/r-1/status")
    assert r.status_code == 200
    docs = [json.loads(line) for line in r.text.splitlines()]
    assert list(docs[0]) == ["result"]
    assert docs[1]["error"]["code"] == 14
    assert docs[1]["error"]["message"] == "rpc node down"
    assert docs[1]["error"]["details"][0]["reason"] == "UPSTREAM_UNAVAILABLE"
    assert len(docs) == 2


async def test_sse_framing_ids_error_and_end(client, fake):
    fake.stream_script = [status(1), status(0, kind=trade_pb2.STATUS_KIND_HEARTBEAT), status(2),
                          TradewireError("CIRCUIT_OPEN", "executor circuit open")]
    r = await client.get("/v1/trades/r-1/status", headers=SSE)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-ratelimit-remaining"] == "41"
    assert r.text.endswith("\n\n")
    events = parse_sse(r.text)
    assert events[0]["id"] == "1" and json.loads(events[0]["data"])["sequence"] == "1"
    assert "id" not in events[1]  # a heartbeat without a sequence must not reset Last-Event-ID
    assert json.loads(events[1]["data"])["kind"] == "STATUS_KIND_HEARTBEAT"
    assert events[2]["id"] == "2"
    assert events[3]["event"] == "error"
    err = json.loads(events[3]["data"])
    assert err["code"] == 14 and err["details"][0]["reason"] == "CIRCUIT_OPEN"
    assert events[4] == {"event": "end", "data": "{}"}
    assert len(events) == 5


async def test_sse_clean_end(client, fake):
    fake.stream_script = [status(1, terminal=True)]
    r = await client.get("/v1/trades/r-1/status", headers={"accept": "text/event-stream, */*;q=0.1"})
    events = parse_sse(r.text)
    assert [e.get("event") for e in events] == [None, "end"]


async def test_sse_refused_with_q_zero_falls_back_to_ndjson(client, fake):
    fake.stream_script = [status(1)]
    r = await client.get("/v1/trades/r-1/status", headers={"accept": "text/event-stream;q=0, application/json"})
    assert r.headers["content-type"] == "application/x-ndjson"


async def test_empty_stream(client, fake):
    fake.stream_script = []
    r = await client.get("/v1/trades/r-1/status", headers=SSE)
    assert r.status_code == 200
    assert parse_sse(r.text) == [{"event": "end", "data": "{}"}]
    r = await client.get("/v1/trades/r-1/status")
    assert r.status_code == 200 and r.text == ""


async def test_error_before_first_message_is_an_http_error(client, fake, errors_seen):
    fake.stream_script = [TradewireError("TRADE_NOT_FOUND", "no trade r-1")]
    r = await client.get("/v1/trades/r-1/status", headers=SSE)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-correlation-id"] == "corr-1"
    assert r.json()["details"][0]["reason"] == "TRADE_NOT_FOUND"
    assert errors_seen[-1][0].reason == "TRADE_NOT_FOUND"


async def test_error_raised_by_the_call_itself(client, fake):
    fake.answers["StreamExecutionStatus"] = TradewireError("AUTH_MISSING", "credentials required")
    r = await client.get("/v1/trades/r-1/status")
    assert r.status_code == 401
    assert r.headers["x-correlation-id"] == "corr-1"


async def test_unexpected_mid_stream_exception_is_generic(client, fake):
    fake.stream_script = [status(1), KeyError("secret-key-material")]
    r = await client.get("/v1/trades/r-1/status")
    docs = [json.loads(line) for line in r.text.splitlines()]
    assert docs[1] == {"error": {"code": 13, "message": "internal error", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INTERNAL", "domain": "tradewire"}]}}
    assert "secret" not in r.text


@pytest.mark.parametrize(
    "url, headers, expected",
    [
        ("/v1/trades/r-1/status", {"last-event-id": "7", **SSE}, 8),
        # an EventSource reconnects to the URL it opened: what it saw since is not sent again
        ("/v1/trades/r-1/status?fromSequence=3", {"last-event-id": "7", **SSE}, 8),
        ("/v1/trades/r-1/status?fromSequence=9", {"last-event-id": "7", **SSE}, 9),  # a later start stands
        ("/v1/trades/r-1/status", {"last-event-id": "", **SSE}, 0),  # empty: nothing seen yet
        ("/v1/trades/r-1/status?from_sequence=0", {"last-event-id": "7"}, 8),
        ("/v1/trades/r-1/status", SSE, 0),
    ],
)
async def test_last_event_id_resumes(client, fake, url, headers, expected):
    fake.stream_script = []
    r = await client.get(url, headers=headers)
    assert r.status_code == 200
    assert fake.last.request.from_sequence == expected


async def test_bad_last_event_id_is_400(client, fake):
    r = await client.get("/v1/trades/r-1/status", headers={"last-event-id": "seven", **SSE})
    assert r.status_code == 400
    assert "Last-Event-ID" in r.json()["message"]
    assert fake.calls == []


# --- over a real socket (uvicorn) ----------------------------------------------------------------


async def test_sse_is_delivered_incrementally(live_url, fake):
    gate = asyncio.Event()
    fake.stream_script = [status(1), gate, status(2, terminal=True)]
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as c:
        async with c.stream("GET", "/v1/trades/r-1/status", headers=SSE) as r:
            assert r.status_code == 200
            assert r.headers["x-correlation-id"] == "corr-1"
            lines = r.aiter_lines()
            # the first event arrives while the stream is still blocked on the gate
            first = [await asyncio.wait_for(anext(lines), 5) for _ in range(3)]
            assert first[0] == "id: 1" and first[1].startswith("data: ") and first[2] == ""
            assert not gate.is_set()
            gate.set()
            rest = [line async for line in lines]
    assert rest[:2] == ["id: 2", rest[1]] and json.loads(rest[1][6:])["terminal"] is True
    assert "event: end" in rest


async def test_ndjson_over_socket_with_mid_stream_error(live_url, fake):
    fake.stream_script = [status(1), TradewireError("SHUTTING_DOWN", "bye")]
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as c:
        r = await c.get("/v1/trades/r-1/status")
    assert r.status_code == 200
    docs = [json.loads(line) for line in r.text.splitlines()]
    assert docs[0]["result"]["sequence"] == "1" and docs[1]["error"]["details"][0]["reason"] == "SHUTTING_DOWN"


def _stream_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") in ("_pump", "_wait_disconnect")]


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_client_disconnect_closes_the_iterator_and_leaks_no_task(live_url, fake):
    never = asyncio.Event()
    fake.stream_script = [status(1), never]
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as c:
        async with c.stream("GET", "/v1/trades/r-1/status", headers=SSE) as r:
            lines = r.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == "id: 1"
            assert _stream_tasks()
        # leaving the block closes the connection mid-stream
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    await _until(lambda: not _stream_tasks())


async def test_disconnect_before_first_message_closes_the_iterator(live_url, fake):
    never = asyncio.Event()
    fake.stream_script = [never]

    async def request():
        async with httpx.AsyncClient(base_url=live_url, timeout=10) as c:
            await c.get("/v1/trades/r-1/status")

    task = asyncio.create_task(request())
    await asyncio.wait_for(fake.stream_started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    await _until(lambda: not _stream_tasks())


async def test_encoding_failure_mid_stream_closes_the_iterator_at_once(client, fake, caplog):
    fake.stream_script = [status(1), "not a message", status(2)]
    r = await client.get("/v1/trades/r-1/status", headers=SSE)
    events = parse_sse(r.text)
    assert [e.get("event") for e in events] == [None, "error", "end"]
    assert json.loads(events[1]["data"])["message"] == "internal error"
    assert fake.stream_closed.is_set()  # closed by the adapter, not left to the garbage collector
