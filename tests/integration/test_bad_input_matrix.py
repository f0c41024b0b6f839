"""Every bad input gets the right code on every protocol, names the field, and never a 500."""

import base64
import json
import struct

import grpc
import httpx
import pytest
from google.protobuf import timestamp_pb2

from support.clients import GrpcClient, RpcFailure
from support.trading import eventually, metric
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403}


def base(**overrides) -> pb.TradeRequest:
    fields = dict(request_id="bad-input", mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                  amount="1", slippage_bps=50)
    fields.update(overrides)
    return pb.TradeRequest(**fields)


# (case id, request, expected code, field that must be named)
MESSAGE_CASES = [
    ("malformed-mint", base(input_mint="not-a-mint!!"), "INVALID_ARGUMENT", "input_mint"),
    ("base58-not-32-bytes", base(input_mint="1" * 34), "INVALID_ARGUMENT", "input_mint"),
    ("unsupported-mint", base(output_mint="4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"), "INVALID_ARGUMENT", "output_mint"),
    ("same-mints", base(output_mint=SOL), "INVALID_ARGUMENT", "output_mint"),
    ("amount-abc", base(amount="abc"), "INVALID_ARGUMENT", "amount"),
    ("amount-negative", base(amount="-1"), "INVALID_ARGUMENT", "amount"),
    ("amount-zero", base(amount="0"), "INVALID_ARGUMENT", "amount"),
    ("amount-too-many-decimals", base(amount="0.0000000001"), "INVALID_ARGUMENT", "amount"),
    ("usdc-too-many-decimals", base(input_mint=USDC, output_mint=SOL, amount="1.0000001"), "INVALID_ARGUMENT", "amount"),
    ("slippage-over-100pct", base(slippage_bps=10001), "INVALID_ARGUMENT", "slippage_bps"),
    ("unknown-enum-value", base(mode=99), "INVALID_ARGUMENT", "mode"),
    ("missing-mode", base(mode=0), "INVALID_ARGUMENT", "mode"),
    ("missing-request-id", base(request_id=""), "INVALID_ARGUMENT", "request_id"),
    ("request-id-dot", base(request_id="."), "INVALID_ARGUMENT", "request_id"),  # GET /v1/trades/. is /v1/trades/
    ("request-id-dot-dot", base(request_id=".."), "INVALID_ARGUMENT", "request_id"),
    ("missing-input-mint", base(input_mint=""), "INVALID_ARGUMENT", "input_mint"),
    ("jito-without-tip", base(mev_protection=pb.MevProtection(strategy=pb.MEV_STRATEGY_JITO_BUNDLE)),
     "INVALID_ARGUMENT", "mev_protection.jito_tip_lamports"),
    ("tip-without-jito", base(mev_protection=pb.MevProtection(jito_tip_lamports=5000)),
     "INVALID_ARGUMENT", "mev_protection.jito_tip_lamports"),
    ("priority-fee-with-jito", base(mev_protection=pb.MevProtection(
        strategy=pb.MEV_STRATEGY_JITO_BUNDLE, jito_tip_lamports=5000, compute_unit_price_micro_lamports=1000)),
     "INVALID_ARGUMENT", "mev_protection.compute_unit_price_micro_lamports"),
    # a caller may not aim the gateway's webhooks into its own networks (SSRF)
    ("webhook-to-loopback", base(webhook_url="https://127.0.0.1:8080/admin"), "INVALID_ARGUMENT", "webhook_url"),
    ("webhook-to-cloud-metadata", base(webhook_url="https://169.254.169.254/latest/meta-data"),
     "INVALID_ARGUMENT", "webhook_url"),
    ("metadata-value-too-long", base(client_metadata={"desk": "x" * 300}), "INVALID_ARGUMENT",
     'client_metadata["desk"]'),
    ("webhook-to-loopback-shorthand", base(webhook_url="https://127.1/admin"), "INVALID_ARGUMENT", "webhook_url"),
    ("webhook-to-loopback-as-integer", base(webhook_url="https://2130706433/admin"), "INVALID_ARGUMENT",
     "webhook_url"),
    ("webhook-invalid-host-name", base(webhook_url="https://exa mple.com/hook"), "INVALID_ARGUMENT", "webhook_url"),
    ("webhook-malformed-ipv6", base(webhook_url="https://[zz]/hook"), "INVALID_ARGUMENT", "webhook_url"),
    # a name a resolver reads as loopback once in its ASCII (IDNA) form
    ("webhook-to-loopback-full-width", base(webhook_url="https://１２７.０.０.１/hook"), "INVALID_ARGUMENT",
     "webhook_url"),
    ("webhook-to-loopback-ideographic-dots", base(webhook_url="https://127。0。0。1/hook"), "INVALID_ARGUMENT",
     "webhook_url"),
    ("webhook-to-localhost-enclosed-letters", base(webhook_url="https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/hook"), "INVALID_ARGUMENT",
     "webhook_url"),
    ("webhook-unclosed-ipv6", base(webhook_url="https://user:pw@["), "INVALID_ARGUMENT", "webhook_url"),
    # a request id is logged and audited: one shaped like a credential is refused, not written down
    ("request-id-shaped-like-a-jwt", base(request_id="eyJhbGciOiAiSFMyNTYifQ.eyJzdWIiOiAieCJ9.8OboomGxv07K"),
     "INVALID_ARGUMENT", "request_id"),
]


def _field_named(failure: RpcFailure, field: str) -> bool:
    return any(f == field or f.startswith(field + ".") or f.endswith("." + field) for f in failure.fields)


@pytest.mark.parametrize("case,request_msg,code,field", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
async def test_invalid_trade_is_refused_naming_the_field(client, gateway, case, request_msg, code, field):
    with pytest.raises(RpcFailure) as caught:
        await client.unary("ExecuteTrade", request_msg, gateway.key("alice"))
    failure = caught.value
    assert failure.code == code, failure
    assert _field_named(failure, field), failure
    assert field in failure.message
    assert "Traceback" not in failure.message and "File \"" not in failure.message
    if failure.http_status is not None:
        assert failure.http_status == HTTP_STATUS[code]


async def test_an_empty_trade_request_names_its_missing_fields(client, gateway):
    with pytest.raises(RpcFailure) as caught:
        await client.unary("ExecuteTrade", pb.TradeRequest(), gateway.key("alice"))
    failure = caught.value
    assert failure.code == "INVALID_ARGUMENT", failure
    assert {"request_id", "mode", "input_mint", "output_mint", "amount"} <= set(failure.fields), failure
    assert "must differ" not in failure.message  # two missing mints are not "the same mint"


async def test_a_cancel_reason_holding_a_credential_is_refused_naming_it(client, gateway):
    key = gateway.key("alice")
    with pytest.raises(RpcFailure) as caught:  # (it would be kept as the trade's error message)
        await client.unary("CancelTrade", spb.CancelTradeRequest(request_id="any", reason=f"oops {key}"), key)
    assert caught.value.code == "INVALID_ARGUMENT" and caught.value.fields == ["reason"], caught.value
    assert key not in caught.value.message and key not in caught.value.raw


async def test_a_history_range_that_ends_before_it_starts_is_refused_naming_end_time(client, gateway):
    later, earlier = timestamp_pb2.Timestamp(seconds=1_900_000_000), timestamp_pb2.Timestamp(seconds=1_800_000_000)
    with pytest.raises(RpcFailure) as caught:
        await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(start_time=later, end_time=earlier),
                           gateway.key("alice"))
    assert caught.value.code == "INVALID_ARGUMENT" and caught.value.fields == ["end_time"], caught.value
    assert "after start_time" in caught.value.message
    page, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(start_time=earlier, end_time=later),
                                 gateway.key("alice"))  # the right way round is answered
    assert page is not None


@pytest.mark.parametrize("method, message", [
    ("GetTradeHistory", spb.GetTradeHistoryRequest(mint="1" * 40)),  # base58, but 29 bytes
    ("GetPositions", spb.GetPositionsRequest(mint="z" * 44)),  # base58, but 33 bytes
])
async def test_a_mint_filter_that_is_no_address_is_refused_as_a_trade_s_mint_is(client, gateway, method, message):
    # (answered before as an empty page: "nothing in that mint")
    with pytest.raises(RpcFailure) as caught:
        await client.unary(method, message, gateway.key("alice"))
    assert caught.value.code == "INVALID_ARGUMENT" and caught.value.fields == ["mint"], caught.value
    assert "public key" in caught.value.message


@pytest.mark.parametrize("key", ["tw_alice001_" + "z" * 40, "garbage", ""])
async def test_bad_api_key_is_unauthenticated(client, gateway, key):
    with pytest.raises(RpcFailure) as caught:
        await client.unary("ExecuteTrade", base(request_id="auth"), key or None,
                           headers={"authorization": "Bearer"} if key == "" else None)
    assert caught.value.code == "UNAUTHENTICATED"
    assert caught.value.headers.get("www-authenticate") == 'Bearer realm="tradewire"', caught.value.headers
    if caught.value.http_status is not None:
        assert caught.value.http_status == 401


# -- raw payloads no typed client can send -----------------------------------------------

CONNECT_PATH = "/tradewire.v1.TradeExecutionService/ExecuteTrade"
VALID_JSON = {"requestId": "raw", "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
              "amount": "1", "slippageBps": 50}


def _auth(gateway) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.key('alice')}"}


def _assert_clean(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=10) as c:
        yield c


def _field_in_body(body: dict, field: str) -> bool:
    return field in json.dumps(body)


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_unknown_json_field_is_400_naming_it(http, gateway, path):
    body = _assert_clean(http.post(path, json={**VALID_JSON, "bogusField": 1}, headers=_auth(gateway)), 400)
    assert _field_in_body(body, "bogusField")


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_a_mistyped_map_value_is_400_naming_its_entry_as_validation_does(http, gateway, path):
    body = _assert_clean(http.post(path, json={**VALID_JSON, "clientMetadata": {"desk": 5}}, headers=_auth(gateway)),
                         400)
    assert 'client_metadata["desk"]' in body["message"], body  # as in the metadata-value-too-long case


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_unknown_enum_name_is_400_naming_the_field(http, gateway, path):
    body = _assert_clean(http.post(path, json={**VALID_JSON, "mode": "TRADING_MODE_BOGUS"}, headers=_auth(gateway)), 400)
    assert _field_in_body(body, "mode")


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
@pytest.mark.parametrize("written", ["50.0000000000000000001", "5e-400", '"50.0000000000000000001"'])
def test_an_integer_field_refuses_a_number_a_double_would_round_to_whole(http, gateway, path, written):
    # (taken as 50 and 0 before: the fraction was lost in the double before it was checked)
    body = {k: v for k, v in VALID_JSON.items() if k != "slippageBps"}
    raw = json.dumps(body)[:-1] + f', "slippageBps": {written}}}'
    headers = {**_auth(gateway), "content-type": "application/json"}
    answer = _assert_clean(http.post(path, content=raw.encode(), headers=headers), 400)
    assert "slippage_bps" in answer["message"] and "expected an integer" in answer["message"], answer


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_malformed_json_is_400(http, gateway, path):
    headers = {**_auth(gateway), "content-type": "application/json"}
    body = _assert_clean(http.post(path, content=b'{"requestId": "x",', headers=headers), 400)
    assert "JSON" in body["message"]


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_wrong_content_type_is_415(http, gateway, path):
    response = http.post(path, content=json.dumps(VALID_JSON), headers={**_auth(gateway), "content-type": "text/plain"})
    assert response.status_code == 415
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_json_with_charset_parameter_is_accepted(http, gateway, path):
    payload = {**VALID_JSON, "requestId": f"charset-{path.count('/')}"}
    response = http.post(path, content=json.dumps(payload),
                         headers={**_auth(gateway), "content-type": "application/json;charset=UTF-8"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_oversized_body_is_413(http, gateway, path):
    payload = {**VALID_JSON, "clientMetadata": {"k": "x" * 70_000}}  # over the 64 KiB test limit
    response = http.post(path, json=payload, headers=_auth(gateway))
    assert response.status_code == 413, response.text
    assert "Traceback" not in response.text


def test_connect_binary_garbage_is_400(http, gateway):
    response = http.post(CONNECT_PATH, content=b"\xff\xff\xff\xff", headers={**_auth(gateway), "content-type": "application/proto"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_argument"


def test_grpc_web_garbage_is_invalid_argument(http, gateway):
    frame = b"\x00" + struct.pack(">I", 4) + b"\xff\xff\xff\xff"
    response = http.post(CONNECT_PATH, content=frame,
                         headers={**_auth(gateway), "content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
    assert response.status_code == 200  # gRPC-Web carries the status in headers/trailers
    status = response.headers.get("grpc-status") or _trailer_status(response.content)
    assert status == "3", response.content


def _trailer_status(body: bytes) -> str | None:
    """grpc-status from a gRPC-Web trailer frame (flag 0x80)."""
    i = 0
    while i + 5 <= len(body):
        flag, size = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        chunk = body[i + 5:i + 5 + size]
        if flag & 0x80:
            for line in chunk.decode().split("\r\n"):
                if line.lower().startswith("grpc-status:"):
                    return line.split(":", 1)[1].strip()
        i += 5 + size
    return None


async def test_grpc_garbage_bytes_are_invalid_argument(gateway):
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary("/tradewire.v1.TradeExecutionService/ExecuteTrade",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\xff\xff\xff\xff", metadata=(("authorization", f"Bearer {gateway.key('alice')}"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("size", [70_000, 1_000_000])
async def test_grpc_oversized_message_is_resource_exhausted_naming_the_limit(gateway, size):
    # (grpcio itself refuses messages past 4 MiB, before any handler: without ErrorInfo.)
    client = GrpcClient(gateway.grpc_target)
    try:
        with pytest.raises(RpcFailure) as caught:
            await client.unary("ExecuteTrade", base(client_metadata={"k": "x" * size}), gateway.key("alice"))
    finally:
        await client.close()
    failure = caught.value
    assert (failure.code, failure.reason) == ("RESOURCE_EXHAUSTED", "PAYLOAD_TOO_LARGE"), failure
    assert "65536 bytes" in failure.message, failure


def test_missing_bearer_scheme_is_401(http, gateway):
    response = http.post("/v1/trades", json=VALID_JSON, headers={"authorization": gateway.key("alice")})
    body = _assert_clean(response, 401)
    assert "scheme" in body["message"].lower() or "bearer" in body["message"].lower()


# -- Connect and gRPC-Web: a message that does not decode, wherever it comes ------------------

STREAM_PATH = "/tradewire.v1.TradeExecutionService/StreamExecutionStatus"
MARKET_PATH = "/tradewire.v1.TradeExecutionService/GetMarket"


def _frame(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + struct.pack(">I", len(message)) + message


def _end_of_stream_error(response: httpx.Response) -> dict:
    """The error in a Connect stream's end-of-stream frame (flags 0x02)."""
    assert response.status_code == 200, response.text
    body = response.content
    assert body[0] & 0x02, body
    return json.loads(body[5:5 + struct.unpack(">I", body[1:5])[0]])["error"]


@pytest.mark.parametrize("content_type,frame,field", [
    ("application/connect+json", _frame(b'{"requestId":"x","zzz":1}'), "zzz"),
    ("application/connect+json", _frame(b'{"requestId":5}'), "request_id"),
    ("application/connect+json", _frame(b'{"requestId":"x","requestId":"y"}'), "requestId"),
    ("application/connect+json", _frame(b'{"requestId":'), None),
    ("application/connect+proto", _frame(b"\xff\xff\xff\xff"), None),
    ("application/connect+proto", b"\x00\x00\x00\x00\x40" + b"\x0a\x01x", None),  # announces 64 bytes, has 3
], ids=["unknown-field", "mistyped-field", "repeated-field", "cut-json", "bad-proto", "truncated-frame"])
def test_a_connect_stream_whose_message_does_not_decode_ends_invalid_argument(http, gateway, content_type, frame,
                                                                               field):
    response = http.post(STREAM_PATH, content=frame, headers={**_auth(gateway), "content-type": content_type})
    assert response.headers["content-type"] == content_type
    error = _end_of_stream_error(response)
    assert error["code"] == "invalid_argument", error
    assert "Available Fields" not in error["message"] and "Traceback" not in error["message"]
    if field is not None:
        assert field in error["message"], error


@pytest.mark.parametrize("frame", [_frame(b"\xff\xff\xff\xff"), b"\x00\x00\x00\x00\x40\x0a"],
                         ids=["bad-proto", "truncated-frame"])
def test_a_grpc_web_stream_whose_message_does_not_decode_is_invalid_argument(http, gateway, frame):
    response = http.post(STREAM_PATH, content=frame, headers={
        **_auth(gateway), "content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
    assert response.status_code == 200
    assert (response.headers.get("grpc-status") or _trailer_status(response.content)) == "3", response.content


@pytest.mark.parametrize("query", [
    "encoding=json&base64=1&message=a",  # not base64
    "encoding=json&base64=1&message=%21%21%21%21",  # not base64 either (it decoded to nothing before)
    "encoding=proto&base64=1&message=_____w",  # base64, but not a GetMarketRequest
    "encoding=json&message=%7B%22a%22%3A1%2C%22a%22%3A2%7D",  # {"a":1,"a":2}
], ids=["bad-base64", "not-base64-chars", "bad-proto", "repeated-key"])  # (an empty one is {}: transport edges)
def test_a_connect_get_whose_message_does_not_decode_is_400(http, gateway, query):
    response = http.get(f"{MARKET_PATH}?{query}", headers=_auth(gateway))
    body = _assert_clean(response, 400)
    assert body["code"] == "invalid_argument", body
    assert "Traceback" not in gateway.log_text()


def test_a_connect_get_with_a_good_base64_message_is_answered(http, gateway):
    message = base64.urlsafe_b64encode(b"{}").decode().rstrip("=")
    response = http.get(f"{MARKET_PATH}?encoding=json&base64=1&message={message}", headers=_auth(gateway))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", [CONNECT_PATH, "/v1/trades"], ids=["connect", "http"])
def test_a_repeated_json_field_is_400_naming_it(http, gateway, path):
    raw = json.dumps(VALID_JSON)[:-1] + ', "requestId": "second"}'
    response = http.post(path, content=raw, headers={**_auth(gateway), "content-type": "application/json"})
    body = _assert_clean(response, 400)
    assert _field_in_body(body, "requestId") and "more than once" in body["message"]


@pytest.mark.parametrize("path,protocol,content_type,body", [
    (CONNECT_PATH, "connect", "application/json", b'{"requestId": "x", "bogusField": 1}'),
    (CONNECT_PATH, "grpc-web", "application/grpc-web+proto", _frame(b"\xff\xff\xff\xff")),
    (STREAM_PATH, "connect", "application/connect+json", _frame(b'{"zzz": 1}')),
    ("/v1/trades", "http", "application/json", b'{"requestId": "x", "bogusField": 1}'),
], ids=["connect", "grpc-web", "connect-stream", "http"])
async def test_a_call_refused_before_admission_is_counted_and_logged_under_its_ids(http, gateway, path, protocol,
                                                                                   content_type, body):
    method = path.rsplit("/", 1)[-1] if path != "/v1/trades" else "ExecuteTrade"
    labels = dict(method=method, protocol=protocol, code="INVALID_ARGUMENT")
    before = await metric(gateway, "tradewire_requests_total", **labels)
    response = http.post(path, content=body, headers={**_auth(gateway), "content-type": content_type})
    correlation_id = response.headers["x-correlation-id"]  # the caller gets the ids of the refused call
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + 1

    def logged() -> list[dict]:
        lines = (json.loads(line) for line in gateway.log_text().splitlines() if correlation_id in line)
        return [line for line in lines if line.get("msg") == "call"]

    [line] = await eventually(logged, timeout=10, what="the refused call's access log line")
    assert line["method"] == method and line["reason"] == "MALFORMED_REQUEST" and line["protocol"] == protocol


@pytest.mark.parametrize("body,code,reason", [
    (b"\xff\xff\xff\xff", "INVALID_ARGUMENT", "MALFORMED_REQUEST"),
    (b"\x0a\x01x" + b"\x52" + b"\x80\xa3\x05" + b"x" * 86_400, "RESOURCE_EXHAUSTED", "PAYLOAD_TOO_LARGE"),
], ids=["undecodable", "oversized"])
async def test_a_grpc_call_refused_before_admission_is_counted_and_logged_under_its_ids(gateway, body, code, reason):
    labels = dict(method="ExecuteTrade", protocol="grpc", code=code)
    before = await metric(gateway, "tradewire_requests_total", **labels)
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary("/tradewire.v1.TradeExecutionService/ExecuteTrade",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(body, metadata=(("authorization", f"Bearer {gateway.key('alice')}"),))
    assert caught.value.code().name == code
    correlation_id = dict(caught.value.trailing_metadata())["x-correlation-id"]
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + 1

    def logged() -> list[dict]:
        lines = (json.loads(line) for line in gateway.log_text().splitlines() if correlation_id in line)
        return [line for line in lines if line.get("msg") == "call"]

    [line] = await eventually(logged, timeout=10, what="the refused call's access log line")
    assert line["reason"] == reason and line["protocol"] == "grpc"


# -- one credential: a credential header sent twice is refused alike on every protocol --------

@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
@pytest.mark.parametrize("order", ["good-first", "bad-first", "two-good-keys"])
async def test_a_credential_header_sent_twice_is_refused_on_every_protocol(http, gateway, header, order):
    def value(key: str) -> str:
        return f"Bearer {key}" if header == "authorization" else key

    good, other = gateway.key("alice"), "tw_bogus000_" + "z" * 40
    pairs = {"good-first": (good, other), "bad-first": (other, good),
             "two-good-keys": (good, gateway.key("bob"))}[order]
    headers = [(header, value(k)) for k in pairs]
    answers = {}
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary("/tradewire.v1.TradeExecutionService/GetMarket",
                                   request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(spb.GetMarketRequest(), metadata=tuple(headers))
        answers["grpc"] = (caught.value.code().name, caught.value.details())
    connect = http.post(MARKET_PATH, json={}, headers=[*headers, ("content-type", "application/json")])
    answers["connect"] = (connect.status_code, connect.json()["message"])
    web = http.post(MARKET_PATH, content=_frame(b""),
                    headers=[*headers, ("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")])
    answers["grpc-web"] = (web.headers.get("grpc-status") or _trailer_status(web.content), "")
    rest = http.get("/v1/market", headers=headers)
    answers["http"] = (rest.status_code, rest.json()["message"])

    assert answers["grpc"][0] == "UNAUTHENTICATED", answers
    assert answers["connect"][0] == answers["http"][0] == 401, answers
    assert answers["grpc-web"][0] == "16", answers
    for protocol in ("grpc", "connect", "http"):
        assert "exactly one credential" in answers[protocol][1] and header in answers[protocol][1], answers


# -- timestamps only the binary encodings can spell ------------------------------------------

BAD_TIMESTAMPS = [timestamp_pb2.Timestamp(seconds=2**62), timestamp_pb2.Timestamp(seconds=1, nanos=-1),
                  timestamp_pb2.Timestamp(seconds=1, nanos=1_000_000_000)]


@pytest.mark.parametrize("ts", BAD_TIMESTAMPS, ids=["seconds-2^62", "nanos-negative", "nanos-a-second"])
@pytest.mark.parametrize("method,request_msg,field", [
    ("ExecuteTrade", lambda ts: base(request_id="bad-ts", deadline=ts), "deadline"),
    ("GetTradeHistory", lambda ts: spb.GetTradeHistoryRequest(start_time=ts), "start_time"),
    ("GetTradeHistory", lambda ts: spb.GetTradeHistoryRequest(end_time=ts), "end_time"),
], ids=["deadline", "start_time", "end_time"])
async def test_an_invalid_timestamp_is_refused_naming_it_not_an_internal_error(http, gateway, ts, method,
                                                                               request_msg, field):
    message = request_msg(ts)
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary(f"/tradewire.v1.TradeExecutionService/{method}",
                                   request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(message, metadata=tuple(_auth(gateway).items()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details()
    connect = http.post(f"/tradewire.v1.TradeExecutionService/{method}", content=message.SerializeToString(),
                        headers={**_auth(gateway), "content-type": "application/proto"})
    body = _assert_clean(connect, 400)
    assert field in body["message"] and _field_in_body(body, field)
