"""Pure unit tests: path templates, the route table, query binding, JSON diagnostics."""

from __future__ import annotations

import pytest
from google.protobuf import message_factory

from tradewire.core.errors import TradewireError
from tradewire.gateway.http_json.codec import check_json_content_type, diagnose, merge_json
from tradewire.gateway.http_json.query import QueryBinder
from tradewire.gateway.http_json.routes import RouteTable, parse_template
from tradewire.v1 import service_pb2, trade_pb2


def test_plain_variable_and_custom_verb():
    t = parse_template("/v1/trades/{request_id}:cancel")
    assert t.variables == ("request_id",)
    assert t.openapi_path == "/v1/trades/{request_id}:cancel"
    assert t.match("/v1/trades/abc:cancel") == {"request_id": "abc"}
    # ':' and '.' belong to the id; only the last ':cancel' is the verb
    assert t.match("/v1/trades/a.b:c:cancel") == {"request_id": "a.b:c"}
    assert t.match("/v1/trades/abc") is None
    assert t.match("/v1/trades/abc:cancelx") is None
    assert t.match("/v1/trades/a/b:cancel") is None


def test_verb_on_literal_and_percent_decoding():
    t = parse_template("/v1/trades:batch")
    assert t.match("/v1/trades:batch") == {}
    assert t.match("/v1/trades") is None
    g = parse_template("/v1/trades/{request_id}")
    # %2F stays inside one segment and is decoded afterwards
    assert g.match("/v1/trades/a%2Fb") == {"request_id": "a/b"}
    assert g.match("/v1/trades/caf%C3%A9") == {"request_id": "café"}


def test_variable_with_segments_and_double_wildcard():
    t = parse_template("/v1/{name=shelves/*/books/*}")
    assert t.variables == ("name",)
    assert t.match("/v1/shelves/s1/books/b.2") == {"name": "shelves/s1/books/b.2"}
    assert t.match("/v1/shelves/s1") is None
    assert t.variable_patterns == {"name": "shelves/*/books/*"}
    w = parse_template("/v1/{path=files/**}:get")
    assert w.match("/v1/files/a/b/c:get") == {"path": "files/a/b/c"}
    n = parse_template("/v1/{parent.name}/items/*")
    assert n.variables == ("parent.name",)
    assert n.match("/v1/p/items/x") == {"parent.name": "p"}


@pytest.mark.parametrize(
    "bad", ["v1/x", "/v1/{x", "/v1/{x}}", "/v1/{1x}", "/v1/**/x", "/v1/x:", "/v1//x", "/v1/{a}/{a}", "/v1/{a={b}}"]
)
def test_malformed_templates_are_refused_at_build(bad):
    with pytest.raises(ValueError):
        parse_template(bad)


def test_route_table_404_405_and_specificity():
    table = RouteTable.build(
        [
            (parse_template("/v1/trades/{id}"), "GET", "get"),
            (parse_template("/v1/trades/{id}:cancel"), "POST", "cancel"),
            (parse_template("/v1/trades:batch"), "POST", "batch"),
            (parse_template("/v1/trades"), "POST", "create"),
            (parse_template("/v1/trades"), "GET", "list"),
        ]
    )
    assert table.match("POST", "/v1/trades/x:y:cancel")[:2] == ("cancel", {"id": "x:y"})
    assert table.match("GET", "/v1/trades/x:cancel")[:2] == ("get", {"id": "x:cancel"})
    assert table.match("POST", "/v1/trades:batch")[0] == "batch"
    assert table.match("DELETE", "/v1/trades") == (None, {}, ["POST", "GET"])
    assert table.match("POST", "/v1/trades/abc") == (None, {}, ["GET"])
    assert table.match("GET", "/v2/nothing") == (None, {}, [])


# --- query binding ---------------------------------------------------------------------------

def _bind(desc, qs: str, path_fields=(), body=""):
    msg = message_factory.GetMessageClass(desc)()
    QueryBinder(desc, set(path_fields), body).apply(msg, qs.encode())
    return msg


def test_query_dotted_names_nested_messages_and_maps():
    m = _bind(
        trade_pb2.TradeRequest.DESCRIPTOR,
        "mevProtection.strategy=MEV_STRATEGY_JITO_BUNDLE&mev_protection.jito_tip_lamports=5000"
        "&mev_protection.computeUnitLimit=7&client_metadata[team]=alpha&clientMetadata[k2]=v%20two"
        "&deadline=2030-01-02T03:04:05.5Z&swap_mode=2",
    )
    assert m.mev_protection.strategy == trade_pb2.MEV_STRATEGY_JITO_BUNDLE
    assert m.mev_protection.jito_tip_lamports == 5000
    assert m.mev_protection.compute_unit_limit == 7
    assert dict(m.client_metadata) == {"team": "alpha", "k2": "v two"}
    assert m.deadline.ToJsonString() == "2030-01-02T03:04:05.500Z"
    assert m.swap_mode == trade_pb2.SWAP_MODE_EXACT_OUT


def test_query_repeated_enums_by_name_and_number_and_timestamp_offsets():
    m = _bind(
        service_pb2.GetTradeHistoryRequest.DESCRIPTOR,
        "statuses=TRADE_STATUS_FILLED&statuses=10&mode=2&startTime=2024-05-01T10:00:00%2B02:00"
        "&end_time=2024-05-02T00:00:00+02:00&pageSize=25",
    )
    assert list(m.statuses) == [trade_pb2.TRADE_STATUS_FILLED, trade_pb2.TRADE_STATUS_REJECTED]
    assert m.mode == trade_pb2.TRADING_MODE_LIVE
    assert m.start_time.ToJsonString() == "2024-05-01T08:00:00Z"
    # a raw '+' arrives as a space; it is read back as the offset sign
    assert m.end_time.ToJsonString() == "2024-05-01T22:00:00Z"
    assert m.page_size == 25


@pytest.mark.parametrize(
    "qs, field, needle",
    [
        ("nope=1", "nope", "unknown query parameter 'nope'"),
        ("mode=1&mode=2", "mode", "duplicate query parameter 'mode'"),
        ("pageSize=1&page_size=2", "page_size", "duplicate query parameter 'page_size'"),
        ("pageSize=abc", "page_size", "expected an integer"),
        ("pageSize=5.0000000000000000001", "page_size", "expected an integer"),  # a double reads 5
        ("pageSize=1e-400", "page_size", "expected an integer"),  # a double reads 0
        ("pageSize=-1", "page_size", "out of range"),
        ("mode=TRADING_MODE_MOON", "mode", "not a value of tradewire.v1.TradingMode"),
        ("startTime=yesterday", "start_time", "RFC 3339"),
        ("startTime.seconds=5", "startTime.seconds", "unknown query parameter"),
        ("mode[x]=1", "mode[x]", "is not a map"),
    ],
)
def test_query_errors_name_the_parameter(qs, field, needle):
    with pytest.raises(TradewireError) as exc_info:
        _bind(service_pb2.GetTradeHistoryRequest.DESCRIPTOR, qs)
    err = exc_info.value
    assert err.reason == "MALFORMED_REQUEST"
    assert needle in err.message
    assert [v.field for v in err.field_violations] == [field]


def test_query_enum_numbers_are_bound_as_they_are_and_left_to_validation():
    # as in a JSON body (proto3 JSON takes any number for an open enum): the contract's rules
    # then refuse an undefined one, with the same reason and field path on every protocol
    m = _bind(service_pb2.GetTradeHistoryRequest.DESCRIPTOR, "mode=7&statuses=99")
    assert m.mode == 7 and list(m.statuses) == [99]


def test_query_refuses_fields_bound_by_path_or_body():
    desc = service_pb2.CancelTradeRequest.DESCRIPTOR
    with pytest.raises(TradewireError, match="set by the URL path"):
        _bind(desc, "request_id=x", path_fields=["request_id"], body="reason")
    with pytest.raises(TradewireError, match="set by the request body"):
        _bind(desc, "reason=x", path_fields=["request_id"], body="reason")
    with pytest.raises(TradewireError, match="set by the request body"):
        _bind(desc, "reason=x", path_fields=["request_id"], body="*")


def test_query_oneof_alternatives_conflict():
    desc = service_pb2.TradeSessionRequest.DESCRIPTOR
    m = _bind(desc, "trade.amount=1.5")
    assert m.WhichOneof("action") == "trade"
    with pytest.raises(TradewireError, match="alternatives"):
        _bind(desc, "trade.amount=1&cancel.reason=x")


# --- JSON decoding -----------------------------------------------------------------------------

def _decode(doc, desc=trade_pb2.TradeRequest.DESCRIPTOR):
    msg = message_factory.GetMessageClass(desc)()
    merge_json(doc, msg)
    return msg


def test_json_accepts_camel_and_snake_case():
    m = _decode({"requestId": "a", "input_mint": "b", "mevProtection": {"jito_tip_lamports": "1000"}})
    assert (m.request_id, m.input_mint, m.mev_protection.jito_tip_lamports) == ("a", "b", 1000)


@pytest.mark.parametrize(
    "doc, desc, field, needle",
    [
        ({"bogus": 1}, None, "bogus", "unknown field 'bogus'"),
        ({"mevProtection": {"nope": 1}}, None, "mev_protection.nope", "unknown field"),
        ({"slippageBps": "abc"}, None, "slippage_bps", "expected an integer"),
        ({"slippageBps": 1.5}, None, "slippage_bps", "expected an integer"),
        ({"slippageBps": -1}, None, "slippage_bps", "out of range"),
        ({"amount": 5}, None, "amount", "expected a string"),
        ({"mode": "LIVE"}, None, "mode", "not a value"),
        ({"mevProtection": 5}, None, "mev_protection", "expected an object"),
        ({"deadline": "tomorrow"}, None, "deadline",
         "expected an RFC 3339 timestamp like '2026-01-01T00:00:00Z', got \"tomorrow\""),
        ({"clientMetadata": {"k": 1}}, None, 'client_metadata["k"]', "expected a string"),
        ({"trades": [{}, {"slippageBps": "x"}]}, service_pb2.ExecuteTradeBatchRequest.DESCRIPTOR,
         "trades[1].slippage_bps", "expected an integer"),
        ({"trades": {}}, service_pb2.ExecuteTradeBatchRequest.DESCRIPTOR, "trades", "expected an array"),
        ({"atomicValidation": "yes"}, service_pb2.ExecuteTradeBatchRequest.DESCRIPTOR, "atomic_validation",
         "true or false"),
        ({"trade": {}, "cancel": {}}, service_pb2.TradeSessionRequest.DESCRIPTOR, "cancel", "alternatives"),
    ],
)
def test_json_errors_name_the_field(doc, desc, field, needle):
    with pytest.raises(TradewireError) as exc_info:
        _decode(doc, desc or trade_pb2.TradeRequest.DESCRIPTOR)
    err = exc_info.value
    assert err.reason == "MALFORMED_REQUEST"
    assert [v.field for v in err.field_violations] == [field], err.message
    assert needle in err.message
    assert "Traceback" not in err.message


def test_diagnose_finds_nothing_in_valid_json():
    assert diagnose({"requestId": "x", "slippageBps": "12", "mode": 1}, trade_pb2.TradeRequest.DESCRIPTOR) is None


@pytest.mark.parametrize("ct", ["application/json", "application/json; charset=UTF-8", "Application/JSON;charset=utf-8"])
def test_content_type_accepted(ct):
    check_json_content_type(ct)


@pytest.mark.parametrize("ct", [None, "text/plain", "application/x-www-form-urlencoded",
                                "application/json; charset=latin-1", "application/jsonx"])
def test_content_type_refused(ct):
    with pytest.raises(TradewireError) as exc_info:
        check_json_content_type(ct)
    assert exc_info.value.reason == "UNSUPPORTED_MEDIA_TYPE"
