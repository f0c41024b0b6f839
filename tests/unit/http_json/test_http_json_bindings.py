"""Every google.api.http binding of service.proto, driven through the ASGI app."""

from __future__ import annotations

import httpx
import pytest

from tradewire.core.context import Protocol
from tradewire.gateway.http_json import build_http_json_app
from tradewire.v1 import service_pb2, trade_pb2

MINT_A = "So11111111111111111111111111111111111111112"
MINT_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


async def test_execute_trade_post_body_star(client, fake):
    body = {
        "requestId": "r-1",
        "mode": "TRADING_MODE_PAPER",
        "input_mint": MINT_A,
        "outputMint": MINT_B,
        "amount": "1.5",
        "slippageBps": 50,
        "mevProtection": {"strategy": "MEV_STRATEGY_JITO_BUNDLE", "jitoTipLamports": "1000"},
        "clientMetadata": {"bot": "alpha"},
        "deadline": "2030-01-01T00:00:00Z",
    }
    r = await client.post("/v1/trades", json=body, headers={"X-Correlation-ID": "abc"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    call = fake.last
    assert call.rpc == "ExecuteTrade"
    req = call.request
    assert isinstance(req, trade_pb2.TradeRequest)
    assert (req.request_id, req.mode, req.input_mint, req.output_mint, req.amount) == (
        "r-1", trade_pb2.TRADING_MODE_PAPER, MINT_A, MINT_B, "1.5")
    assert req.slippage_bps == 50 and req.mev_protection.jito_tip_lamports == 1000
    assert dict(req.client_metadata) == {"bot": "alpha"}
    assert req.deadline.seconds > 0
    # the context the core sees
    ctx = call.ctx
    assert ctx.protocol is Protocol.HTTP_JSON and ctx.method == "ExecuteTrade"
    assert ctx.headers["x-correlation-id"] == "abc"
    assert all(k == k.lower() for k in ctx.headers)
    assert ctx.peer == "10.1.2.3:4567"
    # camelCase, unpopulated fields emitted, 64-bit integers as strings, compact
    out = r.json()
    assert out["requestId"] == "r-1" and out["tradeId"] == "t-1"
    assert out["status"] == "TRADE_STATUS_FILLED"
    assert out["signature"] == "" and out["amountOut"] == "" and out["realizedSlippageBps"] == 0
    assert out["mode"] == "TRADING_MODE_UNSPECIFIED"
    assert out["fees"]["baseFeeLamports"] == "5000" and out["fees"]["jitoTipLamports"] == "0"
    assert out["slot"] == str(2**60)
    assert out["clientMetadata"] == {}
    assert b" " not in r.content and b"\n" not in r.content
    # response headers the core set
    assert r.headers["x-correlation-id"] == "corr-1"
    assert r.headers["x-ratelimit-remaining"] == "41"


async def test_get_trade_history_main_and_additional_binding(client, fake):
    for path in ("/v1/trades", "/v1/history"):
        r = await client.get(path, params=[("mode", "TRADING_MODE_LIVE"), ("statuses", "TRADE_STATUS_FILLED"),
                                           ("statuses", "12"), ("pageSize", "10"), ("page_token", "tok"),
                                           ("startTime", "2024-01-01T00:00:00Z"), ("mint", MINT_A)])
        assert r.status_code == 200, r.text
        req = fake.last.request
        assert fake.last.rpc == "GetTradeHistory"
        assert req.mode == trade_pb2.TRADING_MODE_LIVE
        assert list(req.statuses) == [trade_pb2.TRADE_STATUS_FILLED, trade_pb2.TRADE_STATUS_CANCELLED]
        assert (req.page_size, req.page_token, req.mint) == (10, "tok", MINT_A)
        assert req.start_time.ToJsonString() == "2024-01-01T00:00:00Z"
        assert not req.HasField("end_time")
        assert r.json() == {
            "trades": [r.json()["trades"][0]],
            "nextPageToken": "next",
        }
        assert r.json()["trades"][0]["requestId"] == "r1"


async def test_get_positions_and_health(client, fake):
    r = await client.get("/v1/positions?mode=1&mint=" + MINT_B)
    assert r.status_code == 200
    assert fake.last.rpc == "GetPositions"
    assert fake.last.request == service_pb2.GetPositionsRequest(mode=trade_pb2.TRADING_MODE_PAPER, mint=MINT_B)
    assert r.json() == {"positions": [], "valuationMint": "USDC", "totalMarketValue": "", "totalPnl": "",
                        "unvaluedPositions": 0}

    r = await client.get("/v1/health")
    assert r.status_code == 200
    assert fake.last.rpc == "HealthCheck"
    out = r.json()
    assert out["status"] == "SERVING_STATUS_SERVING" and out["version"] == "1.2.3" and out["components"] == []


@pytest.mark.parametrize("request_id", ["abc", "a.b", "ns:trade:42", "x.y:z-1_2", "odd%2Fone"])
async def test_get_trade_path_param_with_colons_and_dots(client, fake, request_id):
    r = await client.get(f"/v1/trades/{request_id}")
    assert r.status_code == 200, r.text
    assert fake.last.rpc == "GetTrade"
    expected = request_id.replace("%2F", "/")
    assert fake.last.request.request_id == expected
    assert r.json()["requestId"] == expected


@pytest.mark.parametrize("request_id", ["abc", "a.b:c", "n:s:1"])
async def test_cancel_trade_custom_verb_with_the_path_id_also_in_the_body(client, fake, request_id):
    r = await client.post(f"/v1/trades/{request_id}:cancel", json={"reason": "changed my mind", "requestId": "zzz"})
    assert r.status_code == 400 and r.json()["details"][0]["reason"] == "MALFORMED_REQUEST", r.text  # two ids
    r = await client.post(f"/v1/trades/{request_id}:cancel", json={"reason": "changed my mind", "requestId": request_id})
    assert r.status_code == 200, r.text
    assert fake.last.rpc == "CancelTrade"
    assert fake.last.request.request_id == request_id
    assert fake.last.request.reason == "changed my mind"
    assert r.json() == {"requestId": request_id, "status": "TRADE_STATUS_CANCELLED"}


async def test_cancel_without_body(client, fake):
    r = await client.post("/v1/trades/r-9:cancel")
    assert r.status_code == 200, r.text
    assert fake.last.request == service_pb2.CancelTradeRequest(request_id="r-9")


async def test_execute_trade_batch_custom_verb_on_collection(client, fake):
    r = await client.post(
        "/v1/trades:batch",
        json={"trades": [{"requestId": "a"}, {"request_id": "b"}], "atomic_validation": True},
    )
    assert r.status_code == 200, r.text
    assert fake.last.rpc == "ExecuteTradeBatch"
    assert [t.request_id for t in fake.last.request.trades] == ["a", "b"]
    assert fake.last.request.atomic_validation is True
    assert r.json()["results"][1] == {"index": 1}  # oneof members have presence: not emitted


async def test_trade_session_is_501_duplex_unsupported(client, fake, errors_seen):
    r = await client.post("/v1/sessions", json={"trade": {"requestId": "x"}})
    assert r.status_code == 501
    body = r.json()
    assert body["code"] == 12
    assert body["message"].startswith("TradeSession is a bidirectional stream")
    assert "Use native gRPC" in body["message"]  # this listener's Connect cannot do duplex either
    assert body["details"][0]["reason"] == "DUPLEX_UNSUPPORTED"
    assert fake.calls == []
    assert errors_seen[-1][0].reason == "DUPLEX_UNSUPPORTED"
    assert errors_seen[-1][1].method == "TradeSession"


async def test_body_star_route_refuses_query_parameters(client, fake):
    r = await client.post("/v1/trades?requestId=x", json={})
    assert r.status_code == 400
    assert "requestId" in r.json()["message"]
    assert fake.calls == []


async def test_unknown_route_404_and_wrong_method_405(client, errors_seen):
    r = await client.get("/v1/nothing/here")
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == 5
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["reason"] == "ROUTE_NOT_FOUND"
    assert "/v1/nothing/here" in body["message"]

    # (HEAD is answered wherever GET is a unary call, not where GET opens a stream)
    for method, path, allow in [("DELETE", "/v1/trades", "GET, HEAD, POST"), ("POST", "/v1/health", "GET, HEAD"),
                                ("GET", "/v1/sessions", "POST"), ("PUT", "/v1/trades/x:cancel", "GET, HEAD, POST"),
                                ("POST", "/v1/trades/x", "GET, HEAD"), ("POST", "/v1/trades/x/status", "GET")]:
        r = await client.request(method, path)
        assert r.status_code == 405, (method, path)
        assert r.headers["allow"] == allow
        assert r.json()["code"] == 12
        assert r.headers["content-type"] == "application/json"
    assert errors_seen and errors_seen[-1][1] is None


async def test_trailing_slash_and_empty_segment_are_404(client):
    assert (await client.get("/v1/trades/")).status_code == 404
    assert (await client.get("/v1/trades//status")).status_code == 404


async def test_fallback_gets_non_api_paths_only(fake):
    async def static(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"static:" + scope["path"].encode()})

    service = service_pb2.DESCRIPTOR.services_by_name["TradeExecutionService"]
    app = build_http_json_app(fake, service, max_body_bytes=100, fallback=static)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/index.html")).text == "static:/index.html"
        assert (await c.get("/")).text == "static:/"
        r = await c.get("/v1/unknown")
        assert r.status_code == 404 and r.json()["details"][0]["reason"] == "ROUTE_NOT_FOUND"
        assert (await c.get("/v1/health")).status_code == 200


async def test_bad_percent_encoding_in_path_is_400(client):
    r = await client.get("/v1/trades/%FF%FE")
    assert r.status_code == 400
    assert r.json()["details"][0]["reason"] == "MALFORMED_REQUEST"
