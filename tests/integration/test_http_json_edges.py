"""JSON edge cases on HTTP/JSON (/v1/...) and Connect JSON, which share one decoder: one field
under two names, JSON type confusion, decode errors in our words with the field named, query
parameters read like the body, gzip bodies, and SSE Last-Event-ID bounds."""

import base64
import gzip
import json
import uuid

import httpx
import pytest
from google.rpc import error_details_pb2

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SERVICE = "/tradewire.v1.TradeExecutionService/"
HTTP_ROUTES = {"ExecuteTrade": "/v1/trades", "ExecuteTradeBatch": "/v1/trades:batch"}
PROTOCOLS = ["http", "connect"]
# What must never reach a caller: protobuf's parser, Python, or a 500.
LEAKS = ("Failed to parse", "Couldn't parse", "Message type", "repeated field", "ParseError", "Traceback",
         "object has no attribute", "invalid literal", "is not valid UTF-8")


def trade(**overrides) -> dict:
    body = {"requestId": f"edge-{uuid.uuid4().hex[:12]}", "mode": "TRADING_MODE_PAPER", "inputMint": SOL,
            "outputMint": USDC, "amount": "0.01", "slippageBps": 50}
    body.update(overrides)
    return body


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=30,
                      headers={"authorization": f"Bearer {gateway.key('bob')}"}) as c:
        yield c


def post(http: httpx.Client, protocol: str, method: str, body, headers: dict | None = None) -> httpx.Response:
    """A JSON body to ``method`` over HTTP/JSON or Connect; ``body`` may be raw bytes."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    path = HTTP_ROUTES[method] if protocol == "http" else SERVICE + method
    return http.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})


def error(response: httpx.Response, status: int) -> tuple[str, list[tuple[str, str]], str]:
    """(reason, [(field, description)], message) of an error answer, Connect or google.rpc.Status JSON."""
    assert response.status_code == status, response.text
    assert not any(leak in response.text for leak in LEAKS), response.text
    body = response.json()
    reason, fields = "", []
    for detail in body.get("details", []):
        if "@type" in detail:  # HTTP/JSON: google.rpc.Status as JSON
            kind, value = detail["@type"].rsplit("/", 1)[-1], detail
            if kind == "google.rpc.ErrorInfo":
                reason = value["reason"]
            elif kind == "google.rpc.BadRequest":
                fields = [(v["field"], v["description"]) for v in value["fieldViolations"]]
            continue
        raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))  # Connect: packed
        if detail["type"] == "google.rpc.ErrorInfo":
            reason = error_details_pb2.ErrorInfo.FromString(raw).reason
        elif detail["type"] == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(raw)
            fields = [(v.field, v.description) for v in bad.field_violations]
    return reason, fields, body["message"]


def refused(response: httpx.Response, field: str, reason: str = "MALFORMED_REQUEST", status: int = 400) -> str:
    """Asserts a 400 naming exactly ``field``; returns the message."""
    got_reason, fields, message = error(response, status)
    assert got_reason == reason, response.text
    assert [f for f, _ in fields] == [field], response.text
    assert message.startswith(f"{field}: "), message
    return message


def trade_exists(http: httpx.Client, request_id: str) -> bool:
    response = http.get(f"/v1/trades/{request_id}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


# -- 1. one field under its JSON name and its proto name ---------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_idempotency_key_under_both_names_is_refused_and_runs_nothing(http, protocol):
    first, second = f"dupc-{uuid.uuid4().hex[:8]}", f"dupd-{uuid.uuid4().hex[:8]}"
    body = trade(requestId=first)
    body["request_id"] = second
    message = refused(post(http, protocol, "ExecuteTrade", body), "request_id")
    assert "'requestId'" in message and "'request_id'" in message and "once" in message
    assert not trade_exists(http, first) and not trade_exists(http, second)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method,body,field", [
    ("ExecuteTrade", trade(mevProtection={"computeUnitLimit": 1, "compute_unit_limit": 2}),
     "mev_protection.compute_unit_limit"),
    ("ExecuteTradeBatch", {"trades": [trade(), {**trade(), "slippage_bps": 60}]}, "trades[1].slippage_bps"),
    ("ExecuteTradeBatch", {"trades": [trade()], "atomicValidation": True, "atomic_validation": False},
     "atomic_validation"),
], ids=["nested-message", "batch-item", "batch-top-level"])
def test_a_field_under_both_names_is_refused_at_any_depth(http, protocol, method, body, field):
    refused(post(http, protocol, method, body), field)


def test_page_size_under_both_names_is_refused_on_connect(http):
    refused(post(http, "connect", "GetTradeHistory", {"pageSize": 1, "page_size": 2}), "page_size")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_key_repeated_in_a_nested_object_is_named_by_its_proto_path(http, protocol):
    head = json.dumps(trade())[:-1]
    raw = (head + ', "mevProtection": {"strategy": "MEV_STRATEGY_NONE", "strategy": "MEV_STRATEGY_PRIORITY_FEE"}}')
    message = refused(post(http, protocol, "ExecuteTrade", raw.encode()), "mev_protection.strategy")
    assert "more than once" in message


# -- 2. JSON type confusion ------------------------------------------------------------------

CONFUSED = [
    ("ExecuteTrade", trade(mode=True), "mode", "enum name or integer"),
    ("ExecuteTrade", trade(swapMode=1.0), "swap_mode", "enum name or integer"),
    ("ExecuteTrade", trade(mode="1_0"), "mode", "not a value of tradewire.v1.TradingMode"),
    ("ExecuteTrade", trade(mevProtection=[]), "mev_protection", "expected an object"),
    ("ExecuteTrade", trade(slippageBps="1_0"), "slippage_bps", "expected an integer"),
    ("ExecuteTrade", trade(slippageBps=True), "slippage_bps", "expected an integer"),
    ("ExecuteTrade", trade(slippageBps="+5"), "slippage_bps", "expected an integer"),
    ("ExecuteTrade", trade(slippageBps=9.7), "slippage_bps", "expected an integer"),
    ("ExecuteTradeBatch", {"trades": [trade(), trade(mode=2.5)]}, "trades[1].mode", "enum name or integer"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method,body,field,words", CONFUSED, ids=[f"{c[2]}-{i}" for i, c in enumerate(CONFUSED)])
def test_json_type_confusion_is_refused_naming_the_field(http, protocol, method, body, field, words):
    message = refused(post(http, protocol, method, body), field)
    assert words in message
    for item in body.get("trades", [body]):
        assert not trade_exists(http, item["requestId"])


@pytest.mark.parametrize("body,field", [
    ({"statuses": [9.7]}, "statuses[0]"),
    ({"statuses": [True]}, "statuses[0]"),
    ({"pageSize": "1_0"}, "page_size"),
    ({"pageSize": False}, "page_size"),
    ({"mode": [1]}, "mode"),
])
def test_history_filters_of_the_wrong_json_type_are_refused_on_connect(http, body, field):
    refused(post(http, "connect", "GetTradeHistory", body), field)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_integer_written_as_a_whole_float_is_accepted(http, protocol):
    """The proto3 JSON mapping accepts 50.0, 5e1 and "5e1" for an integer field (as protobuf's
    own parsers do); an enum takes a name or an integer only."""
    body = trade(slippageBps=50.0, mevProtection={"computeUnitLimit": "2e5"})
    response = post(http, protocol, "ExecuteTrade", body)
    assert response.status_code == 200, response.text
    assert trade_exists(http, body["requestId"])


# -- 3. decode errors in our words, with the field named -----------------------------------


def test_a_padded_integer_string_names_page_size_on_connect(http):
    message = refused(post(http, "connect", "GetTradeHistory", {"pageSize": " 1"}), "page_size")
    assert "expected an integer (uint32), got ' 1'" in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("trades,field", [([None], "trades[0]"), ([trade(), None], "trades[1]")])
def test_a_null_batch_item_names_its_index(http, protocol, trades, field):
    message = refused(post(http, protocol, "ExecuteTradeBatch", {"trades": trades}), field)
    assert "null is not allowed" in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_empty_field_name_is_an_unknown_field_named_visibly(http, protocol):
    message = refused(post(http, protocol, "ExecuteTrade", {**trade(), "": 1}), '""')
    assert "unknown field ''" in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_null_map_value_is_named_by_its_key(http, protocol):
    refused(post(http, protocol, "ExecuteTrade", trade(clientMetadata={"desk": None})), 'client_metadata["desk"]')


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_nested_too_deeply_for_the_parser_is_400_not_500(http, protocol):
    raw = b'{"requestId": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    reason, _, message = error(post(http, protocol, "ExecuteTrade", raw), 400)
    assert reason == "MALFORMED_REQUEST" and "nested too deeply" in message


# -- 4. query parameters agree with the body ---------------------------------------------------


def history(http: httpx.Client, query: str) -> httpx.Response:
    return http.get("/v1/trades?" + query)


@pytest.mark.parametrize("query,body,field", [
    ("mode=5", {"mode": 5}, "mode"),
    ("statuses=99", {"statuses": [99]}, "statuses[0]"),
    ("statuses=TRADE_STATUS_FILLED&statuses=99", {"statuses": ["TRADE_STATUS_FILLED", 99]}, "statuses[1]"),
])
def test_an_undefined_enum_number_in_the_query_is_refused_by_validation_as_elsewhere(http, query, body, field):
    via_query = error(history(http, query), 400)
    via_connect = error(post(http, "connect", "GetTradeHistory", body), 400)
    assert via_query == via_connect, (via_query, via_connect)
    reason, fields, _ = via_query
    assert reason == "VALIDATION_FAILED" and [f for f, _ in fields] == [field]
    assert "defined enum values" in fields[0][1]


@pytest.mark.parametrize("query,body,field", [
    ("pageSize=%2B5", {"pageSize": "+5"}, "page_size"),
    ("pageSize=%205", {"pageSize": " 5"}, "page_size"),
    ("pageSize=1_0", {"pageSize": "1_0"}, "page_size"),
    ("pageSize=9.7", {"pageSize": "9.7"}, "page_size"),
    ("statuses=TRADE_STATUS_FILLED&statuses=BOGUS", {"statuses": ["TRADE_STATUS_FILLED", "BOGUS"]}, "statuses[1]"),
    ("mode=1.0", {"mode": "1.0"}, "mode"),
])
def test_a_query_value_is_read_as_strictly_as_the_json_body(http, query, body, field):
    via_query = error(history(http, query), 400)
    via_connect = error(post(http, "connect", "GetTradeHistory", body), 400)
    assert via_query[0] == via_connect[0] == "MALFORMED_REQUEST", (via_query, via_connect)
    assert [f for f, _ in via_query[1]] == [f for f, _ in via_connect[1]] == [field], (via_query, via_connect)
    assert via_connect[1][0][1] in via_query[1][0][1]  # the same words, after the parameter's name


@pytest.mark.parametrize("query", ["page_size=1&pageSize=2", "pageSize=1&page_size=2"])
def test_a_query_field_under_both_names_is_named_canonically(http, query):
    message = refused(history(http, query), "page_size")
    assert "duplicate query parameter" in message


def test_a_query_field_set_by_the_body_is_named_canonically(http):
    message = refused(http.post("/v1/trades?requestId=x", json=trade()), "request_id")
    assert "'requestId'" in message and "set by the request body" in message


def test_an_empty_query_parameter_name_is_shown(http):
    message = refused(history(http, "=5"), '""')
    assert "unknown query parameter ''" in message


def test_query_forms_the_body_accepts_still_work(http):
    response = history(http, "pageSize=1e1&mode=1&statuses=TRADE_STATUS_FILLED&statuses=9")
    assert response.status_code == 200, response.text


# -- 5. Content-Encoding: gzip --------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_gzip_body_is_decoded(http, protocol):
    body = trade()
    response = post(http, protocol, "ExecuteTrade", gzip.compress(json.dumps(body).encode()),
                    {"content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["requestId"] == body["requestId"]


def test_a_gzip_body_that_inflates_past_the_limit_is_413(http):
    padded = json.dumps(trade(clientMetadata={"k": "x" * 70_000})).encode()  # the test gateway takes 64 KiB
    packed = gzip.compress(padded)
    assert len(packed) < 65_536
    reason, _, message = error(post(http, "http", "ExecuteTrade", packed, {"content-encoding": "gzip"}), 413)
    assert reason == "PAYLOAD_TOO_LARGE" and "decompressed" in message


def test_a_body_that_is_not_gzip_under_content_encoding_gzip_is_400(http):
    reason, _, message = error(post(http, "http", "ExecuteTrade", json.dumps(trade()).encode(),
                                    {"content-encoding": "gzip"}), 400)
    assert reason == "MALFORMED_REQUEST" and "gzip" in message


def test_an_unsupported_content_encoding_is_415_naming_it(http):
    reason, _, message = error(post(http, "http", "ExecuteTrade", b"\x00\x01", {"content-encoding": "br"}), 415)
    assert reason == "UNSUPPORTED_MEDIA_TYPE" and "Content-Encoding 'br'" in message


# -- 6. SSE Last-Event-ID --------------------------------------------------------------------


@pytest.fixture
def finished_trade(http) -> str:
    body = trade()
    response = post(http, "http", "ExecuteTrade", body)
    assert response.status_code == 200, response.text
    return body["requestId"]


def sse(http: httpx.Client, request_id: str, last_event_id: str) -> httpx.Response:
    return http.get(f"/v1/trades/{request_id}/status",
                    headers={"accept": "text/event-stream", "last-event-id": last_event_id})


@pytest.mark.parametrize("last", ["-1", "18446744073709551615", "99999999999999999999999", "+3", "1_0", "x"])
def test_a_last_event_id_that_is_no_resumable_sequence_is_400(http, finished_trade, last):
    message = refused(sse(http, finished_trade, last), "Last-Event-ID")
    assert "a sequence number from 0 to 18446744073709551614" in message


def test_a_valid_last_event_id_resumes_after_it(http, finished_trade):
    response = sse(http, finished_trade, "1")
    assert response.status_code == 200, response.text
    ids = [line[4:] for line in response.text.splitlines() if line.startswith("id: ")]
    assert ids and ids[0] == "2", response.text


# -- timestamps: RFC 3339 only, as the error says --------------------------------------------


NOT_RFC3339 = ["2099-1-1T00:00:00Z", "２０９９-01-01T00:00:00Z", "2099-01-01T00:00:00+24:00",
               "2099-01-01T00:00:00+01:99", "2099-01-01T00:00:00.Z", "2099-01-01t00:00:00z", "2099-01-01 00:00:00Z"]


@pytest.mark.parametrize("text", NOT_RFC3339)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_timestamp_not_in_rfc3339_is_refused_naming_the_field(http, protocol, text):
    request_id = f"ts-{uuid.uuid4().hex[:10]}"
    message = refused(post(http, protocol, "ExecuteTrade", trade(requestId=request_id, deadline=text)), "deadline")
    assert "RFC 3339" in message
    assert not trade_exists(http, request_id)
    if protocol == "connect":  # (HTTP/JSON reads history filters from the query: below)
        refused(post(http, protocol, "GetTradeHistory", {"startTime": text}), "start_time")


@pytest.mark.parametrize("text", NOT_RFC3339)
def test_a_timestamp_not_in_rfc3339_is_refused_in_the_query(http, text):
    got_reason, fields, _ = error(http.get("/v1/trades", params={"startTime": text}), 400)
    assert got_reason == "MALFORMED_REQUEST" and [f for f, _ in fields] == ["start_time"]


@pytest.mark.parametrize("text", ["2099-01-01T00:00:00Z", "2099-01-01T00:00:00.123456789Z", "2099-01-01T01:30:00+01:30",
                                  "2099-01-01T00:00:00-23:59"])
def test_rfc3339_timestamps_in_every_form_still_work(http, text):
    assert http.get("/v1/trades", params={"startTime": text}).status_code == 200
    assert post(http, "connect", "GetTradeHistory", {"startTime": text}).status_code == 200


def test_a_body_naming_another_request_id_than_the_path_is_refused(http):
    # a client that built the body from a whole CancelTradeRequest must not act on the path's
    # trade while believing it cancelled the body's (Connect, where the body is all, would)
    response = http.post("/v1/trades/edge-path-id:cancel", json={"requestId": "edge-body-id"})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["details"][0]["reason"] == "MALFORMED_REQUEST"
    assert "edge-path-id" in error["message"] and "edge-body-id" in error["message"]
    bad_request = next(d for d in error["details"] if d["@type"].endswith("BadRequest"))
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["request_id"]
    # the same id in both says one thing: read as the path says (no such trade)
    same = http.post("/v1/trades/edge-path-id:cancel", json={"requestId": "edge-path-id"})
    assert same.status_code == 404 and same.json()["details"][0]["reason"] == "TRADE_NOT_FOUND", same.text


def test_a_credential_in_the_path_or_a_query_value_is_not_repeated_back(http, gateway):
    key = gateway.key("alice")
    route = http.get(f"/{key}")
    assert route.status_code == 404 and key[12:28] not in route.text, route.text
    query = http.get(f"/v1/trades?pageSize={key}")
    assert query.status_code == 400 and key[12:28] not in query.text, query.text
    assert [v["field"] for v in query.json()["details"][1]["fieldViolations"]] == ["page_size"]
