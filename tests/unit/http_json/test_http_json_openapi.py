"""The OpenAPI document and the /docs page, built from the descriptors and their comments."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from http_json_support import SERVICE
from tradewire.core.auth.permissions import METHOD_ACCESS, Access
from tradewire.gateway.http_json import default_descriptor_set_path, openapi_document
from tradewire.gateway.http_json.routes import method_bindings
from tradewire.v1 import trade_pb2


@pytest.fixture(scope="module")
def doc() -> dict:
    return openapi_document(SERVICE, default_descriptor_set_path())


def _refs(node, out):
    if isinstance(node, dict):
        if "$ref" in node:
            out.append(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def _valid(doc: dict, schema: dict, value) -> bool:
    """``value`` against ``schema``, a schema of ``doc`` (OpenAPI 3.1: JSON Schema 2020-12 with
    OpenAPI's vocabulary), its $refs resolved in ``doc``."""
    return OAS31Validator({**schema, "components": doc["components"]}).is_valid(value)


def test_the_document_is_valid_openapi_3_1(doc):
    validate(doc)  # raises, naming the path, on anything the OpenAPI 3.1 schema refuses
    assert doc["openapi"] == "3.1.0"


def test_every_binding_of_every_annotated_rpc_is_present(doc):
    assert doc["openapi"].startswith("3.1")
    expected = {
        ("post", "/v1/trades"): "ExecuteTrade",
        ("get", "/v1/trades/{request_id}/status"): "StreamExecutionStatus",
        ("get", "/v1/trades"): "GetTradeHistory",
        ("get", "/v1/history"): "GetTradeHistory",
        ("get", "/v1/positions"): "GetPositions",
        ("get", "/v1/market"): "GetMarket",
        ("get", "/v1/health"): "HealthCheck",
        ("get", "/v1/trades/{request_id}"): "GetTrade",
        ("post", "/v1/trades/{request_id}:cancel"): "CancelTrade",
        ("post", "/v1/trades:batch"): "ExecuteTradeBatch",
        ("post", "/v1/sessions"): "TradeSession",
    }
    found = {(m, p): op["x-rpc"].rsplit("/", 1)[1] for p, item in doc["paths"].items() for m, op in item.items()}
    assert found == expected
    annotated = {m.name for m in SERVICE.methods if method_bindings(m)}
    assert set(found.values()) == annotated
    op_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(op_ids) == len(set(op_ids))


def test_all_refs_resolve_and_every_message_and_enum_has_a_schema(doc):
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc, []):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for f in (SERVICE.file, *SERVICE.file.dependencies):
        if f.package != "tradewire.v1":
            continue
        for name in (*f.message_types_by_name, *f.enum_types_by_name):
            assert f"tradewire.v1.{name}" in schemas
    assert "google.rpc.Status" in schemas


def test_field_descriptions_come_from_proto_comments(doc):
    schemas = doc["components"]["schemas"]
    req = schemas["tradewire.v1.TradeRequest"]
    assert req["description"].startswith("A swap to execute.")
    assert "idempotency key" in req["properties"]["requestId"]["description"]
    assert "Slippage tolerance in basis points" in req["properties"]["slippageBps"]["description"]
    assert "PAPER or LIVE" in req["properties"]["mode"]["description"]
    mev = schemas["tradewire.v1.MevStrategy"]
    assert mev["anyOf"][0]["enum"][0] == "MEV_STRATEGY_UNSPECIFIED"
    assert "jitodontfront" in mev["description"]
    ops = doc["paths"]["/v1/trades"]
    assert ops["post"]["description"].startswith("Executes one swap")
    assert doc["info"]["description"].startswith("tradewire's one contract")


def test_json_names_and_proto3_json_types(doc):
    schemas = doc["components"]["schemas"]
    fees = schemas["tradewire.v1.Fees"]["properties"]
    assert fees["baseFeeLamports"]["type"] == "string" and fees["baseFeeLamports"]["format"] == "uint64"
    result = schemas["tradewire.v1.TradeResult"]["properties"]
    assert result["slot"]["type"] == "string"
    assert result["realizedSlippageBps"] == {
        "type": "integer", "format": "int32",
        "description": "Fill versus quote in basis points; positive means worse than quoted.",
    }
    assert result["createdAt"]["type"] == "string" and result["createdAt"]["format"] == "date-time"
    assert result["clientMetadata"]["type"] == "object"
    assert "request_id" not in result
    assert schemas["tradewire.v1.TradeRequest"]["properties"]["requestId"]["maxLength"] == 64


def test_parameters_bodies_and_responses(doc):
    history = doc["paths"]["/v1/trades"]["get"]
    params = {p["name"]: p for p in history["parameters"]}
    assert set(params) == {"mode", "mint", "statuses", "startTime", "endTime", "pageSize", "pageToken"}
    assert all(p["in"] == "query" for p in params.values())
    assert params["statuses"]["schema"]["type"] == "array" and params["statuses"]["explode"] is True
    assert params["mode"]["schema"] == {"$ref": "#/components/schemas/tradewire.v1.TradingMode"}
    assert params["startTime"]["schema"]["format"] == "date-time"
    assert "requestBody" not in history

    cancel = doc["paths"]["/v1/trades/{request_id}:cancel"]["post"]
    assert [(p["name"], p["in"], p["required"]) for p in cancel["parameters"]] == [("request_id", "path", True)]
    body = cancel["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"reason"}  # the path field is not in the body

    execute = doc["paths"]["/v1/trades"]["post"]
    assert execute["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("TradeRequest")
    assert execute["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("TradeResult")
    assert execute["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("Status")

    stream = doc["paths"]["/v1/trades/{request_id}/status"]["get"]
    content = stream["responses"]["200"]["content"]
    assert set(content) == {"text/event-stream", "application/x-ndjson"}
    assert content["application/x-ndjson"]["schema"]["properties"]["result"]["$ref"].endswith("ExecutionStatus")
    names = {p["name"] for p in stream["parameters"]}
    assert names == {"request_id", "fromSequence", "Last-Event-ID"}

    session = doc["paths"]["/v1/sessions"]["post"]
    assert "501" in session["responses"]


def test_missing_descriptor_set_degrades_to_no_descriptions(tmp_path):
    d = openapi_document(SERVICE, tmp_path / "missing.binpb")
    props = d["components"]["schemas"]["tradewire.v1.TradeRequest"]["properties"]
    assert "description" not in props["slippageBps"]
    assert d["paths"]["/v1/trades"]["post"]["operationId"] == "TradeExecutionService_ExecuteTrade"


async def test_openapi_json_and_docs_are_served(client, app):
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == app.openapi
    r = await client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "docs must not load remote assets"
    for rpc in ("ExecuteTrade", "StreamExecutionStatus", "CancelTrade", "TradeSession"):
        assert rpc in html
    assert "/v1/trades/{request_id}:cancel" in html
    assert "idempotency key" in html
    # the curl examples work as pasted: the token variable in double quotes, so the shell expands it
    assert "-H &quot;authorization: Bearer $TOKEN&quot;" in html and "'authorization: Bearer $TOKEN'" not in html
    assert (await client.post("/openapi.json")).status_code == 405


def test_public_methods_take_credentials_optionally(doc):
    schemes = doc["components"]["securitySchemes"]
    public = set()
    for item in doc["paths"].values():
        for op in item.values():
            rpc = op["x-rpc"].rsplit("/", 1)[1]
            if METHOD_ACCESS.get(rpc) is Access.PUBLIC:
                public.add(rpc)
                # {} = no credentials; the schemes still apply when some are sent.
                assert op["security"] == [{}, *doc["security"]]
            else:
                assert "security" not in op  # the global requirement
            for requirement in op.get("security", doc["security"]):
                assert set(requirement) <= set(schemes) and all(v == [] for v in requirement.values())
    assert "HealthCheck" in public
    assert doc["paths"]["/v1/health"]["get"]["security"][0] == {}
    assert doc["security"] == [{"bearerAuth": []}, {"apiKey": []}]


def test_enum_schemas_take_names_and_numbers(doc):
    schemas = doc["components"]["schemas"]
    for f in (SERVICE.file, *SERVICE.file.dependencies):
        if f.package != "tradewire.v1":
            continue
        for e in f.enum_types_by_name.values():
            names, numbers = schemas[e.full_name]["anyOf"]
            assert names == {"type": "string", "enum": [v.name for v in e.values]}
            assert numbers["type"] == "integer" and sorted(numbers["enum"]) == sorted({v.number for v in e.values})
    mode = schemas["tradewire.v1.TradingMode"]
    live = trade_pb2.TRADING_MODE_LIVE
    assert _valid(doc, mode, "TRADING_MODE_LIVE") and _valid(doc, mode, live)
    assert not _valid(doc, mode, str(live)) and not _valid(doc, mode, 99) and not _valid(doc, mode, True)
    assert "(" + str(live) + ")" in mode["description"] and "requests may give the number" in mode["description"]


async def test_a_request_with_an_enum_number_and_its_response_match_the_schemas(doc, client, fake):
    execute = doc["paths"]["/v1/trades"]["post"]
    request = {"requestId": "x", "mode": trade_pb2.TRADING_MODE_LIVE}
    assert _valid(doc, execute["requestBody"]["content"]["application/json"]["schema"], request)
    r = await client.post("/v1/trades", json=request)
    assert r.status_code == 200 and fake.last.request.mode == trade_pb2.TRADING_MODE_LIVE
    assert r.json()["status"] == "TRADE_STATUS_FILLED"  # responses carry names
    assert _valid(doc, execute["responses"]["200"]["content"]["application/json"]["schema"], r.json())
    health = doc["paths"]["/v1/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert _valid(doc, health, (await client.get("/v1/health")).json())


def test_every_bound_body_is_required(doc):
    assert doc["paths"]["/v1/trades"]["post"]["requestBody"]["required"] is True  # body: "*"
    for method in SERVICE.methods:
        for b in method_bindings(method):
            op = doc["paths"][b.template.openapi_path][b.http_method.lower()]
            assert ("requestBody" in op) == bool(b.body), (method.name, b.body)
            if b.body:
                assert op["requestBody"]["required"] is True
                assert set(op["requestBody"]["content"]) == {"application/json"}
