"""Metrics, correlation ids, structured logs and traces, observed from outside the process."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from prometheus_client.parser import text_string_to_metric_families

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
PROTOCOL_LABEL = {"grpc": "grpc", "connect-json": "connect", "connect-proto": "connect", "grpc-web": "grpc-web",
                  "http": "http"}


def trade(request_id: str) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


def scrape(gateway) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def requests_total(samples, method: str, protocol: str, code: str) -> float:
    key = ("tradewire_requests_total", (("code", code), ("method", method), ("protocol", protocol)))
    return samples.get(key, 0.0)


async def test_metrics_count_every_call_by_method_protocol_and_code(gateway):
    before = scrape(gateway)
    made = {}
    for protocol in PROTOCOLS:
        client = make_client(protocol, gateway)
        try:
            for i in range(3):
                await client.unary("ExecuteTrade", trade(f"metrics-{protocol}-{uuid.uuid4().hex[:8]}"), gateway.key("alice"))
            for _ in range(2):
                with pytest.raises(Exception):
                    await client.unary("GetTrade", spb.GetTradeRequest(request_id="no-such-trade"), gateway.key("alice"))
        finally:
            await client.close()
        label = PROTOCOL_LABEL[protocol]
        made[(label, "ExecuteTrade", "OK")] = made.get((label, "ExecuteTrade", "OK"), 0) + 3
        made[(label, "GetTrade", "NOT_FOUND")] = made.get((label, "GetTrade", "NOT_FOUND"), 0) + 2
    after = scrape(gateway)
    for (protocol, method, code), count in made.items():
        delta = requests_total(after, method, protocol, code) - requests_total(before, method, protocol, code)
        assert delta == count, (protocol, method, code, delta, count)
    names = {name for name, _ in after}
    for expected in ("tradewire_request_duration_seconds_bucket", "tradewire_requests_in_flight",
                     "tradewire_trades_total", "tradewire_auth_attempts_total"):
        assert expected in names, expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_correlation_id_is_echoed_on_every_protocol(gateway, protocol):
    client = make_client(protocol, gateway)
    try:
        _, headers = await client.unary("HealthCheck", spb.HealthCheckRequest(), None,
                                        headers={"x-correlation-id": f"corr-{protocol}"})
    finally:
        await client.close()
    assert headers.get("x-correlation-id") == f"corr-{protocol}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_correlation_id_that_looks_like_a_credential_is_replaced_not_logged(gateway, protocol):
    jwt_shaped = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.abcdefgh" + protocol.replace("-", "")
    client = make_client(protocol, gateway)
    try:
        health, headers = await client.unary("HealthCheck", spb.HealthCheckRequest(), None,
                                             headers={"x-correlation-id": jwt_shaped})
        _, traded = await client.unary("GetPositions", spb.GetPositionsRequest(), gateway.key("alice"),
                                       headers={"x-correlation-id": jwt_shaped})
    finally:
        await client.close()
    assert health.status == spb.SERVING_STATUS_SERVING
    assert headers.get("x-correlation-id") and headers["x-correlation-id"] != jwt_shaped
    assert traded.get("x-correlation-id") and traded["x-correlation-id"] != jwt_shaped
    assert jwt_shaped not in gateway.log_text()


def log_lines(gateway, correlation_id: str) -> list[dict]:
    lines = (json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("correlation_id") == correlation_id]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_trade_s_log_lines_join_its_call_and_name_the_trade(gateway, protocol):
    made, refused = trade(f"joined-{protocol}-{uuid.uuid4().hex[:6]}"), trade(f"refused-{protocol}-{uuid.uuid4().hex[:6]}")
    client = make_client(protocol, gateway)
    try:
        _, headers = await client.unary("ExecuteTrade", made, gateway.key("alice"),
                                        headers={"x-correlation-id": made.request_id})
        with pytest.raises(RpcFailure):  # a read-only key: refused before validation
            await client.unary("ExecuteTrade", refused, gateway.key("reader"),
                               headers={"x-correlation-id": refused.request_id})
    finally:
        await client.close()

    def access_line(correlation_id: str) -> dict | None:
        return next((line for line in log_lines(gateway, correlation_id) if line["msg"] == "call"), None)

    wait_until(lambda: access_line(made.request_id) and access_line(refused.request_id), what="the access lines")
    call = access_line(made.request_id)
    assert call["request_id"] == headers["x-request-id"] and call["trade_request_id"] == made.request_id
    transitions = [line for line in log_lines(gateway, made.request_id) if line["msg"] == "transition"]
    assert len(transitions) >= 9
    assert {(line["request_id"], line["trade_request_id"]) for line in transitions} == {
        (call["request_id"], made.request_id)}  # joined to the call by its id, the trade by its own
    denied = access_line(refused.request_id)
    assert (denied["code"], denied["trade_request_id"]) == ("PERMISSION_DENIED", refused.request_id)


class _OtlpReceiver(BaseHTTPRequestHandler):
    spans: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                type(self).spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def traced_gateway(tmp_path_factory):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    process = GatewayProcess(tmp_path_factory.mktemp("traced"), env={
        "TRADEWIRE_TRACING__ENABLED": "true", "TRADEWIRE_TRACING__OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100"}).start()  # export every 100 ms, not every 5 s
    yield process
    assert process.stop() == 0  # shutdown flushes the span batch
    receiver.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_traceparent_reaches_logs_and_spans(traced_gateway, protocol):
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    client = make_client(protocol, traced_gateway)
    request_id = f"traced-{protocol}-{uuid.uuid4().hex[:6]}"
    try:
        await client.unary("ExecuteTrade", trade(request_id), traced_gateway.key("alice"),
                           headers={"traceparent": traceparent})
    finally:
        await client.close()

    def logged() -> list[dict]:
        lines = [json.loads(line) for line in traced_gateway.log_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("trace_id") == trace_id]

    wait_until(lambda: any(line["logger"] == "tradewire.access" for line in logged()), what="access log line")
    lines = logged()
    assert any(line["logger"] == "tradewire.trade" and line["stage"] == "TRADE_STATUS_FILLED" for line in lines)

    def spans() -> list:
        return [s for s in _OtlpReceiver.spans if s.trace_id.hex() == trace_id]

    wait_until(lambda: any(s.name.endswith("/ExecuteTrade") for s in spans()), timeout_s=30, what="exported spans")
    names = {s.name for s in spans()}
    assert "tradewire.v1.TradeExecutionService/ExecuteTrade" in names
    assert {"tradewire.authenticate", "tradewire.validate", "tradewire.stage.TRADE_STATUS_QUOTED",
            "tradewire.stage.TRADE_STATUS_FILLED"} <= names
    server_span = next(s for s in spans() if s.name.endswith("/ExecuteTrade"))
    assert server_span.parent_span_id.hex() == traceparent.split("-")[2]
    assert _outcome_attributes(server_span) == OUTCOME_ATTRIBUTES[protocol]["ok"]


# The outcome as each protocol's OpenTelemetry convention names it (Connect: on errors only).
OUTCOME_ATTRIBUTES = {
    "grpc": {"ok": {"rpc.grpc.status_code": 0}, "invalid": {"rpc.grpc.status_code": 3}},
    "grpc-web": {"ok": {"rpc.grpc.status_code": 0}, "invalid": {"rpc.grpc.status_code": 3}},
    "connect-json": {"ok": {}, "invalid": {"rpc.connect_rpc.error_code": "invalid_argument"}},
    "connect-proto": {"ok": {}, "invalid": {"rpc.connect_rpc.error_code": "invalid_argument"}},
    "http": {"ok": {"http.response.status_code": 200}, "invalid": {"http.response.status_code": 400}},
}


def _outcome_attributes(span) -> dict:
    names = ("rpc.grpc.status_code", "rpc.connect_rpc.error_code", "http.response.status_code")
    values = {a.key: a.value for a in span.attributes if a.key in names}
    return {k: v.int_value if v.HasField("int_value") else v.string_value for k, v in values.items()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_refused_call_s_span_names_its_outcome_in_its_protocol_s_terms(traced_gateway, protocol):
    trace_id = uuid.uuid4().hex
    client = make_client(protocol, traced_gateway)
    bad = trade(f"traced-bad-{uuid.uuid4().hex[:6]}")
    bad.slippage_bps = 20_000
    try:
        with pytest.raises(RpcFailure):
            await client.unary("ExecuteTrade", bad, traced_gateway.key("alice"),
                               headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    finally:
        await client.close()

    def server_spans() -> list:
        return [s for s in _OtlpReceiver.spans if s.trace_id.hex() == trace_id and s.name.endswith("/ExecuteTrade")]

    wait_until(lambda: server_spans(), timeout_s=30, what="the refused call's span")
    span = server_spans()[0]
    assert _outcome_attributes(span) == OUTCOME_ATTRIBUTES[protocol]["invalid"]
    assert {a.key: a.value.string_value for a in span.attributes}["tradewire.reason"] == "VALIDATION_FAILED"


async def test_executor_and_audit_metrics_are_exposed(gateway):
    client = make_client("grpc", gateway)
    try:
        await client.unary("ExecuteTrade", trade(f"exec-metrics-{uuid.uuid4().hex[:8]}"), gateway.key("alice"))
    finally:
        await client.close()
    samples = scrape(gateway)
    names = {name for name, _ in samples}
    assert "tradewire_executor_duration_seconds_count" in names
    assert samples[("tradewire_audit_queue_max", (("backend", "journal"),))] == 0
    assert samples[("tradewire_audit_rows_written_total", (("backend", "journal"),))] > 0
    assert samples[("tradewire_audit_backend_up", (("backend", "journal"),))] == 1
    # and the process's own: memory, CPU, file descriptors, garbage collection
    assert samples[("process_resident_memory_bytes", ())] > 10 * 2**20
    assert {"process_cpu_seconds_total", "process_open_fds", "python_gc_collections_total", "python_info"} <= names


async def test_grpc_health_lists_every_service_it_reports(gateway):
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    serving = health_pb2.HealthCheckResponse.SERVING
    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": serving, "tradewire.v1.TradeExecutionService": serving}


async def test_a_head_of_metrics_is_answered_as_its_get_without_the_body(gateway):
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=5) as http:
        head = await http.head("/metrics")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/plain") and head.content == b""
