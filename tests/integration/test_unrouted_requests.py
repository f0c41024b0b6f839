"""Requests refused before they reach a method — an HTTP path no route takes, a method the path
does not take, headers too large, a native gRPC method the server does not have — are counted in
tradewire_unrouted_requests_total{protocol, code} and logged as one "unrouted" access line each,
their path cut and redacted, and not audited; reflection, health and calls are not counted."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import httpx
import pytest
from connectrpc.client import ConnectClient
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.protocol import ProtocolType
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import eventually, metric
from tradewire.core.audit.events import REDACTED
from tradewire.v1 import service_pb2 as spb

UNROUTED = "tradewire_unrouted_requests_total"
SERVICE = "tradewire.v1.TradeExecutionService"
LOGGED_PATH_CHARS = 128
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def log_mark(gateway: GatewayProcess) -> int:
    return len(gateway.log_text())


def log_since(gateway: GatewayProcess, mark: int) -> str:
    return gateway.log_text()[mark:]


def unrouted_lines(gateway: GatewayProcess, mark: int) -> list[dict]:
    lines = (json.loads(line) for line in log_since(gateway, mark).splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("logger") == "tradewire.access" and line.get("msg") == "unrouted"]


async def unrouted_count(gateway: GatewayProcess, protocol: str, code: str) -> float:
    return await metric(gateway, UNROUTED, protocol=protocol, code=code)


async def refused_once(gateway: GatewayProcess, protocol: str, code: str, refuse) -> dict:
    """Awaits ``refuse()`` (one request refused before routing); checks it was counted once
    under ``protocol`` and ``code`` and logged once; returns its log line."""
    mark, before = log_mark(gateway), await unrouted_count(gateway, protocol, code)
    await refuse()
    lines = await eventually(lambda: unrouted_lines(gateway, mark), what="the unrouted line")
    assert await unrouted_count(gateway, protocol, code) == before + 1
    (line,) = lines
    assert (line["protocol"], line["code"]) == (protocol, code), line
    assert line["peer"].startswith("127.0.0.1:"), line
    return line


# -- HTTP ----------------------------------------------------------------------------------------

async def http_request(gateway: GatewayProcess, method: str, path: str, status: int, **options) -> None:
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        answer = await http.request(method, path, **options)
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/no-such-route-{run}", 404),
    ("POST", "/no-such-route-{run}", 404),
    ("DELETE", "/v1/health", 405),  # a route, for GET only
    ("POST", "/metrics", 404),  # the scrape is GET (and HEAD); no route takes anything else there
    ("GET", "/v1/trades/{run}%ff", 400),  # not valid percent-encoded UTF-8: no route can be matched
    ("POST", f"/{SERVICE}/NoSuchMethod{{run}}", 404),  # Connect and gRPC-Web: a method the service lacks
    ("GET", f"/{SERVICE}/ExecuteTrade", 405),  # Connect serves GET only for methods without side effects
])
async def test_an_http_request_no_route_takes_is_counted_and_logged(gateway, method, path, status):
    path = path.format(run=run_id())
    line = await refused_once(gateway, "http", str(status), lambda: http_request(gateway, method, path, status))
    assert (line["http_method"], line["path"]) == (method, path), line


async def raw_request(gateway: GatewayProcess, request: bytes, status: int) -> None:
    """``request`` as sent, on a connection of its own (httpx refuses a URL past 64 KiB)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == str(status).encode(), status_line


@pytest.mark.parametrize("where", ["header", "url"])
async def test_headers_too_large_are_counted_and_logged(gateway, where):
    prefix = f"/v1/too-large-{run_id()}"
    filler = "f" * (DEFAULT_MAX_HEADER_BYTES + 1000)
    path, header = (f"{prefix}/{filler}", "") if where == "url" else (prefix, f"x-filler: {filler}\r\n")
    request = f"GET {path}?a=b HTTP/1.1\r\nhost: t\r\n{header}\r\n".encode()
    line = await refused_once(gateway, "http", "431", lambda: raw_request(gateway, request, 431))
    assert line["http_method"] == "GET" and line["path"].startswith(prefix) and "?" not in line["path"], line
    assert len(line["path"]) <= LOGGED_PATH_CHARS, line


# -- native gRPC ---------------------------------------------------------------------------------

async def grpc_unknown(gateway: GatewayProcess, method: str, kind: str = "unary") -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            if kind == "unary":
                await channel.unary_unary(method)(b"")
            else:  # (a server stream: a client that streams may lose the status to its own writes, in grpcio)
                async for _ in channel.unary_stream(method)(b""):
                    pass
    # answered as grpcio answers a method it does not have
    assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


@pytest.mark.parametrize("method,kind", [
    (f"/{SERVICE}/NoSuchMethod", "unary"),
    ("/other.Service/X", "unary"),
    ("/other.Service/Stream", "stream"),
])
async def test_a_grpc_method_the_server_does_not_have_is_counted_and_logged(gateway, method, kind):
    line = await refused_once(gateway, "grpc", "UNIMPLEMENTED", lambda: grpc_unknown(gateway, method, kind))
    assert (line["http_method"], line["path"]) == ("POST", method), line


# -- what the line may carry ---------------------------------------------------------------------

def refusal(protocol: str, gateway: GatewayProcess, path: str):
    """How ``protocol`` sends ``path`` (an HTTP path, a gRPC method name) no one serves: its code, the request."""
    if protocol == "http":
        return "404", lambda: http_request(gateway, "GET", path, 404)
    return "UNIMPLEMENTED", lambda: grpc_unknown(gateway, path)


@pytest.mark.parametrize("protocol,base", [("http", "/"), ("grpc", "/other.Service/")])
async def test_a_path_holding_a_credential_is_redacted(gateway, protocol, base):
    key = gateway.key("alice")
    cut_through = base + "x" * (99 - len(base)) + "/" + key  # the key from character 100: cut in its secret
    for path in (base + key, cut_through, base + key.replace("_", "%5F")):
        mark = log_mark(gateway)
        code, refuse = refusal(protocol, gateway, path)
        line = await refused_once(gateway, protocol, code, refuse)
        assert line["path"] == REDACTED, line
        logged = log_since(gateway, mark)
        assert key not in logged and key[12:24] not in logged, logged


@pytest.mark.parametrize("protocol,base", [("http", "/"), ("grpc", "/other.Service/")])
async def test_a_long_path_is_cut(gateway, protocol, base):
    prefix = f"{base}long-{run_id()}-"
    path = prefix + "z" * (10_000 - len(prefix))
    mark = log_mark(gateway)
    code, refuse = refusal(protocol, gateway, path)
    line = await refused_once(gateway, protocol, code, refuse)
    assert len(line["path"]) == LOGGED_PATH_CHARS and line["path"].startswith(prefix), line
    assert "z" * LOGGED_PATH_CHARS not in log_since(gateway, mark)


# -- what is not counted -------------------------------------------------------------------------

def reflection_v1_services(channel: grpc.Channel) -> list[str]:
    """list_services over grpc.reflection.v1 (the same messages as v1alpha, another package)."""
    info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    (answer,) = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return [service.name for service in answer.list_services_response.service]


async def test_reflection_health_and_calls_are_answered_and_not_counted(gateway):
    correlation_id = f"unrouted-control-{run_id()}"
    unknown = f"/other.Service/Control{run_id()}"
    mark = log_mark(gateway)
    before = {(protocol, code): await unrouted_count(gateway, protocol, code)
              for protocol, code in (("grpc", "UNIMPLEMENTED"), ("http", "404"), ("http", "405"))}
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        checked = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        assert SERVICE in ProtoReflectionDescriptorDatabase(channel).get_services()  # reflection v1alpha
        assert SERVICE in reflection_v1_services(channel)
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        assert (await http.get("/v1/health", headers={"x-correlation-id": correlation_id})).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
    await grpc_unknown(gateway, unknown)  # the one request here that is unrouted
    wait_until(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id), what="the call's audit row")
    after = {key: await unrouted_count(gateway, *key) for key in before}
    assert after == {**before, ("grpc", "UNIMPLEMENTED"): before[("grpc", "UNIMPLEMENTED")] + 1}
    assert [line["path"] for line in unrouted_lines(gateway, mark)] == [unknown]
    # not audited: the audit trail is of calls (the one above is in it, written after the refusal)
    assert not [row for row in gateway.audit_rows("tw_requests") if unknown.rsplit("/", 1)[1] in json.dumps(row)]


# -- the dashboard's paths -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>tradewire</title>")
    gateway = GatewayProcess(tmp_path_factory.mktemp("gw"), env={"TRADEWIRE_SERVER__WEB_ROOT": str(root)}).start()
    yield gateway
    assert gateway.stop() == 0


@pytest.mark.parametrize("method,status", [("GET", 404), ("POST", 404), ("PUT", 404), ("DELETE", 404)])
async def test_a_path_the_dashboard_has_no_file_for_is_counted_and_logged(site, method, status):
    path = f"/no-such-file-{run_id()}.php"
    line = await refused_once(site, "http", str(status), lambda: http_request(site, method, path, status))
    assert (line["http_method"], line["path"]) == (method, path), line
    counted = await unrouted_count(site, "http", str(status))
    await http_request(site, "GET", "/", 200)  # a file it has
    assert await unrouted_count(site, "http", str(status)) == counted


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_a_method_files_do_not_take_where_the_dashboard_has_none_is_the_api_s_404(site, method):
    # (once 405 "allow: GET, HEAD" from the dashboard's files, for any path at all)
    path = f"/foo/bar-{run_id()}"
    async with httpx.AsyncClient(base_url=site.http_url, timeout=10) as http:
        answer = await http.request(method, path, content=b"x")
    assert answer.status_code == 404 and "allow" not in answer.headers, answer.headers
    assert answer.json()["details"][0]["reason"] == "ROUTE_NOT_FOUND", answer.text


@pytest.mark.parametrize("path", ["/", "/index.html"])
async def test_a_method_files_do_not_take_where_the_dashboard_has_one_is_405(site, path):
    async def post() -> None:
        async with httpx.AsyncClient(base_url=site.http_url, timeout=10) as http:
            answer = await http.post(path, content=b"x")
        assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD", answer.headers

    line = await refused_once(site, "http", "405", post)
    assert line["path"] == path, line


# -- Connect and gRPC-Web calls to a service the gateway does not have -------------------------

async def connect_call(gateway: GatewayProcess, protocol: ProtocolType, procedure: str) -> ConnectError:
    """The error a connect-python client gets calling ``procedure`` ("/package.Service/Method")."""
    service, name = procedure.strip("/").split("/")
    method = MethodInfo(name=name, service_name=service, input=spb.GetMarketRequest, output=spb.GetMarketResponse,
                        idempotency_level=IdempotencyLevel.UNKNOWN)
    client = ConnectClient(gateway.http_url, protocol=protocol)
    try:
        with pytest.raises(ConnectError) as refused:
            await client.execute_unary(request=spb.GetMarketRequest(), method=method)
    finally:
        await client.close()
    return refused.value


@pytest.mark.parametrize("dashboard", [False, True])
@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB])
@pytest.mark.parametrize("procedure", ["/tradewire.v2.TradeExecutionService/GetMarket", "/grpc.health.v1.Health/Check",
                                       f"/{SERVICE}/NoSuchMethod"])
async def test_a_call_to_a_service_the_gateway_lacks_is_unimplemented_and_counted(gateway, site, dashboard,
                                                                                  protocol, procedure):
    # (with the dashboard once 405 from its files, which these clients read as UNKNOWN; without
    # it a google.rpc.Status body, which connect-python reads as UNAVAILABLE)
    served_by = site if dashboard else gateway
    refused = None

    async def call() -> None:
        nonlocal refused
        refused = await connect_call(served_by, protocol, procedure)

    line = await refused_once(served_by, "http", "404", call)
    assert refused.code is Code.UNIMPLEMENTED, (refused.code, refused.message)
    assert (line["http_method"], line["path"]) == ("POST", procedure), line
