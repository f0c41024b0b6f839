"""Connect and gRPC-Web answer DEADLINE_EXCEEDED only when the call's own deadline passes: a
TimeoutError the service raises for reasons of its own is an unexpected error, INTERNAL with
nothing of the exception in the answer, on a unary call and on a stream. The deadline counts
from the request's arrival, as on gRPC and HTTP/JSON."""

import asyncio
import contextlib
import json
import struct

import httpx
import pytest

from tradewire.gateway.connect_app import build_connect_app
from tradewire.v1 import service_pb2

SERVICE = "/tradewire.v1.TradeExecutionService"
OWN_TIMEOUT = "the venue did not answer in 2 s"  # the service's own TimeoutError's text
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
CALL_HEADERS = {"x-request-id": "req-1", "ratelimit-limit": "10", "ratelimit-remaining": "9", "ratelimit-reset": "1"}


class TimingOutService:
    """HealthCheck and StreamExecutionStatus time out on their own; GetMarket runs until the
    call's deadline cuts it off. Each sets the call's response headers first, as core does."""

    async def HealthCheck(self, request, ctx):
        ctx.response_headers.update(CALL_HEADERS)
        raise TimeoutError(OWN_TIMEOUT)

    async def StreamExecutionStatus(self, request, ctx):
        ctx.response_headers.update(CALL_HEADERS)
        raise TimeoutError(OWN_TIMEOUT)
        yield  # an async generator, as a stream is

    async def GetMarket(self, request, ctx):
        ctx.response_headers.update(CALL_HEADERS)
        await asyncio.Event().wait()

    def __getattr__(self, name):  # the RPCs these tests do not call
        async def uncalled(request, ctx):
            raise AssertionError(f"{name} is not called here")
        return uncalled


@pytest.fixture
async def http():
    app = build_connect_app(TimingOutService(), max_body_bytes=1 << 16)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://connect") as client:
        yield client


def _frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def _last_frame(body: bytes) -> bytes:
    """The payload of an enveloped body's last frame: a Connect stream's end, gRPC-Web's trailers."""
    payload, i = b"", 0
    while i + 5 <= len(body):
        size = struct.unpack(">I", body[i + 1:i + 5])[0]
        payload, i = body[i + 5:i + 5 + size], i + 5 + size
    return payload


def _nothing_of_the_exception(text: str) -> None:
    for leak in ("Traceback", "TimeoutError", OWN_TIMEOUT):
        assert leak not in text, text


@pytest.mark.parametrize("deadline", [{}, {"connect-timeout-ms": "60000"}], ids=["no deadline", "far deadline"])
async def test_a_connect_unary_call_whose_service_times_out_on_its_own_is_internal(http, deadline):
    response = await http.post(f"{SERVICE}/HealthCheck", content=b"{}",
                               headers={"content-type": "application/json", **deadline})
    assert (response.status_code, response.json()["code"]) == (500, "internal"), response.text
    _nothing_of_the_exception(response.text)
    assert response.headers["x-request-id"] == "req-1"


async def test_a_connect_stream_whose_service_times_out_on_its_own_ends_internal(http):
    response = await http.post(f"{SERVICE}/StreamExecutionStatus", content=_frame(b'{"requestId": "t-1"}'),
                               headers={"content-type": "application/connect+json", "connect-timeout-ms": "60000"})
    end = json.loads(_last_frame(response.content))
    assert end["error"]["code"] == "internal", end
    _nothing_of_the_exception(json.dumps(end))


async def test_a_grpc_web_call_whose_service_times_out_on_its_own_is_internal(http):
    response = await http.post(f"{SERVICE}/HealthCheck", content=_frame(b""), headers={**GRPC_WEB, "grpc-timeout": "60S"})
    trailers = _last_frame(response.content).decode()
    assert "grpc-status: 13" in trailers, trailers
    _nothing_of_the_exception(trailers)


async def test_only_the_calls_own_deadline_is_deadline_exceeded_with_the_calls_headers(http):
    response = await http.post(f"{SERVICE}/GetMarket", content=b"{}",
                               headers={"content-type": "application/json", "connect-timeout-ms": "50"})
    assert (response.status_code, response.json()["code"]) == (504, "deadline_exceeded"), response.text
    assert {name: response.headers.get(name) for name in CALL_HEADERS} == CALL_HEADERS


class AuthenticatingFirst(TimingOutService):
    """A service whose pipeline authenticates a call from its headers before its body is read
    (as core's does): the context ConnectCompat makes then is the one the adapter goes on with.
    HealthCheck notes the time its call has left."""

    def __init__(self) -> None:
        self.time_left: list[float | None] = []

    class pipeline:
        @staticmethod
        @contextlib.contextmanager
        def authenticate_first(ctx):
            ctx.authenticated = True
            yield

    async def HealthCheck(self, request, ctx):
        self.time_left.append(ctx.time_remaining())
        return service_pb2.HealthCheckResponse()


async def _slow_upload(body: bytes, uploading_s: float):
    await asyncio.sleep(uploading_s)  # a client on a slow link: its body arrives this much later
    yield body


async def test_a_connect_deadline_counts_from_the_requests_arrival_not_from_its_bodys_end():
    service = AuthenticatingFirst()
    app = build_connect_app(service, max_body_bytes=1 << 16)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://connect") as client:
        response = await client.post(f"{SERVICE}/HealthCheck", content=_slow_upload(b"{}", 0.3),
                                     headers={"content-type": "application/json", "connect-timeout-ms": "5000"})
    assert response.status_code == 200, response.text
    [time_left] = service.time_left
    assert time_left is not None and time_left <= 4.7, time_left  # the 0.3 s upload was part of it
