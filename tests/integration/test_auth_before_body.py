"""Credentials before the body: on the HTTP listener (HTTP/JSON, Connect JSON and proto,
gRPC-Web) a caller without valid credentials — or a peer throttled for failed
authentications — is refused from its headers, before anything it sent is read, inflated or
parsed; it is recorded as before (one auth-attempt row, one request row, the same ids). A
valid caller is authenticated once per call. Native gRPC receives the message with the call,
but decodes it only once the caller is authenticated, and records a refused message alike."""

import asyncio
import base64
import gzip
import json
import uuid
from pathlib import Path
from urllib.parse import unquote

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from support.gateway_process import GatewayProcess
from support.ports import wait_until
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

PROTOCOLS = ["http", "connect-json", "connect-proto", "grpc-web"]
SERVICE = "/tradewire.v1.TradeExecutionService/"
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BAD_KEY = "tw_nobody01_" + "z" * 40
CHALLENGE = 'Bearer realm="tradewire"'
# ~1 MiB of JSON (1.5 KB gzipped): far past the test gateway's 64 KiB limit once inflated.
JSON_BOMB = gzip.compress(b"[" + b"{}," * 350_000 + b"{}]", 9)
ZERO_BOMB = gzip.compress(b"\x00" * (1 << 20), 9)  # not a protobuf message either


def _frame(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(message).to_bytes(4, "big") + message


def trade_dict(request_id: str) -> dict:
    return {"requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
            "amount": "0.01", "slippageBps": 100}


def trade_proto(request_id: str) -> bytes:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100).SerializeToString()


def request(protocol: str, body: bytes, *, gzipped: bool = False) -> tuple[str, dict[str, str], bytes]:
    """path, headers and body of an ExecuteTrade on ``protocol`` (``body`` is its message as
    that protocol encodes it; ``gzipped``: it is already gzip-compressed)."""
    if protocol == "http":
        return "/v1/trades", {"content-type": "application/json",
                              **({"content-encoding": "gzip"} if gzipped else {})}, body
    if protocol == "connect-json":
        return SERVICE + "ExecuteTrade", {"content-type": "application/json", "connect-protocol-version": "1",
                                          **({"content-encoding": "gzip"} if gzipped else {})}, body
    if protocol == "connect-proto":
        return SERVICE + "ExecuteTrade", {"content-type": "application/proto", "connect-protocol-version": "1",
                                          **({"content-encoding": "gzip"} if gzipped else {})}, body
    return SERVICE + "ExecuteTrade", {"content-type": "application/grpc-web+proto", "x-grpc-web": "1",
                                      **({"grpc-encoding": "gzip"} if gzipped else {})}, \
        _frame(body, 1 if gzipped else 0)


def bomb(protocol: str) -> tuple[str, dict[str, str], bytes]:
    return request(protocol, JSON_BOMB if protocol in ("http", "connect-json") else ZERO_BOMB, gzipped=True)


def malformed(protocol: str) -> tuple[str, dict[str, str], bytes]:
    """A body that, parsed, is refused as INVALID_ARGUMENT."""
    if protocol in ("http", "connect-json"):
        return request(protocol, b'{"requestId": "x", "noSuchField": [1, 2, 3]')
    return request(protocol, b"\xff\xff\xff\xff")


def good(protocol: str, request_id: str, *, gzipped: bool = False) -> tuple[str, dict[str, str], bytes]:
    body = json.dumps(trade_dict(request_id)).encode() if protocol in ("http", "connect-json") \
        else trade_proto(request_id)
    return request(protocol, gzip.compress(body) if gzipped else body, gzipped=gzipped)


def credentials(kind: str) -> dict[str, str]:
    return {"none": {}, "bad": {"authorization": f"Bearer {BAD_KEY}"}}[kind]


def outcome(protocol: str, status: int, headers, body: bytes) -> tuple[str, str]:
    """(the call's gRPC status name, its reason), whatever the protocol's error form."""
    if protocol == "grpc-web":
        assert status == 200
        trailers = dict(headers)
        i = 0
        while i + 5 <= len(body):
            flags, size = body[i], int.from_bytes(body[i + 1:i + 5], "big")
            if flags & 0x80:
                for line in body[i + 5:i + 5 + size].decode().split("\r\n"):
                    if line:
                        name, _, value = line.partition(":")
                        trailers[name.strip().lower()] = value.strip()
            i += 5 + size
        code = int(trailers["grpc-status"])
        reason = ""
        if "grpc-status-details-bin" in trailers:
            raw = trailers["grpc-status-details-bin"]
            st = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
            for detail in st.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
        assert unquote(trailers.get("grpc-message", "")) or code == 0
        return _CODE_NAMES[code], reason
    if status == 200:
        return "OK", ""
    document = json.loads(body)
    if protocol == "http":
        reasons = [d.get("reason", "") for d in document.get("details", ()) if d["@type"].endswith("ErrorInfo")]
        return _CODE_NAMES[document["code"]], (reasons or [""])[0]
    reasons = [error_details_pb2.ErrorInfo.FromString(base64.b64decode(d["value"] + "=" * (-len(d["value"]) % 4))).reason
               for d in document.get("details", ()) if d.get("type") == "google.rpc.ErrorInfo"]
    return document["code"].upper(), (reasons or [""])[0]


_CODE_NAMES = {0: "OK", 3: "INVALID_ARGUMENT", 8: "RESOURCE_EXHAUSTED", 16: "UNAUTHENTICATED"}
_HTTP_STATUS = {"UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "INVALID_ARGUMENT": 400}


def audit_rows(gateway, correlation_id: str) -> dict[str, list[dict]]:
    journal = Path(gateway.workdir) / "data" / "audit.jsonl"
    rows: dict[str, list[dict]] = {"tw_auth_attempts": [], "tw_requests": []}
    if journal.exists():
        for line in journal.read_text().splitlines():
            record = json.loads(line)
            if record["table"] in rows and record["columns"].get("correlation_id") == correlation_id:
                rows[record["table"]].append(record)
    return rows


def recorded(gateway, correlation_id: str, *, auth_rows: int) -> tuple[list[dict], dict]:
    """The call's auth-attempt rows (``auth_rows`` of them) and its one request row."""
    wait_until(lambda: len(audit_rows(gateway, correlation_id)["tw_requests"]) >= 1
               and len(audit_rows(gateway, correlation_id)["tw_auth_attempts"]) >= auth_rows,
               what=f"audit rows of {correlation_id}")
    rows = audit_rows(gateway, correlation_id)
    assert len(rows["tw_requests"]) == 1, rows
    assert len(rows["tw_auth_attempts"]) == auth_rows, rows
    return rows["tw_auth_attempts"], rows["tw_requests"][0]


def send(gateway, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    with httpx.Client(base_url=gateway.http_url, timeout=20) as client:
        return client.post(path, headers=headers, content=body)


@pytest.fixture(scope="module")
def throttled_gateway(tmp_path_factory):
    """Every failed authentication from 127.0.0.1 uses up the peer's small budget for good."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("throttled"), env={
        "TRADEWIRE_LIMITS__AUTH_FAILURES_PER_S": "0.001", "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "2"})
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


# -- refused from the headers ------------------------------------------------------------------


@pytest.mark.parametrize("creds", ["none", "bad"])
@pytest.mark.parametrize("hostile", ["bomb", "malformed"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_hostile_body_without_valid_credentials_is_401_unparsed(gateway, protocol, hostile, creds):
    """Parsed, the bomb is 413 and the malformed body 400: a 401 says neither was."""
    path, headers, body = (bomb if hostile == "bomb" else malformed)(protocol)
    corr = f"unread-{protocol}-{hostile}-{creds}-{uuid.uuid4().hex[:6]}"
    response = send(gateway, path, {**headers, **credentials(creds), "x-correlation-id": corr}, body)
    code, reason = outcome(protocol, response.status_code, response.headers.items(), response.content)
    assert (code, reason) == ("UNAUTHENTICATED", "AUTH_MISSING" if creds == "none" else "AUTH_INVALID")
    if protocol != "grpc-web":
        assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["x-correlation-id"] == corr
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["symbols"]["outcome"] == "failure"
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"] == response.headers["x-request-id"]
    assert call["symbols"]["code"] == "UNAUTHENTICATED" and call["symbols"]["method"] == "ExecuteTrade"


async def _partial_request(gateway, protocol: str, creds: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send the headers of a 60 000-byte body and only its first 1 000 bytes; the response
    must come while the rest is still owed (reading the body would wait for it forever)."""
    path, headers, _ = request(protocol, b"")
    headers = {**headers, **credentials(creds), "content-length": "60000", "host": "127.0.0.1"}
    headers.pop("content-encoding", None)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    try:
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + b"[" + b"{}," * 333)
        await writer.drain()
        status_line, *lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().split("\r\n")
        response_headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)
                            if n]
        found = dict(response_headers)
        body = b""
        if "content-length" in found:
            body = await asyncio.wait_for(reader.readexactly(int(found["content-length"])), 10)
        elif found.get("transfer-encoding") == "chunked":
            while True:
                size = int((await asyncio.wait_for(reader.readline(), 10)).strip(), 16)
                chunk = await asyncio.wait_for(reader.readexactly(size + 2), 10)
                if size == 0:
                    break
                body += chunk[:-2]
        return int(status_line.split()[1]), response_headers, body
    finally:
        writer.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_refusal_comes_before_the_body_is_sent(gateway, protocol):
    status, headers, body = await _partial_request(gateway, protocol, "bad")
    assert outcome(protocol, status, headers, body) == ("UNAUTHENTICATED", "AUTH_INVALID")
    assert dict(headers)["www-authenticate"] == CHALLENGE


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_throttled_peer_gets_429_without_its_body_parsed(throttled_gateway, protocol):
    gateway = throttled_gateway
    # the peer's budget of failed authentications: 2, then every call from it is refused
    for _ in range(3):
        send(gateway, *request("http", b"{}"))
    path, headers, body = bomb(protocol)
    for creds in ("none", "bad"):
        corr = f"throttled-{protocol}-{creds}-{uuid.uuid4().hex[:6]}"
        response = send(gateway, path, {**headers, **credentials(creds), "x-correlation-id": corr}, body)
        code, reason = outcome(protocol, response.status_code, response.headers.items(), response.content)
        assert (code, reason) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED"), response.content[:300]
        if protocol != "grpc-web":
            assert response.status_code == 429
        assert float(response.headers["retry-after"]) > 0
        _, call = recorded(gateway, corr, auth_rows=0)  # refused before any attempt, as ever
        assert call["symbols"]["code"] == "RESOURCE_EXHAUSTED"
        assert call["columns"]["request_id"] == response.headers["x-request-id"]


# -- valid callers ----------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_valid_key_trades_with_one_authentication_per_call(gateway, protocol, gzipped):
    request_id = f"once-{uuid.uuid4().hex[:10]}"
    corr = f"once-{protocol}-{request_id}"
    path, headers, body = good(protocol, request_id, gzipped=gzipped)
    response = send(gateway, path, {**headers, "authorization": f"Bearer {gateway.key('alice')}",
                                    "x-correlation-id": corr}, body)
    assert outcome(protocol, response.status_code, response.headers.items(), response.content) == ("OK", ""), \
        response.content[:300]
    assert response.status_code == 200 and "ratelimit-remaining" in response.headers
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["symbols"]["outcome"] == "success"
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"] == response.headers["x-request-id"]
    assert call["symbols"]["code"] == "OK"


@pytest.mark.parametrize("protocol", ["connect-json", "grpc-web"])
def test_a_status_stream_is_authenticated_once(gateway, protocol):
    request_id = f"stream-{uuid.uuid4().hex[:10]}"
    key = {"authorization": f"Bearer {gateway.key('alice')}"}
    path, headers, body = good("connect-json", request_id)
    assert send(gateway, path, {**headers, **key}, body).status_code == 200
    corr = f"stream-{protocol}-{request_id}"
    if protocol == "connect-json":
        headers = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
        body = _frame(json.dumps({"requestId": request_id}).encode())
    else:
        headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        body = _frame(spb.StreamExecutionStatusRequest(request_id=request_id).SerializeToString())
    response = send(gateway, SERVICE + "StreamExecutionStatus", {**headers, **key, "x-correlation-id": corr}, body)
    assert response.status_code == 200
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"] == response.headers["x-request-id"]
    assert call["symbols"]["code"] == "OK" and call["symbols"]["method"] == "StreamExecutionStatus"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_valid_caller_s_bad_body_is_400_recorded_with_the_same_ids(gateway, protocol):
    path, headers, body = malformed(protocol)
    corr = f"badbody-{protocol}-{uuid.uuid4().hex[:6]}"
    response = send(gateway, path, {**headers, "authorization": f"Bearer {gateway.key('alice')}",
                                    "x-correlation-id": corr}, body)
    code, _ = outcome(protocol, response.status_code, response.headers.items(), response.content)
    assert code == "INVALID_ARGUMENT"
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["symbols"]["outcome"] == "success"
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"] == response.headers["x-request-id"]
    assert call["symbols"]["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_check_needs_no_credentials(gateway, protocol):
    with httpx.Client(base_url=gateway.http_url, timeout=20) as client:
        if protocol == "http":
            response = client.get("/v1/health")
            assert response.status_code == 200 and response.json()["status"] == "SERVING_STATUS_SERVING"
            return
        _, headers, _ = request(protocol, b"")
        body = {"connect-json": b"{}", "connect-proto": b"", "grpc-web": _frame(b"")}[protocol]
        response = client.post(SERVICE + "HealthCheck", headers=headers, content=body)
    assert outcome(protocol, response.status_code, response.headers.items(), response.content) == ("OK", "")


# -- native gRPC: the message arrives with the call, but is decoded only for a valid caller -----


async def _grpc_call(gateway, message: bytes, metadata: tuple) -> grpc.aio.AioRpcError | None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary(SERVICE + "ExecuteTrade", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        try:
            await call(message, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return exc
    return None


@pytest.mark.parametrize("message", [b"\xff\xff\xff\xff", b"\x52\x03abc" * 30_000], ids=["undecodable", "oversized"])
async def test_grpc_refuses_a_bad_key_before_decoding_its_message(gateway, message):
    corr = f"grpc-badkey-{uuid.uuid4().hex[:8]}"
    error = await _grpc_call(gateway, message, (("authorization", f"Bearer {BAD_KEY}"), ("x-correlation-id", corr)))
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["symbols"]["outcome"] != "success"
    assert call["symbols"]["code"] == "UNAUTHENTICATED"


async def test_grpc_a_valid_caller_s_bad_message_is_recorded_with_the_same_ids(gateway):
    corr = f"grpc-badmsg-{uuid.uuid4().hex[:8]}"
    error = await _grpc_call(gateway, b"\xff\xff\xff\xff",
                             (("authorization", f"Bearer {gateway.key('alice')}"), ("x-correlation-id", corr)))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["symbols"]["outcome"] == "success"
    request_id = dict(error.trailing_metadata())["x-request-id"]
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"] == request_id
    assert call["symbols"]["code"] == "INVALID_ARGUMENT" and call["symbols"]["principal"]


async def test_grpc_a_valid_trade_is_authenticated_once(gateway):
    corr = f"grpc-once-{uuid.uuid4().hex[:8]}"
    request = pb.TradeRequest(request_id=f"grpc-once-{uuid.uuid4().hex[:8]}", mode=pb.TRADING_MODE_PAPER,
                              input_mint=SOL, output_mint=USDC, amount="0.01", slippage_bps=100)
    error = await _grpc_call(gateway, request.SerializeToString(),
                             (("authorization", f"Bearer {gateway.key('alice')}"), ("x-correlation-id", corr)))
    assert error is None
    attempts, call = recorded(gateway, corr, auth_rows=1)
    assert attempts[0]["columns"]["request_id"] == call["columns"]["request_id"]
    assert call["symbols"]["code"] == "OK"
