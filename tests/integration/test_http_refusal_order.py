"""The order of refusals (README, "Errors"): credentials, then the method's scope and the
caller's rate limit, then the request itself. A request whose body does not decode is refused
INVALID_ARGUMENT only once the caller's bucket has paid for it — the bucket's state goes back
with the refusal, and an empty bucket refuses it RATE_LIMITED — so a valid key cannot send
malformed calls without limit; a key without the method's scope is PERMISSION_DENIED whatever
its body. A body too large is still refused before the rate limit, which it does not spend.
On every protocol: HTTP/JSON, Connect JSON and binary, gRPC-Web, native gRPC."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from support.gateway_process import GatewayProcess
from tradewire.core.auth.api_keys import hash_key

PROTOCOLS = ("http", "connect-json", "connect-proto", "grpc-web", "grpc")
SERVICE = "/tradewire.v1.TradeExecutionService/"
BURST = 3
TOO_LARGE = 70_000  # past the test gateway's max_body_bytes (64 KiB)
# One caller (one bucket) per protocol: each test spends its own caller's burst.
CALLERS = {protocol: f"tw_order{n:03d}_" + "q" * 40 for n, protocol in enumerate(PROTOCOLS)}
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def callers_config() -> str:
    return "".join(f'[[auth.api_keys]]\nprefix = "{key[:11]}"\nsha256 = "{hash_key(key)}"\n'
                   f'owner = "order-{protocol}"\nscopes = ["read", "trade:paper"]\n'
                   for protocol, key in CALLERS.items())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A gateway whose buckets hold BURST calls and do not refill during the tests."""
    process = GatewayProcess(tmp_path_factory.mktemp("refusal-order"), extra_config=callers_config(), env={
        "TRADEWIRE_LIMITS__BURST": str(BURST), "TRADEWIRE_LIMITS__REQUESTS_PER_S": "0.001"})
    process.start()
    yield process
    assert process.stop() == 0


@dataclass
class Answer:
    code: str  # the canonical code's name
    reason: str
    headers: dict[str, str]  # response headers (native gRPC: trailers)


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def execute_trade(protocol: str, message: bytes) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of an ExecuteTrade on an HTTP listener protocol, ``message`` as
    that protocol encodes its request."""
    if protocol == "http":
        return "/v1/trades", {"content-type": "application/json"}, message
    if protocol in ("connect-json", "connect-proto"):
        media = "application/json" if protocol == "connect-json" else "application/proto"
        return SERVICE + "ExecuteTrade", {"content-type": media, "connect-protocol-version": "1"}, message
    return SERVICE + "ExecuteTrade", {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}, \
        _frame(message)


def malformed(protocol: str) -> bytes:
    """An ExecuteTrade message that does not decode: an unknown JSON field, or bytes that are no protobuf."""
    return b'{"bogus": 1}' if protocol in ("http", "connect-json") else b"\xff\xff\xff\xff"


def _reason(status: status_pb2.Status) -> str:
    info = error_details_pb2.ErrorInfo()
    return next((info.reason for detail in status.details if detail.Unpack(info)), "")


def _unbase64(text: str) -> bytes:
    """Base64 as the protocols send it: padding left out."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _grpc_web_trailers(response: httpx.Response) -> dict[str, str]:
    """A gRPC-Web answer's status: in its headers (trailers-only) or its trailer frame."""
    trailers = dict(response.headers)
    body = response.content
    at = 0
    while at + 5 <= len(body):
        flags, size = body[at], int.from_bytes(body[at + 1:at + 5], "big")
        if flags & 0x80:
            for line in body[at + 5:at + 5 + size].decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name:
                    trailers[name.strip().lower()] = value.strip()
        at += 5 + size
    return trailers


def answer_of(protocol: str, response: httpx.Response) -> Answer:
    headers = dict(response.headers)
    if protocol == "grpc-web":
        trailers = _grpc_web_trailers(response)
        status = status_pb2.Status.FromString(_unbase64(trailers.get("grpc-status-details-bin", "")))
        assert unquote(trailers.get("grpc-message", "")), trailers
        return Answer(CODE_NAMES[int(trailers["grpc-status"])], _reason(status), headers)
    document = response.json()
    if protocol == "http":
        reasons = [d.get("reason", "") for d in document["details"] if d["@type"].endswith("ErrorInfo")]
        return Answer(CODE_NAMES[document["code"]], reasons[0], headers)
    reasons = [error_details_pb2.ErrorInfo.FromString(_unbase64(d["value"])).reason
               for d in document["details"] if d["type"] == "google.rpc.ErrorInfo"]
    return Answer(document["code"].upper(), reasons[0], headers)


async def call(gateway: GatewayProcess, protocol: str, key: str, message: bytes) -> Answer:
    """An ExecuteTrade carrying ``message`` as it came (no client encodes it), refused."""
    if protocol == "grpc":
        return await grpc_call(gateway, key, message)
    path, headers, body = execute_trade(protocol, message)
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=20) as http:
        response = await http.post(path, headers={**headers, "authorization": f"Bearer {key}"}, content=body)
    assert response.status_code != 200 or protocol == "grpc-web", response.text
    return answer_of(protocol, response)


async def grpc_call(gateway: GatewayProcess, key: str, message: bytes) -> Answer:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(SERVICE + "ExecuteTrade")(message, metadata=(("authorization", f"Bearer {key}"),))
    trailers = {k: v for k, v in refused.value.trailing_metadata() or () if isinstance(k, str)}
    status = status_pb2.Status.FromString(trailers.pop("grpc-status-details-bin", b""))
    return Answer(refused.value.code().name, _reason(status), {k: v for k, v in trailers.items() if isinstance(v, str)})


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_malformed_body_is_refused_after_the_rate_limit_it_counts_against(gateway, protocol):
    key = CALLERS[protocol]
    too_large = await call(gateway, protocol, key, b"x" * TOO_LARGE)
    assert (too_large.code, too_large.reason) == ("RESOURCE_EXHAUSTED", "PAYLOAD_TOO_LARGE"), too_large
    assert not set(RATE_LIMIT_HEADERS) & set(too_large.headers), too_large.headers  # refused before the limit
    for left in reversed(range(BURST)):
        refused = await call(gateway, protocol, key, malformed(protocol))
        assert (refused.code, refused.reason) == ("INVALID_ARGUMENT", "MALFORMED_REQUEST"), refused
        assert refused.headers["ratelimit-limit"] == str(BURST), refused.headers
        assert refused.headers["ratelimit-remaining"] == str(left), refused.headers
    limited = await call(gateway, protocol, key, malformed(protocol))
    assert (limited.code, limited.reason) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED"), limited
    assert limited.headers["ratelimit-remaining"] == "0" and int(limited.headers["retry-after"]) >= 1, limited.headers


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("body", ["malformed", "too large"])
async def test_a_key_without_the_scope_is_permission_denied_whatever_the_body(gateway, protocol, body):
    message = malformed(protocol) if body == "malformed" else b"x" * TOO_LARGE
    refused = await call(gateway, protocol, gateway.key("reader"), message)
    assert (refused.code, refused.reason) == ("PERMISSION_DENIED", "PERMISSION_DENIED"), refused
    assert not set(RATE_LIMIT_HEADERS) & set(refused.headers), refused.headers  # refused before the limit
