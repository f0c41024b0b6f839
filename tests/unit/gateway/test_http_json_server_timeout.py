"""X-Server-Timeout, the HTTP/JSON call's deadline: which values are taken, how a unary call
and a server stream are cut off when it passes."""

import asyncio
import json

import pytest

from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, TradewireError
from tradewire.gateway.deadlines import within_deadline
from tradewire.gateway.http_json.deadline import HEADER, requested_deadline
from tradewire.gateway.http_json.streaming import Framer, serve_stream
from tradewire.v1 import service_pb2

STARTED = 1000.0


@pytest.mark.parametrize("value,seconds", [("30", 30.0), ("0.5", 0.5), ("0.000000001", 1e-9), ("007", 7.0),
                                           ("9999999.999999999", 9999999.999999999)])
def test_a_positive_decimal_number_of_seconds_sets_the_deadline(value, seconds):
    assert requested_deadline({HEADER: value}, STARTED) == pytest.approx(STARTED + seconds)


def test_without_the_header_there_is_no_deadline():
    assert requested_deadline({"grpc-timeout": "1S"}, STARTED) is None


@pytest.mark.parametrize("value", ["", "0", "00.00", "-1", "+1", "1e3", "inf", "nan", "1.", ".5", "1s", " 1",
                                   "1, 1", "10000000", "1.0000000001", "١"])
def test_anything_else_is_invalid_argument_naming_the_header(value):
    with pytest.raises(TradewireError) as refused:
        requested_deadline({HEADER: value}, STARTED)
    error = refused.value
    assert (error.code, error.reason) == (Code.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert [v.field for v in error.field_violations] == [HEADER] and error.message.startswith(f"{HEADER}: ")


def context(timeout: float | None) -> CallContext:
    ctx = CallContext(protocol=Protocol.HTTP_JSON, method="GetTrade", headers={})
    ctx.deadline = None if timeout is None else ctx.started + timeout
    return ctx


async def test_a_call_still_running_at_its_deadline_is_cancelled_and_deadline_exceeded():
    cancelled = asyncio.Event()

    async def never_done():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TradewireError) as cut:
        await within_deadline(never_done(), context(0.01))
    assert cut.value.reason == "DEADLINE_EXCEEDED" and cancelled.is_set()


async def test_a_call_within_its_deadline_or_without_one_returns_its_answer():
    async def answer():
        return "answer"

    assert await within_deadline(answer(), context(30)) == "answer"
    assert await within_deadline(answer(), context(None)) == "answer"


async def test_a_timeout_error_of_the_call_itself_is_not_taken_for_its_deadline():
    async def failing():
        raise TimeoutError("an upstream's")

    with pytest.raises(TimeoutError, match="an upstream's"):
        await within_deadline(failing(), context(30))


# -- server streams ----------------------------------------------------------------------------


class Recorder:
    """An ASGI send that keeps what it is given; a receive that never reports a disconnect."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    @staticmethod
    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


async def _stream(messages: list, closed: asyncio.Event):
    try:
        for message in messages:
            yield message
        await asyncio.Event().wait()  # then nothing more, ever
    finally:
        closed.set()


async def _serve(messages: list, timeout: float) -> tuple[Recorder, list, asyncio.Event]:
    response, reported, closed = Recorder(), [], asyncio.Event()
    await serve_stream(lambda: _stream(messages, closed), Framer(sse=False, has_sequence=False), response.send,
                       response.receive, {"x-request-id": "r-1"}, lambda err, exc: reported.append(err), timeout)
    return response, reported, closed


async def test_a_stream_open_at_its_deadline_ends_with_deadline_exceeded():
    response, reported, closed = await _serve([service_pb2.HealthCheckResponse()], 0.05)
    assert response.messages[0]["status"] == 200
    lines = [json.loads(line) for line in response.body.splitlines()]
    assert "result" in lines[0] and lines[-1]["error"]["code"] == Code.DEADLINE_EXCEEDED.value
    assert response.messages[-1].get("more_body") is False  # the response is complete
    assert [e.reason for e in reported] == ["DEADLINE_EXCEEDED"] and closed.is_set()


async def test_a_stream_without_a_first_message_by_its_deadline_is_504():
    response, reported, closed = await _serve([], 0.05)
    assert response.messages[0]["status"] == 504
    assert (b"x-request-id", b"r-1") in response.messages[0]["headers"]
    assert json.loads(response.body)["code"] == Code.DEADLINE_EXCEEDED.value
    assert [e.reason for e in reported] == ["DEADLINE_EXCEEDED"] and closed.is_set()
