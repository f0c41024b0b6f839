"""Browsers on another origin may call every protocol of the HTTP listener: preflights are
answered and responses expose the headers a dashboard reads (Connect and gRPC-Web go around
FastAPI's stack, so this is checked on each path)."""

import httpx
import pytest

ORIGIN = "https://dashboard.example"
CONNECT_PATH = "/tradewire.v1.TradeExecutionService/HealthCheck"


@pytest.mark.parametrize("path,method,request_headers", [
    (CONNECT_PATH, "POST", "content-type,connect-protocol-version,authorization"),
    (CONNECT_PATH, "POST", "content-type,x-grpc-web,x-user-agent"),
    ("/v1/health", "GET", "authorization,x-correlation-id"),
    (CONNECT_PATH, "POST", "content-type,traceparent,tracestate"),  # a traced browser call
])
async def test_preflight_is_answered(gateway, path, method, request_headers):
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        response = await http.options(path, headers={"origin": ORIGIN, "access-control-request-method": method,
                                                     "access-control-request-headers": request_headers})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
    allowed = response.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in request_headers.split(","))


@pytest.mark.parametrize("path,kwargs", [
    (CONNECT_PATH, dict(content=b"{}", headers={"content-type": "application/json"})),
    ("/v1/health", {}),
])
async def test_responses_expose_the_headers_a_dashboard_reads(gateway, path, kwargs):
    headers = {"origin": ORIGIN, "x-correlation-id": "cors-1", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        response = await (http.post(path, headers=headers, **kwargs) if path == CONNECT_PATH
                          else http.get(path, headers=headers))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-correlation-id" in exposed and "ratelimit-remaining" in exposed
    assert response.headers["x-correlation-id"] == "cors-1"
