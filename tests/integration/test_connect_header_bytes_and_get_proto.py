"""Two things connect-python reads as UTF-8 that are bytes, on the Connect/gRPC-Web listener.

1. A request header value may hold bytes 0x80-0xFF (RFC 9110's obs-text: a raw Latin-1
   ``user-agent: café``). HTTP/JSON, on the same listener, reads such a value as Latin-1 and
   answers the call; connect-python decoded it as UTF-8 and answered every Connect and gRPC-Web
   call with a 500 carrying the codec's exception text, no ids, nothing on record. The value is
   read as Latin-1 here too: the call is answered, and recorded, as the same call on HTTP/JSON.

2. A Connect GET may carry a binary (``encoding=proto``) message percent-encoded, without
   ``base64=1``. connect-python re-read such a query as UTF-8 text, so every byte >= 0x80 of the
   message changed (a varint >= 128, a timestamp): it must be answered as the same request sent
   in base64, or POSTed.
"""

import base64
import gzip
import itertools
import json
import struct
import time
import uuid
from urllib.parse import quote

import httpx
import pytest
from google.protobuf import timestamp_pb2

from support.grpc_web import grpc_web_outcome
from support.trading import eventually, metric
from tradewire.v1 import service_pb2 as spb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SERVICE = "/tradewire.v1.TradeExecutionService"
MARKET, HISTORY, STREAM = f"{SERVICE}/GetMarket", f"{SERVICE}/GetTradeHistory", f"{SERVICE}/StreamExecutionStatus"
LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8
# what connect-python's answer leaked
LEAKS = ("codec", "decode byte", "Wire format", "Traceback", "Error parsing")
_ids = itertools.count()


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=10) as c:
        yield c


def _marker(what: str) -> str:
    return f"hdr-bytes-{what}-{next(_ids)}-{uuid.uuid4().hex[:8]}"


def _frame(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + struct.pack(">I", len(message)) + message


def _clean(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, text


def _stream_end(body: bytes) -> dict:
    """A Connect stream's end-of-stream JSON (flags 0x02)."""
    i = 0
    while i + 5 <= len(body):
        flags, size = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        if flags & 0x02:
            return json.loads(body[i + 5:i + 5 + size])
        i += 5 + size
    raise AssertionError(f"no end-of-stream frame in {body!r}")


# -- 1. header values with bytes that are not UTF-8 ------------------------------------------

def _outcome(kind: str, response: httpx.Response) -> str:
    """The call's code, read in its protocol's form (never a 500 with the codec's text)."""
    _clean(response.text)
    if kind.startswith("grpc-web"):
        outcome = grpc_web_outcome(response)
        status = outcome["status"]
        _clean(outcome["message"])
        return {"0": "ok", "5": "not_found", "16": "unauthenticated"}.get(status, f"grpc-status {status}")
    if kind == "connect-stream":
        assert response.status_code == 200, (response.status_code, response.text)
        end = _stream_end(response.content)
        return end["error"]["code"] if "error" in end else "ok"
    if response.status_code == 200:
        return "ok"
    assert response.headers.get("content-type") == "application/json", response.headers
    return response.json()["code"]


def _call(http, kind: str, headers: dict) -> httpx.Response:
    """One call of ``kind``: a GetMarket (answered OK) or a stream of a trade that does not
    exist (NOT_FOUND, from its handler)."""
    unknown = spb.StreamExecutionStatusRequest(request_id="hdr-bytes-no-such-trade").SerializeToString()
    if kind == "connect-json":
        return http.post(MARKET, content=b"{}", headers={**headers, "content-type": "application/json"})
    if kind == "connect-proto":
        return http.post(MARKET, content=b"", headers={**headers, "content-type": "application/proto"})
    if kind == "connect-get":
        return http.get(f"{MARKET}?encoding=json&message=%7B%7D", headers=headers)
    if kind == "connect-stream":
        return http.post(STREAM, content=_frame(unknown), headers={**headers,
                                                                   "content-type": "application/connect+proto"})
    if kind == "grpc-web":
        return http.post(MARKET, content=_frame(b""), headers={**headers, "content-type": "application/grpc-web+proto"})
    if kind == "grpc-web-stream":
        return http.post(STREAM, content=_frame(unknown), headers={**headers,
                                                                   "content-type": "application/grpc-web+proto"})
    raise AssertionError(kind)


# kind -> (method, protocol, the code it is answered)
KINDS = {"connect-json": ("GetMarket", "connect", "ok"), "connect-proto": ("GetMarket", "connect", "ok"),
         "connect-get": ("GetMarket", "connect", "ok"),
         "connect-stream": ("StreamExecutionStatus", "connect", "not_found"),
         "grpc-web": ("GetMarket", "grpc-web", "ok"),
         "grpc-web-stream": ("StreamExecutionStatus", "grpc-web", "not_found")}


def _audited(gateway, correlation: str) -> list[dict]:
    return gateway.audit_rows("tw_requests", correlation_id=correlation)


def _logged(gateway, correlation: str) -> list[dict]:
    lines = (json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("logger") == "tradewire.access" and
            line.get("correlation_id") == correlation]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", ["user-agent", "x-custom", "tracestate"])
async def test_a_header_value_that_is_not_utf8_is_read_as_latin1_and_the_call_answered_and_recorded(
        http, gateway, kind, header):
    method, protocol, code = KINDS[kind]
    counted = {"method": method, "protocol": protocol, "code": code.upper()}
    before = await metric(gateway, "tradewire_requests_total", **counted)
    correlation = _marker(kind)
    response = _call(http, kind, {"authorization": f"Bearer {gateway.key('alice')}",
                                  "x-correlation-id": correlation, header: LATIN1})
    assert _outcome(kind, response) == code, (response.status_code, response.text)
    assert response.headers.get("x-correlation-id") == correlation, response.headers
    assert response.headers.get("x-request-id"), response.headers
    rows = await eventually(lambda: _audited(gateway, correlation), timeout=10, what="the call's audit row")
    assert [(r["method"], r["protocol"]) for r in rows] == [(method, protocol)], rows
    lines = await eventually(lambda: _logged(gateway, correlation), timeout=10, what="the call's access line")
    assert [(line["method"], line["code"]) for line in lines] == [(method, code.upper())], lines
    assert await metric(gateway, "tradewire_requests_total", **counted) == before + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_credentials_with_a_byte_that_is_not_utf8_are_refused_unauthenticated_and_recorded(http, gateway, kind):
    method, protocol, _ = KINDS[kind]
    correlation = _marker(f"auth-{kind}")
    credentials = b"Bearer " + gateway.key("alice").encode() + b"\xe9"
    response = _call(http, kind, {"authorization": credentials, "x-correlation-id": correlation})
    assert _outcome(kind, response) == "unauthenticated", (response.status_code, response.text)
    if kind.startswith("connect") and kind != "connect-stream":
        assert response.status_code == 401, response.status_code
    assert response.headers.get("x-correlation-id") == correlation and response.headers.get("x-request-id")
    rows = await eventually(lambda: _audited(gateway, correlation), timeout=10, what="the refusal's audit row")
    assert [(r["method"], r["protocol"], r["code"]) for r in rows] == [(method, protocol, "UNAUTHENTICATED")], rows
    # as HTTP/JSON refuses the same credentials
    same_on_http = http.get("/v1/market", headers={"authorization": credentials})
    assert same_on_http.status_code == 401, same_on_http.text


@pytest.mark.parametrize("kind", ["connect-json", "connect-get", "grpc-web"])
def test_ids_from_headers_with_bytes_that_are_not_utf8_are_treated_as_on_http_json(http, gateway, kind):
    """An x-correlation-id that is not usable is replaced by the request id; a traceparent whose
    (later version's) extra field holds such a byte still names the trace: as on HTTP/JSON."""
    auth = {"authorization": f"Bearer {gateway.key('alice')}"}
    for answered in (_call(http, kind, {**auth, "x-correlation-id": b"id-" + LATIN1}),
                     http.get("/v1/market", headers={**auth, "x-correlation-id": b"id-" + LATIN1})):
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-correlation-id"] == answered.headers["x-request-id"], answered.headers
    trace_id = uuid.uuid4().hex
    traceparent = f"01-{trace_id}-{uuid.uuid4().hex[:16]}-01-".encode() + LATIN1
    for answered in (_call(http, kind, {**auth, "traceparent": traceparent}),
                     http.get("/v1/market", headers={**auth, "traceparent": traceparent})):
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-correlation-id"] == trace_id, answered.headers


async def test_a_header_byte_that_is_not_utf8_before_a_refusal_of_the_request_itself(http, gateway):
    """Refused by the gateway's own checks (a bad body), the answer is that refusal, not a 500."""
    correlation = _marker("bad-body")
    headers = {"authorization": f"Bearer {gateway.key('alice')}", "x-correlation-id": correlation,
               "user-agent": LATIN1, "content-type": "application/json"}
    refused = http.post(MARKET, content=b'{"bogus": 1}', headers=headers)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_argument", refused.text
    assert "bogus" in refused.json()["message"]
    rows = await eventually(lambda: _audited(gateway, correlation), timeout=10, what="the refusal's audit row")
    assert [r["code"] for r in rows] == ["INVALID_ARGUMENT"], rows


# -- 2. a Connect GET's binary message, percent-encoded ---------------------------------------

def _history_request(start_s: int) -> spb.GetTradeHistoryRequest:
    """A request whose encoding holds bytes >= 0x80: page_size 300 (varint ac 02), a timestamp."""
    request = spb.GetTradeHistoryRequest(page_size=300)
    request.start_time.CopyFrom(timestamp_pb2.Timestamp(seconds=start_s, nanos=987_654_321))
    assert any(b >= 0x80 for b in request.SerializeToString())
    return request


def _history_json(request: spb.GetTradeHistoryRequest) -> bytes:
    return json.dumps({"pageSize": request.page_size,
                       "startTime": request.start_time.ToJsonString()}).encode()


def _proto_gets(raw: bytes) -> dict[str, str]:
    """The same binary message in every way a Connect GET may carry it."""
    b64 = base64.urlsafe_b64encode(raw).decode()
    zipped = gzip.compress(raw)
    return {
        "percent-encoded": f"{HISTORY}?encoding=proto&message={quote(raw, safe='')}",
        "percent-encoded-connect-v1": f"{HISTORY}?connect=v1&encoding=proto&message={quote(raw, safe='')}",
        "base64": f"{HISTORY}?encoding=proto&base64=1&message={b64.rstrip('=')}",
        "base64-padded": f"{HISTORY}?encoding=proto&base64=1&message={quote(b64)}",
        "gzip-percent-encoded": f"{HISTORY}?encoding=proto&compression=gzip&message={quote(zipped, safe='')}",
        "gzip-base64": f"{HISTORY}?encoding=proto&compression=gzip&base64=1&message="
                       f"{base64.urlsafe_b64encode(zipped).decode()}",
    }


def _trade(http, gateway, request_id: str) -> None:
    trade = {"requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
             "amount": "0.01", "slippageBps": 100}
    response = http.post(f"{SERVICE}/ExecuteTrade", content=json.dumps(trade).encode(),
                         headers={"authorization": f"Bearer {gateway.key('bob')}", "content-type": "application/json"})
    assert response.status_code == 200, response.text


def _request_ids(response: httpx.Response, proto: bool = True) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text)
    if proto:
        return [t.request_id for t in spb.GetTradeHistoryResponse.FromString(response.content).trades]
    return [t["requestId"] for t in response.json().get("trades", [])]


@pytest.mark.parametrize("since_s", [-3600, 86400], ids=["since-an-hour-ago", "since-tomorrow"])
def test_a_get_with_a_percent_encoded_proto_message_is_answered_as_its_base64_and_post_forms(http, gateway, since_s):
    made = [f"getproto-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for request_id in made:
        _trade(http, gateway, request_id)
    request = _history_request(int(time.time()) + since_s)
    raw = request.SerializeToString()
    bob = {"authorization": f"Bearer {gateway.key('bob')}"}
    posted = _request_ids(http.post(HISTORY, content=raw, headers={**bob, "content-type": "application/proto"}))
    assert set(made) <= set(posted) if since_s < 0 else posted == [], posted
    for how, url in _proto_gets(raw).items():
        response = http.get(url, headers=bob)
        _clean(response.text)
        assert _request_ids(response) == posted, how
    # and as JSON, in every way a GET may carry it
    text = _history_json(request)
    json_gets = {"percent-encoded": f"{HISTORY}?encoding=json&message={quote(text, safe='')}",
                 "base64": f"{HISTORY}?encoding=json&base64=1&message={base64.urlsafe_b64encode(text).decode()}"}
    for how, url in json_gets.items():
        assert _request_ids(http.get(url, headers=bob), proto=False) == posted, how


def test_a_percent_encoded_proto_message_is_checked_as_the_same_message_sent_in_base64(http, gateway):
    """page_size 501 is refused naming page_size, whatever way it came (its varint f5 03)."""
    bob = {"authorization": f"Bearer {gateway.key('bob')}"}
    raw = spb.GetTradeHistoryRequest(page_size=501).SerializeToString()
    answers = {how: http.get(url, headers=bob) for how, url in _proto_gets(raw).items()}
    answers["post"] = http.post(HISTORY, content=raw, headers={**bob, "content-type": "application/proto"})
    for how, answer in answers.items():
        assert answer.status_code == 400, (how, answer.text)
        error = answer.json()
        assert error["code"] == "invalid_argument" and "page_size" in error["message"], (how, answer.text)
    assert len({a.json()["message"] for a in answers.values()}) == 1, {h: a.text for h, a in answers.items()}


def test_a_percent_encoded_json_message_with_utf8_text_is_read_as_its_base64_and_post_forms(http, gateway):
    bob = {"authorization": f"Bearer {gateway.key('bob')}"}
    text = json.dumps({"mint": "café", "pageSize": 300}, ensure_ascii=False).encode()  # refused: not a mint
    answers = {
        "percent-encoded": http.get(f"{HISTORY}?encoding=json&message={quote(text, safe='')}", headers=bob),
        "base64": http.get(f"{HISTORY}?encoding=json&base64=1&message={base64.urlsafe_b64encode(text).decode()}",
                           headers=bob),
        "post": http.post(HISTORY, content=text, headers={**bob, "content-type": "application/json"}),
    }
    for how, answer in answers.items():
        assert answer.status_code == 400 and "mint" in answer.json()["message"], (how, answer.text)
    assert len({a.json()["message"] for a in answers.values()}) == 1, {h: a.text for h, a in answers.items()}
