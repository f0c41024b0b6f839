"""Connect and gRPC-Web transport edges answered in front of connect-python (ConnectCompat),
spoken raw: empty and compressed bodies, timeout headers, native gRPC sent to the HTTP port,
gRPC-Web JSON, method names that do not exist, framing and media types. Each gets its
protocol's error form (Connect: HTTP status + JSON error; Connect streams: the end-of-stream
frame; gRPC-Web: trailers-only, HTTP 200) with the right code and a message naming what is
wrong — never a 500, never an exception's text."""

import asyncio
import base64
import gzip
import itertools
import json
import struct
from urllib.parse import quote

import httpx
import pytest
from google.rpc import error_details_pb2

from support.grpc_web import grpc_web_outcome
from support.trading import eventually, scrape
from tradewire.v1 import service_pb2 as spb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

SERVICE = "/tradewire.v1.TradeExecutionService"
EXECUTE, MARKET, STREAM = f"{SERVICE}/ExecuteTrade", f"{SERVICE}/GetMarket", f"{SERVICE}/StreamExecutionStatus"
# what connect-python's own answers to these inputs leaked
LEAKS = ("Traceback", "Failed to load JSON", "Not a gzipped file", "Available Fields", "ASGI", "protocol error",
         "zero messages", "Error(")
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
_names = itertools.count()


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=10) as c:
        yield c


def _auth(gateway, **headers) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.key('alice')}", **headers}


def _frame(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + struct.pack(">I", len(message)) + message


def _big_json() -> bytes:
    """A JSON request far over the test gateway's 64 KiB limit once inflated (a few hundred bytes gzipped)."""
    return json.dumps({"requestId": "x" * 200_000}).encode()


def _clean(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, text


def _reason_of(details: list) -> str | None:
    for detail in details:
        if detail["type"] == "google.rpc.ErrorInfo":
            info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4)))
            return info.reason
    return None


def _connect_error(response: httpx.Response, status: int) -> dict:
    """A Connect unary error: the HTTP status, the JSON error, and its ErrorInfo reason as ``reason``."""
    assert response.status_code == status, (response.status_code, response.text)
    _clean(response.text)
    error = response.json()
    return {**error, "reason": _reason_of(error.get("details", []))}


def _stream_error(response: httpx.Response) -> dict:
    """The error in a Connect stream's end-of-stream frame (flags 0x02), HTTP 200."""
    assert response.status_code == 200, response.text
    body = response.content
    i = 0
    while i + 5 <= len(body):
        flags, size = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        if flags & 0x02:
            end = json.loads(body[i + 5:i + 5 + size])
            _clean(json.dumps(end))
            error = end["error"]
            return {**error, "reason": _reason_of(error.get("details", []))}
        i += 5 + size
    raise AssertionError(f"no end-of-stream frame in {body!r}")


def _grpc_web(response: httpx.Response) -> dict:
    outcome = grpc_web_outcome(response)
    _clean(outcome["message"])
    return outcome


# -- 1. an empty JSON message is the empty message ({}), as on Connect proto and HTTP/JSON ------

def test_an_empty_connect_json_body_is_the_empty_message_then_validated(http, gateway):
    headers = _auth(gateway, **{"content-type": "application/json"})
    error = _connect_error(http.post(EXECUTE, content=b"", headers=headers), 400)
    assert error["code"] == "invalid_argument" and error["reason"] == "VALIDATION_FAILED", error
    assert "request_id" in error["message"]
    assert http.post(MARKET, content=b"", headers=headers).status_code == 200  # nothing required: answered


def test_an_empty_json_message_in_a_get_query_is_the_empty_message(http, gateway):
    history = http.get(f"{SERVICE}/GetTradeHistory?encoding=json&message=", headers=_auth(gateway))
    assert history.status_code == 200, history.text
    assert http.get(f"{SERVICE}/GetTradeHistory?encoding=json&message={{}}", headers=_auth(gateway)).json() == \
        history.json()
    refused = _connect_error(http.get(f"{SERVICE}/GetTrade?encoding=json&message=", headers=_auth(gateway)), 400)
    assert refused["reason"] == "VALIDATION_FAILED" and "request_id" in refused["message"], refused


def test_every_connect_error_carries_its_details_as_connect_python_writes_them(http, gateway):
    headers = _auth(gateway, **{"content-type": "application/json"})
    checked_here = http.post(f"{SERVICE}/GetTrade", content=b'{"requestId": "t1", "x": 1}', headers=headers)
    answered_by_the_handler = http.post(f"{SERVICE}/GetTrade", content=b'{"requestId": "none"}', headers=headers)
    for response, status in ((checked_here, 400), (answered_by_the_handler, 404)):
        details = _connect_error(response, status)["details"]
        info = next(d for d in details if d["type"] == "google.rpc.ErrorInfo")
        assert set(info) == {"type", "value", "debug"}, info
        assert info["debug"]["reason"] == _reason_of(details) and info["debug"]["domain"], info


def test_an_empty_json_message_in_a_connect_stream_is_the_empty_message_then_validated(http, gateway):
    response = http.post(STREAM, content=_frame(b""), headers=_auth(gateway, **{"content-type": "application/connect+json"}))
    error = _stream_error(response)
    assert error["code"] == "invalid_argument" and error["reason"] == "VALIDATION_FAILED", error
    assert "request_id" in error["message"]


# -- 2. a body declared gzip: not gzip is INVALID_ARGUMENT, too big once inflated is 413 ---------

def _gzip_call(http, gateway, where: str, payload: bytes, compressed: bool = True) -> httpx.Response:
    """``payload`` sent where named, declared gzip; gzip-compressed first when ``compressed``."""
    data = gzip.compress(payload) if compressed else payload
    if where == "connect-unary":
        return http.post(EXECUTE, content=data, headers=_auth(gateway, **{
            "content-type": "application/json", "content-encoding": "gzip"}))
    if where == "connect-get":
        message = base64.urlsafe_b64encode(data).decode().rstrip("=") if compressed else quote(payload)
        base64_flag = "&base64=1" if compressed else ""
        return http.get(f"{MARKET}?encoding=json&compression=gzip{base64_flag}&message={message}",
                        headers=_auth(gateway))
    if where == "connect-stream":
        return http.post(STREAM, content=_frame(data, flags=1), headers=_auth(gateway, **{
            "content-type": "application/connect+json", "connect-content-encoding": "gzip"}))
    return http.post(MARKET, content=_frame(data, flags=1), headers=_auth(gateway, **GRPC_WEB, **{
        "grpc-encoding": "gzip"}))


def _error_of(response: httpx.Response, where: str, status: int) -> dict:
    """The refusal as {code, message, reason} whatever the protocol's form."""
    if where == "grpc-web":
        outcome = _grpc_web(response)
        code = {"3": "invalid_argument", "8": "resource_exhausted", "12": "unimplemented"}.get(outcome["status"])
        return {"code": code, "message": outcome["message"], "reason": outcome["reason"]}
    if where == "connect-stream":
        return _stream_error(response)
    return _connect_error(response, status)


WHERE = ["connect-unary", "connect-get", "connect-stream", "grpc-web"]


@pytest.mark.parametrize("where", WHERE)
def test_a_body_declared_gzip_that_is_not_gzip_is_invalid_argument(http, gateway, where):
    error = _error_of(_gzip_call(http, gateway, where, b"{}", compressed=False), where, 400)
    assert error["code"] == "invalid_argument" and error["reason"] == "MALFORMED_REQUEST", error
    assert "not valid gzip" in error["message"], error


@pytest.mark.parametrize("where", WHERE)
def test_a_gzip_body_that_inflates_past_the_limit_is_payload_too_large(http, gateway, where):
    error = _error_of(_gzip_call(http, gateway, where, _big_json()), where, 413)
    assert error["code"] == "resource_exhausted" and error["reason"] == "PAYLOAD_TOO_LARGE", error
    assert "65536" in error["message"], error


def test_good_gzip_is_still_answered_everywhere(http, gateway):
    assert _gzip_call(http, gateway, "connect-get", b"{}").status_code == 200
    assert _grpc_web(_gzip_call(http, gateway, "grpc-web", b""))["status"] == "0"  # an empty GetMarketRequest
    error = _connect_error(_gzip_call(http, gateway, "connect-unary", b"{}"), 400)  # inflated, then validated
    assert error["reason"] == "VALIDATION_FAILED", error
    error = _stream_error(_gzip_call(http, gateway, "connect-stream", b""))  # the empty JSON message: {}
    assert error["reason"] == "VALIDATION_FAILED" and "request_id" in error["message"], error
    response = http.post(MARKET, content=gzip.compress(b""), headers=_auth(gateway, **{  # empty once inflated: {}
        "content-type": "application/json", "content-encoding": "gzip"}))
    assert response.status_code == 200, response.text


# -- 3. timeout headers: a malformed one is INVALID_ARGUMENT naming it -------------------------

@pytest.mark.parametrize("value", ["abc", "999999999H", "5", "1.5S", "-1S", ""])
def test_a_grpc_web_call_with_a_bad_grpc_timeout_is_invalid_argument_trailers_only(http, gateway, value):
    response = http.post(MARKET, content=_frame(b""), headers=_auth(gateway, **GRPC_WEB, **{"grpc-timeout": value}))
    assert response.headers["grpc-status"] == "3", response.content  # trailers-only: the status in the headers
    outcome = _grpc_web(response)
    assert "grpc-timeout" in outcome["message"] and outcome["reason"] == "MALFORMED_REQUEST", outcome


@pytest.mark.parametrize("value", ["0", "-1", "000", "+5", "12345678901", "abc", "1.5"])
def test_a_connect_call_whose_connect_timeout_ms_is_not_a_positive_integer_is_invalid_argument(http, gateway, value):
    headers = _auth(gateway, **{"content-type": "application/json", "connect-timeout-ms": value})
    error = _connect_error(http.post(MARKET, content=b"{}", headers=headers), 400)
    assert error["code"] == "invalid_argument" and "connect-timeout-ms" in error["message"], error
    stream = http.post(STREAM, content=_frame(b'{"requestId": "x"}'), headers={
        **headers, "content-type": "application/connect+json"})
    error = _stream_error(stream)
    assert error["code"] == "invalid_argument" and "connect-timeout-ms" in error["message"], error


def test_good_timeouts_are_answered(http, gateway):
    response = http.post(MARKET, content=_frame(b""), headers=_auth(gateway, **GRPC_WEB, **{"grpc-timeout": "5S"}))
    assert _grpc_web(response)["status"] == "0"
    response = http.post(MARKET, content=b"{}", headers=_auth(gateway, **{
        "content-type": "application/json", "connect-timeout-ms": "5000"}))
    assert response.status_code == 200, response.text


# -- 4. native gRPC on the HTTP port: 415, pointing at the gRPC port ---------------------------

@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto", "application/grpc+json"])
def test_native_grpc_sent_to_the_http_port_is_415_naming_the_grpc_port(http, gateway, content_type):
    response = http.post(MARKET, content=_frame(b""), headers=_auth(gateway, **{"content-type": content_type}))
    error = _connect_error(response, 415)
    assert "gRPC port" in error["message"] and error["reason"] == "UNSUPPORTED_MEDIA_TYPE", error
    assert response.headers["accept-post"] == "application/json, application/proto"


# -- 5. gRPC-Web JSON gets the checks Connect JSON gets --------------------------------------

GRPC_WEB_JSON = {"content-type": "application/grpc-web+json", "x-grpc-web": "1"}


def test_grpc_web_json_with_an_unknown_field_is_invalid_argument_naming_it(http, gateway):
    outcome = _grpc_web(http.post(MARKET, content=_frame(b'{"bogus": 1}'), headers=_auth(gateway, **GRPC_WEB_JSON)))
    assert outcome["status"] == "3" and outcome["reason"] == "MALFORMED_REQUEST", outcome
    assert "bogus" in outcome["message"] and outcome["fields"] == ["bogus"], outcome
    outcome = _grpc_web(http.post(STREAM, content=_frame(b'{"zzz": 1}'), headers=_auth(gateway, **GRPC_WEB_JSON)))
    assert outcome["status"] == "3" and outcome["fields"] == ["zzz"], outcome


def test_grpc_web_json_that_is_not_json_is_invalid_argument(http, gateway):
    outcome = _grpc_web(http.post(MARKET, content=_frame(b"{"), headers=_auth(gateway, **GRPC_WEB_JSON)))
    assert outcome["status"] == "3" and outcome["reason"] == "MALFORMED_REQUEST", outcome
    assert "not valid JSON" in outcome["message"], outcome


def test_an_empty_grpc_web_json_body_is_answered_as_an_empty_proto_body_is(http, gateway):
    as_json = _grpc_web(http.post(MARKET, content=b"", headers=_auth(gateway, **GRPC_WEB_JSON)))
    as_proto = _grpc_web(http.post(MARKET, content=b"", headers=_auth(gateway, **GRPC_WEB)))
    assert as_json == as_proto and as_json["status"] == "3", (as_json, as_proto)
    # an empty JSON message in its frame is {}; and {} is answered
    for body in (_frame(b""), _frame(b"{}")):
        response = http.post(MARKET, content=body, headers=_auth(gateway, **GRPC_WEB_JSON))
        assert _grpc_web(response)["status"] == "0"
        assert response.headers["content-type"] == "application/grpc-web+json"


# -- 6. a method that does not exist: 404 on every content type, and no metrics series or audit row

def _unknown_method_calls():
    text_frame = base64.b64encode(_frame(b""))
    return [
        ("grpc-web-text-not-base64", "POST", {"content-type": "application/grpc-web-text"}, b"!!!notbase64"),
        ("grpc-web-text", "POST", {"content-type": "application/grpc-web-text"}, text_frame),
        ("grpc-web-text-proto", "POST", {"content-type": "application/grpc-web-text+proto"}, text_frame),
        ("grpc-web-proto", "POST", GRPC_WEB, b"\xff"),
        ("grpc-web-json", "POST", GRPC_WEB_JSON, _frame(b"{")),
        ("connect-json", "POST", {"content-type": "application/json"}, b"{"),
        ("connect-proto", "POST", {"content-type": "application/proto"}, b"\xff"),
        ("connect-stream", "POST", {"content-type": "application/connect+json"}, _frame(b"{")),
        ("native-grpc", "POST", {"content-type": "application/grpc"}, b""),
        ("connect-get", "GET", {}, b""),
    ]


async def test_a_method_that_does_not_exist_is_404_and_leaves_no_metrics_series_or_audit_row(gateway):
    names = []
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        for case, verb, headers, body in _unknown_method_calls():
            name = f"Bogus{next(_names)}x{case.replace('-', '')}"
            names.append(name)
            query = "?encoding=json&message=%7B" if verb == "GET" else ""
            response = await http.request(verb, f"{SERVICE}/{name}{query}", content=body,
                                          headers=_auth(gateway, **headers))
            assert response.status_code == 404, (case, response.status_code, response.text)
            _clean(response.text)
        # a call that is recorded, after them: once its audit row is written, theirs would be too
        marker = f"edges-marker-{next(_names)}"
        await http.post(MARKET, content=b'{"bogus": 1}', headers=_auth(gateway, **{
            "content-type": "application/json", "x-correlation-id": marker}))

    labelled = {dict(labels).get("method") for _, labels in await scrape(gateway)}
    assert not labelled & set(names), labelled & set(names)
    journal = gateway.workdir / "data" / "audit.jsonl"

    def journal_rows() -> list[dict] | None:
        rows = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
        return rows if any(row.get("columns", {}).get("correlation_id") == marker for row in rows) else None

    rows = await eventually(journal_rows, timeout=10, what="the marker call's audit row")
    audited = {row.get("symbols", {}).get("method") for row in rows}
    assert not audited & set(names), audited & set(names)
    logged = {json.loads(line).get("method") for line in gateway.log_text().splitlines() if line.startswith("{")}
    assert not logged & set(names), logged & set(names)


# -- 7. framing, compression names, GET on a stream, media types -------------------------------

def test_a_connect_stream_in_a_compression_the_gateway_does_not_know_is_unimplemented(http, gateway):
    response = http.post(STREAM, content=_frame(b"\x00\x01", flags=1), headers=_auth(gateway, **{
        "content-type": "application/connect+json", "connect-content-encoding": "br"}))
    error = _stream_error(response)
    assert error["code"] == "unimplemented" and "connect-content-encoding" in error["message"], error
    assert "'br'" in error["message"] and "gzip" in error["message"], error
    # as a unary call in one already was
    error = _connect_error(http.post(MARKET, content=b"{}", headers=_auth(gateway, **{
        "content-type": "application/json", "content-encoding": "br"})), 501)
    assert error["code"] == "unimplemented", error


def test_a_get_on_a_streaming_method_is_405_as_on_a_method_with_side_effects(http, gateway):
    for path in (STREAM, EXECUTE):
        response = http.get(f"{path}?encoding=json&message=%7B%7D", headers=_auth(gateway))
        assert response.status_code == 405, (path, response.status_code, response.text)
        assert response.headers["allow"] == "POST"
    assert http.get(f"{MARKET}?encoding=json&message=%7B%7D", headers=_auth(gateway)).status_code == 200


@pytest.mark.parametrize("path,headers", [
    (MARKET, GRPC_WEB),
    (STREAM, GRPC_WEB),
    (MARKET, GRPC_WEB_JSON),
], ids=["grpc-web-unary", "grpc-web-stream", "grpc-web-json"])
def test_bytes_after_the_one_grpc_web_frame_are_invalid_argument(http, gateway, path, headers):
    message = spb.StreamExecutionStatusRequest(request_id="x").SerializeToString() if path == STREAM else b""
    message = b"{}" if headers is GRPC_WEB_JSON else message
    outcome = _grpc_web(http.post(path, content=_frame(message) + b"xyz", headers=_auth(gateway, **headers)))
    assert outcome["status"] == "3" and "3 bytes after" in outcome["message"], outcome


def test_bytes_after_the_one_connect_stream_frame_are_invalid_argument(http, gateway):
    response = http.post(STREAM, content=_frame(b'{"requestId": "x"}') + _frame(b"{}"),
                         headers=_auth(gateway, **{"content-type": "application/connect+json"}))
    error = _stream_error(response)
    assert error["code"] == "invalid_argument" and "after its one message frame" in error["message"], error


@pytest.mark.parametrize("content_type", [
    "APPLICATION/JSON", "Application/Json", "application/json;charset=utf8", 'application/json; Charset="UTF8"',
    "application/json; charset=UTF-8",
])
def test_connect_media_types_are_case_insensitive_and_a_utf8_charset_any_spelling(http, gateway, content_type):
    response = http.post(MARKET, content=b"{}", headers=_auth(gateway, **{"content-type": content_type}))
    assert response.status_code == 200, (content_type, response.text)
    response = http.post(STREAM, content=_frame(b'{"requestId": "x"}'), headers=_auth(gateway, **{
        "content-type": content_type.replace("json", "connect+json").replace("Json", "Connect+Json").replace(
            "JSON", "CONNECT+JSON")}))
    assert response.headers["content-type"] == "application/connect+json"  # a stream, ending NOT_FOUND
    assert _stream_error(response)["code"] == "not_found"


@pytest.mark.parametrize("content_type", ["application/json; charset=latin1", "text/plain", "application/json; v=1",
                                          "application/grpc-web+thrift", None])
def test_other_media_types_are_415_saying_what_to_send_after_the_credentials(http, gateway, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    error = _connect_error(http.post(MARKET, content=b"{}", headers=_auth(gateway, **headers)), 415)
    assert error["reason"] == "UNSUPPORTED_MEDIA_TYPE" and "application/proto" in error["message"], error
    # as on HTTP/JSON, a bad credential is the first thing a caller hears of
    bad_key = {"authorization": "Bearer tw_nobody01_" + "x" * 40, **headers}
    assert _connect_error(http.post(MARKET, content=b"{}", headers=bad_key), 401)["reason"] == "AUTH_INVALID"


@pytest.mark.parametrize("content_type", ["application/json", "application/grpc-web+json"])
async def test_a_call_whose_client_leaves_before_its_body_is_whole_never_runs(gateway, content_type):
    """Its body declared 4 KiB but only a whole, valid trade arrived before the client closed:
    what did arrive is not taken for the request."""
    request_id = f"cut-{content_type.rsplit('/', 1)[1].replace('+', '-')}"
    trade = json.dumps({"requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL,
                        "outputMint": USDC, "amount": "0.01", "slippageBps": 100}).encode()
    body = trade if content_type == "application/json" else _frame(trade)
    head = (f"POST /tradewire.v1.TradeExecutionService/ExecuteTrade HTTP/1.1\r\nhost: x\r\n"
            f"authorization: Bearer {gateway.key('alice')}\r\ncontent-type: {content_type}\r\n"
            f"content-length: 4096\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    writer.write(head + body)
    await writer.drain()
    writer.close()  # gone, 4 KiB short
    await writer.wait_closed()
    del reader

    async def runs() -> bool:
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=5) as http:
            found = await http.get(f"/v1/trades/{request_id}", headers=_auth(gateway))
        return found.status_code != 404

    with pytest.raises(AssertionError, match="timed out"):  # (a window to observe that nothing starts)
        await eventually(runs, timeout=1.5, what="the cut-short trade running")


def test_connect_refusals_of_its_own_headers_and_query_carry_a_reason(http, gateway):
    # (connect-python answered these itself: no ErrorInfo, no access line)
    version = _connect_error(http.post(MARKET, content=b"{}", headers=_auth(gateway, **{
        "content-type": "application/json", "connect-protocol-version": "2"})), 400)
    assert version["reason"] == "MALFORMED_REQUEST" and "connect-protocol-version must be 1" in version["message"]
    for query in ("?encoding=json", "?message=%7B%7D", "?encoding=xml&message=%7B%7D"):
        get = _connect_error(http.get(MARKET + query, headers=_auth(gateway)), 400)
        assert get["reason"] == "MALFORMED_REQUEST" and "encoding=json" in get["message"], (query, get)
    # a bad header is heard of after a bad credential, as any refusal
    bad_key = {"authorization": "Bearer tw_nobody01_" + "x" * 40, "content-type": "application/json",
               "connect-protocol-version": "2"}
    assert _connect_error(http.post(MARKET, content=b"{}", headers=bad_key), 401)["reason"] == "AUTH_INVALID"


@pytest.mark.parametrize("content_type", ["application/proto", "application/grpc-web+proto"])
async def test_a_caller_gone_before_its_body_was_whole_is_on_record_as_cancelled(gateway, content_type):
    """A Connect or gRPC-Web caller that hangs up in the middle of sending its request runs
    nothing, and its call is counted, audited and logged CANCELLED, as HTTP/JSON's is."""
    correlation = f"half-sent-{next(_names)}"
    host, port = gateway.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST {EXECUTE} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n"
                  f"authorization: Bearer {gateway.key('alice')}\r\nx-correlation-id: {correlation}\r\n"
                  f"content-length: 1000\r\n\r\n").encode() + b"\x00" * 100)
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation),
                            what="the half-sent call's audit row")
    assert [(r["method"], r["code"], r["reason"]) for r in rows] == [("ExecuteTrade", "CANCELLED", "CANCELLED")]
