"""Clients nobody here wrote: grpcurl and ghz (reflection), buf curl (all three protocols), curl."""

import json
import subprocess
from pathlib import Path

import pytest

from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SERVICE = "tradewire.v1.TradeExecutionService"


def trade_json(request_id: str) -> str:
    return json.dumps({"request_id": request_id, "mode": "TRADING_MODE_PAPER", "input_mint": SOL,
                       "output_mint": USDC, "amount": "0.25", "slippage_bps": 50})


def run(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_grpcurl_lists_and_describes_via_reflection(gateway):
    grpcurl = require_tool("grpcurl")
    services = run(grpcurl, "-plaintext", gateway.grpc_target, "list").split()
    assert SERVICE in services and "grpc.health.v1.Health" in services
    description = run(grpcurl, "-plaintext", gateway.grpc_target, "describe", SERVICE)
    for rpc in ("ExecuteTrade", "StreamExecutionStatus", "GetTradeHistory", "GetPositions", "GetMarket", "HealthCheck",
                "GetTrade", "CancelTrade", "ExecuteTradeBatch", "TradeSession"):
        assert f"rpc {rpc} " in description
    message = run(grpcurl, "-plaintext", gateway.grpc_target, "describe", "tradewire.v1.TradeRequest")
    assert "slippage_bps" in message
    method = run(grpcurl, "-plaintext", gateway.grpc_target, "describe", f"{SERVICE}.ExecuteTrade")
    assert "rpc ExecuteTrade ( .tradewire.v1.TradeRequest ) returns ( .tradewire.v1.TradeResult )" in method


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_buf_curl_reads_the_schema_by_either_reflection_version(gateway, version):
    """buf curl asks reflection v1 first; grpcio-reflection serves v1alpha only, the gateway both."""
    buf = require_tool("buf")
    out = run(buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", f"grpc-{version}",
              "-H", f"authorization: Bearer {gateway.key('alice')}", "-d", trade_json(f"reflect-{version}"),
              f"http://{gateway.grpc_target}/{SERVICE}/ExecuteTrade")
    assert json.loads(out)["status"] == "TRADE_STATUS_FILLED"
    grpcurl = require_tool("grpcurl")
    assert f"grpc.reflection.{version}.ServerReflection" in run(grpcurl, "-plaintext", gateway.grpc_target,
                                                                 "list").split()
    described = run(grpcurl, "-plaintext", gateway.grpc_target, "describe",
                    f"grpc.reflection.{version}.ServerReflection")
    assert (f"rpc ServerReflectionInfo ( stream .grpc.reflection.{version}.ServerReflectionRequest ) "
            f"returns ( stream .grpc.reflection.{version}.ServerReflectionResponse )") in described


def test_ghz_finds_the_method_by_reflection_and_every_call_fills(gateway):
    """No protoset: ghz asks reflection for the method's file (a symbol upb's pool does not index)."""
    ghz = require_tool("ghz")
    report = json.loads(run(ghz, "--insecure", "--call", f"{SERVICE}/ExecuteTrade", "-n", "20", "-c", "2",
                            "--metadata", json.dumps({"authorization": f"Bearer {gateway.key('alice')}"}),
                            "--data", trade_json("ghz-{{.RequestNumber}}"), "--format", "json",
                            gateway.grpc_target))
    assert report["count"] == 20 and report["statusCodeDistribution"] == {"OK": 20}, report.get("errorDistribution")


def test_grpcurl_executes_a_trade_and_checks_health(gateway):
    grpcurl = require_tool("grpcurl")
    out = run(grpcurl, "-plaintext", "-H", f"authorization: Bearer {gateway.key('alice')}", "-d",
              trade_json("grpcurl-1"), gateway.grpc_target, f"{SERVICE}/ExecuteTrade")
    result = json.loads(out)
    assert result["status"] == "TRADE_STATUS_FILLED" and result["requestId"] == "grpcurl-1"
    health = json.loads(run(grpcurl, "-plaintext", gateway.grpc_target, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


@pytest.mark.parametrize("protocol", ["grpc", "grpcweb", "connect"])
def test_buf_curl_executes_a_trade(gateway, protocol):
    buf = require_tool("buf")
    run(str(ROOT / "scripts" / "buf.sh"), "lint")  # assembles the workspace that --schema . reads
    url = (f"http://{gateway.grpc_target}" if protocol == "grpc" else gateway.http_url) + f"/{SERVICE}/ExecuteTrade"
    extra = ["--http2-prior-knowledge"] if protocol == "grpc" else []
    out = run(buf, "curl", "--protocol", protocol, *extra, "--schema", ".", "-H",
              f"authorization: Bearer {gateway.key('alice')}", "-d", trade_json(f"bufcurl-{protocol}"), url)
    result = json.loads(out)
    assert result["status"] == "TRADE_STATUS_FILLED"
    assert result["requestId"] == f"bufcurl-{protocol}"


def test_curl_executes_over_json_and_reads_the_status_stream_as_sse(gateway):
    curl = require_tool("curl")
    auth = f"authorization: Bearer {gateway.key('alice')}"
    out = run(curl, "-sS", "--fail-with-body", "-H", auth, "-H", "content-type: application/json",
              "-d", trade_json("curl-1"), f"{gateway.http_url}/v1/trades")
    assert json.loads(out)["status"] == "TRADE_STATUS_FILLED"
    stream = run(curl, "-sS", "-N", "--fail-with-body", "-H", auth, "-H", "accept: text/event-stream",
                 f"{gateway.http_url}/v1/trades/curl-1/status")
    events = [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:")]
    ids = [int(line[3:]) for line in stream.splitlines() if line.startswith("id:")]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 8
    assert events[0]["stage"] == "TRADE_STATUS_RECEIVED"
    final = [e for e in events if e.get("terminal")]
    assert final and final[-1]["stage"] == "TRADE_STATUS_FILLED"


def test_curl_reads_openapi_and_docs(gateway):
    curl = require_tool("curl")
    document = json.loads(run(curl, "-sS", "--fail", f"{gateway.http_url}/openapi.json"))
    assert "/v1/trades" in document["paths"] and "post" in document["paths"]["/v1/trades"]
    docs = run(curl, "-sS", "--fail", f"{gateway.http_url}/docs")
    assert "/v1/positions" in docs


def test_curl_head_answers_a_get_route_without_its_body(gateway):
    """What uptime monitors send: HEAD is GET without the body; a stream has no HEAD."""
    curl = require_tool("curl")
    head = run(curl, "-sS", "--fail", "-I", f"{gateway.http_url}/v1/health")
    assert head.startswith("HTTP/1.1 200") and "content-type: application/json" in head.lower(), head
    status = run(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-I",
                 "-H", f"authorization: Bearer {gateway.key('alice')}", f"{gateway.http_url}/v1/trades/any/status")
    assert status == "405"
