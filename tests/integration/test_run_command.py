"""The README's run command, `scripts/run.sh`, as a user runs it: the gateway on every protocol
with paper trading quoted by the local devnet, and the dashboard, from the embedded defaults
(config/local.toml, ports 8080, 50051 and 8899); Ctrl-C stops all of it."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.ports import wait_until

ROOT = Path(__file__).resolve().parents[2]
PORTS = {"HTTP": 8080, "gRPC": 50051, "devnet": 8899}
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def run_command(tmp_path):
    taken = [f"{name} :{port}" for name, port in PORTS.items() if listening(port)]
    assert not taken, f"the run command's ports are taken ({', '.join(taken)}): stop what holds them"
    output = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_until(lambda: process.poll() is not None or answers("http://127.0.0.1:8080/v1/health"),
                   timeout_s=300, what="scripts/run.sh serving")
        assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        yield process, tmp_path / "run.log"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        output.close()


def test_the_run_command_serves_every_protocol_with_the_devnet_and_the_dashboard(run_command):
    process, log = run_command
    key = (ROOT / "tradewire-data" / "demo-api-key").read_text().strip()
    assert key in log.read_text()  # printed at start, for the user to copy

    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url="http://127.0.0.1:8080", headers=headers, timeout=20) as http:
        trade = http.post("/v1/trades", json={
            "requestId": f"run-command-{os.getpid()}-{process.pid}", "mode": "TRADING_MODE_PAPER",
            "inputMint": SOL, "outputMint": USDC, "amount": "0.5", "slippageBps": 50})
        assert trade.status_code == 200 and trade.json()["status"] == "TRADE_STATUS_FILLED", trade.text
        health = http.get("/v1/health").json()
        paper = next(c for c in health["components"] if c["name"] == "paper_executor")
        assert paper["status"] == "SERVING_STATUS_SERVING"
        dashboard = http.get("/")
        assert dashboard.status_code == 200 and "<title>" in dashboard.text
        connect = http.post("/tradewire.v1.TradeExecutionService/GetPositions", content=b"{}",
                            headers={"content-type": "application/json"})
        assert connect.status_code == 200 and "positions" in connect.json(), connect.text
    # the paper executor quotes from the devnet's Jupiter-compatible API, which run.sh started
    quote = httpx.get("http://127.0.0.1:8899/swap/v1/quote", timeout=5,
                      params={"inputMint": SOL, "outputMint": USDC, "amount": "500000000", "slippageBps": "50"})
    assert quote.status_code == 200 and int(quote.json()["outAmount"]) > 0
    with grpc.insecure_channel("127.0.0.1:50051") as channel:
        served = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert served.status == health_pb2.HealthCheckResponse.SERVING

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the gateway drains and stops, the devnet with it
    process.wait(timeout=60)
    assert not [name for name, port in PORTS.items() if listening(port)]
    assert "Traceback" not in log.read_text()
