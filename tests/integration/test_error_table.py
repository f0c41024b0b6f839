"""Every reason of the error table, through every adapter: gRPC status + details, Connect
error JSON, gRPC-Web status, and HTTP status + google.rpc.Status JSON."""

import asyncio
import base64

import grpc
import httpx
import pytest
import uvicorn
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from support.ports import free_port
from tradewire.core.config import ServerConfig
from tradewire.core.errors import REASONS, TradewireError
from tradewire.gateway.errors import CONNECT_CODE, GRPC_STATUS, http_status
from tradewire.gateway.grpc_server import GrpcServer
from tradewire.gateway.http_app import build_http_app
from tradewire.v1 import service_pb2 as spb
from tradewire.v1.service_connect import TradeExecutionServiceClient

CONNECT_HTTP = {  # the Connect protocol's own code → HTTP status table
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "data_loss": 500, "unauthenticated": 401,
}


class RaisingService:
    """HealthCheck raises the reason named in the x-test-reason header; others are unused."""

    async def HealthCheck(self, request, ctx):
        raise TradewireError(ctx.headers["x-test-reason"], f"test of {ctx.headers['x-test-reason']}",
                             retry_after_s=1.5 if ctx.headers["x-test-reason"] == "RATE_LIMITED" else None)

    def __getattr__(self, name):
        async def unused(request, ctx):
            raise TradewireError("UNIMPLEMENTED", name)
        return unused


@pytest.fixture(scope="module")
async def servers():
    service = RaisingService()
    grpc_server = GrpcServer(service, "127.0.0.1", 0, 1 << 20)
    await grpc_server.start()
    http_port = free_port()
    app = build_http_app(service, CollectorRegistry(), ServerConfig(http_port=http_port))
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_config=None, lifespan="off"))
    task = asyncio.create_task(http.serve())
    async with asyncio.timeout(10):
        while not http.started:
            await asyncio.sleep(0.01)
    yield f"127.0.0.1:{grpc_server.port}", f"http://127.0.0.1:{http_port}"
    http.should_exit = True
    await task
    await grpc_server.stop(0)


def _reason(details) -> str:
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


@pytest.mark.parametrize("reason", sorted(REASONS))
async def test_reason_maps_identically_on_every_protocol(servers, reason):
    grpc_target, http_url = servers
    expected = TradewireError(reason, "x")
    headers = {"x-test-reason": reason}

    # gRPC: status code, message, and google.rpc.Status in grpc-status-details-bin
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary("/tradewire.v1.TradeExecutionService/HealthCheck",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=spb.HealthCheckResponse.FromString)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(spb.HealthCheckRequest(), metadata=tuple(headers.items()))
    assert caught.value.code() == GRPC_STATUS[expected.code]
    assert caught.value.details() == f"test of {reason}"
    trailers = dict(caught.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == int(expected.code) and _reason(status.details) == reason

    async with httpx.AsyncClient(base_url=http_url) as http:
        # Connect (JSON): HTTP status from Connect's table and its error body
        response = await http.post("/tradewire.v1.TradeExecutionService/HealthCheck", json={}, headers=headers)
        body = response.json()
        assert body["code"] == CONNECT_CODE[expected.code].value
        assert response.status_code == CONNECT_HTTP[body["code"]]
        assert body["message"] == f"test of {reason}"
        info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(body["details"][0]["value"] + "=="))
        assert body["details"][0]["type"] == "google.rpc.ErrorInfo" and info.reason == reason

        # HTTP/JSON: transcoder status and google.rpc.Status JSON
        response = await http.get("/v1/health", headers=headers)
        assert response.status_code == http_status(expected)
        body = response.json()
        assert body["code"] == int(expected.code) and body["message"] == f"test of {reason}"
        assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
        assert body["details"][0]["reason"] == reason
        if reason == "RATE_LIMITED":
            assert response.headers["retry-after"] == "2"
            assert any(d["@type"].endswith("RetryInfo") for d in body["details"])

    # gRPC-Web, through connect-python's client
    client = TradeExecutionServiceClient(http_url, protocol=ProtocolType.GRPC_WEB)
    try:
        with pytest.raises(ConnectError) as caught_web:
            await client.health_check(spb.HealthCheckRequest(), headers=headers)
    finally:
        await client.close()
    assert caught_web.value.code == CONNECT_CODE[expected.code]
    assert _reason(caught_web.value.details) == reason
