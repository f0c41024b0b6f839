"""Error mapping: every reason → HTTP status and google.rpc.Status JSON; no leaks."""

from __future__ import annotations

import logging

import pytest

from tradewire.core.errors import REASONS, Code, FieldViolation, QuotaViolation, TradewireError

# The code → HTTP table grpc-gateway, Envoy and connect share (REFERENCE.md), written out
# here so a change in the mapping code is caught.
HTTP_FOR_CODE = {
    Code.CANCELLED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400, Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409, Code.PERMISSION_DENIED: 403, Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400, Code.ABORTED: 409, Code.OUT_OF_RANGE: 400, Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500, Code.UNAVAILABLE: 503, Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401,
}
HTTP_OVERRIDES = {"PAYLOAD_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415}


@pytest.mark.parametrize("reason", sorted(REASONS))
async def test_every_reason_maps_to_status_and_body(client, fake, reason):
    fake.answers["GetTrade"] = TradewireError(
        reason,
        f"something about {reason}",
        field_violations=(FieldViolation("request_id", "bad id"),),
        retry_after_s=1.2,
        quota_violations=(QuotaViolation("principal:p1", "10 per second"),),
        metadata={"hint": "x"},
    )
    r = await client.get("/v1/trades/t-1")
    expected = HTTP_OVERRIDES.get(reason, HTTP_FOR_CODE[REASONS[reason].code])
    assert r.status_code == expected
    assert r.headers["content-type"] == "application/json"
    assert r.headers["retry-after"] == "2"
    assert r.headers["x-correlation-id"] == "corr-1"  # core's headers also on errors
    body = r.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == int(REASONS[reason].code)
    assert body["message"] == f"something about {reason}"
    types = [d["@type"] for d in body["details"]]
    assert types == [
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/google.rpc.BadRequest",
        "type.googleapis.com/google.rpc.RetryInfo",
        "type.googleapis.com/google.rpc.QuotaFailure",
    ]
    info, bad, retry, quota = body["details"]
    assert info == {"@type": types[0], "reason": reason, "domain": "tradewire", "metadata": {"hint": "x"}}
    assert bad["fieldViolations"] == [{"field": "request_id", "description": "bad id"}]
    assert retry["retryDelay"] == "1.200s"
    assert quota["violations"] == [{"subject": "principal:p1", "description": "10 per second"}]


async def test_error_without_retry_has_no_retry_after(client, fake):
    fake.answers["GetTrade"] = TradewireError("TRADE_NOT_FOUND", "no trade t-1")
    r = await client.get("/v1/trades/t-1")
    assert r.status_code == 404
    assert "retry-after" not in r.headers
    assert r.json() == {
        "code": 5,
        "message": "no trade t-1",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TRADE_NOT_FOUND",
                     "domain": "tradewire"}],
    }


@pytest.mark.parametrize("reason", sorted(r for r, spec in REASONS.items() if spec.code == Code.UNAVAILABLE))
async def test_every_unavailable_error_says_when_to_retry(client, fake, reason):
    fake.answers["GetTrade"] = TradewireError(reason, "the quote API answered 503")  # no delay of its own
    r = await client.get("/v1/trades/t-1")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in r.json()["details"]


async def test_unexpected_exception_is_generic_500_and_logged(client, fake, caplog, errors_seen):
    fake.answers["ExecuteTrade"] = RuntimeError("db password is hunter2")
    with caplog.at_level(logging.ERROR, logger="tradewire.gateway"):
        r = await client.post("/v1/trades", json={"requestId": "x"})
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == 13 and body["message"] == "internal error"
    assert body["details"][0]["reason"] == "INTERNAL"
    assert "hunter2" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert r.headers["x-correlation-id"] == "corr-1"
    logged = "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in caplog.records)
    assert any(rec.exc_info for rec in caplog.records)
    assert "ExecuteTrade" in logged
    err, ctx = errors_seen[-1]
    assert err.reason == "INTERNAL" and isinstance(err.__cause__, RuntimeError) and ctx.method == "ExecuteTrade"


async def test_wrong_response_type_from_core_is_500(client, fake):
    from tradewire.v1 import service_pb2

    fake.answers["GetTrade"] = service_pb2.HealthCheckResponse()
    r = await client.get("/v1/trades/t-1")
    assert r.status_code == 500
    assert r.json()["message"] == "internal error"


async def test_on_error_hook_failure_does_not_break_the_answer(fake):
    import httpx

    from tradewire.gateway.http_json import build_http_json_app
    from tradewire.v1 import service_pb2

    def hook(err, ctx):
        raise ValueError("hook bug")

    app = build_http_json_app(fake, service_pb2.DESCRIPTOR.services_by_name["TradeExecutionService"],
                              max_body_bytes=100, on_error=hook)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/v1/nowhere")
    assert r.status_code == 404


async def test_missing_service_method_is_501_unimplemented():
    import httpx

    from tradewire.gateway.http_json import build_http_json_app
    from tradewire.v1 import service_pb2

    app = build_http_json_app(object(), service_pb2.DESCRIPTOR.services_by_name["TradeExecutionService"],
                              max_body_bytes=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/v1/health")
    assert r.status_code == 501
    assert r.json()["details"][0]["reason"] == "UNIMPLEMENTED"
