"""No piece of an API key reaches a log line, an audit row, the trade store or an error through a
real gateway: a key cut short or its bare secret as a request id, a correlation id or a cancel
reason; and, behind a trusted proxy, X-Forwarded-For gives the caller's address only when it is
an IP address (junk, or a key, leaves the connection's address as the peer)."""

from __future__ import annotations

import json
import secrets
import socket
import string
import struct
import uuid

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BASE62 = string.ascii_letters + string.digits


def fresh_secret() -> str:
    """A secret as core/auth/api_keys.py makes them whose first 32 characters (the longest piece
    the tests cut) are not also base58: 12% of 32-character pieces are, and pass as a mint would."""
    while True:
        secret = "".join(secrets.choice(BASE62) for _ in range(43))
        piece = secret[:32]
        if set(piece) & set("0OIl") and any(c.isdigit() for c in piece) and piece.lower() != piece != piece.upper():
            return secret


def pieces(secret: str) -> list[str]:
    """What must never be found: any 16 characters of the secret."""
    return [secret[i:i + 16] for i in range(0, len(secret) - 15, 9)]


def leaks(gateway: GatewayProcess, secret: str) -> dict[str, list[str]]:
    """Where pieces of ``secret`` are: the gateway's log, its audit journal, its trade store."""
    data = gateway.workdir / "data"
    places = {"log": gateway.log_text(), "audit": (data / "audit.jsonl").read_text(),
              "trades.db": b"".join(p.read_bytes() for p in data.glob("trades.db*")).decode("latin-1")}
    return {name: [p for p in pieces(secret) if p in text] for name, text in places.items()
            if any(p in text for p in pieces(secret))}


def log_lines(gateway: GatewayProcess) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def access_lines(gateway: GatewayProcess, **fields) -> list[dict]:
    return [line for line in log_lines(gateway) if line.get("logger") == "tradewire.access"
            and all(line.get(k) == v for k, v in fields.items())]


def trade(request_id: str) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gateway = GatewayProcess(tmp_path_factory.mktemp("leaks"), env={
        "TRADEWIRE_SERVER__TRUSTED_PROXIES": json.dumps(["127.0.0.1"]), "TRADEWIRE_LOGGING__LEVEL": "DEBUG"})
    yield gateway.start()
    assert gateway.stop() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_request_id_holding_a_key_cut_short_or_its_secret_is_refused_everywhere(gateway, protocol):
    secret = fresh_secret()
    run = uuid.uuid4().hex[:8]
    client = make_client(protocol, gateway)
    key = gateway.key("alice")
    shaped = {"short key": f"tw_qafake01_{secret[:31]}", "bare secret": secret}
    try:
        for i, (name, request_id) in enumerate(shaped.items()):
            for method, request in (("ExecuteTrade", trade(request_id)),
                                    ("GetTrade", spb.GetTradeRequest(request_id=request_id)),
                                    ("CancelTrade", spb.CancelTradeRequest(request_id=request_id))):
                with pytest.raises(RpcFailure) as caught:
                    await client.unary(method, request, key, headers={"x-correlation-id": f"{run}-{method}-{i}"})
                failure = caught.value
                assert (failure.code, failure.reason) == ("INVALID_ARGUMENT", "VALIDATION_FAILED"), (name, method)
                assert failure.fields == ["request_id"] and secret[:16] not in failure.message
        # a cancel's reason holding the secret, for a trade that exists
        done, _ = await client.unary("ExecuteTrade", trade(f"{run}-ok"), key)
        assert done.status == pb.TRADE_STATUS_FILLED
        with pytest.raises(RpcFailure) as caught:
            cancel = spb.CancelTradeRequest(request_id=f"{run}-ok", reason=f"rotated key {secret}")
            await client.unary("CancelTrade", cancel, key, headers={"x-correlation-id": f"{run}-reason"})
        assert caught.value.fields == ["reason"] and secret[:16] not in caught.value.message
    finally:
        await client.close()
    wait_until(lambda: len(gateway.audit_rows("tw_requests", correlation_id=f"{run}-reason")) == 1
               and len(access_lines(gateway, correlation_id=f"{run}-reason")) == 1, what="the calls on record")
    refused = [row for row in gateway.audit_rows("tw_requests") if row["correlation_id"].startswith(f"{run}-")
               and row["correlation_id"] != f"{run}-reason"]
    assert [row["reason"] for row in refused] == ["VALIDATION_FAILED"] * 6
    assert all("trade_request_id" not in row for row in refused)  # (the id is not recorded)
    assert leaks(gateway, secret) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_key_in_client_metadata_or_a_webhook_url_is_refused_not_stored(gateway, protocol):
    secret = fresh_secret()
    api_key = f"tw_qafake02_{secret}"
    run = uuid.uuid4().hex[:8]
    client = make_client(protocol, gateway)
    try:
        for fields, said, request in (
                (['client_metadata["note"]'], "looks like a credential",
                 pb.TradeRequest(client_metadata={"note": f"rotate {api_key}"})),
                (["client_metadata"], "a key looks like a credential", pb.TradeRequest(client_metadata={secret: "x"})),
                (["webhook_url"], "holds a tradewire API key",
                 pb.TradeRequest(webhook_url=f"https://hooks.example/{api_key}"))):
            request.MergeFrom(trade(f"{run}-{fields[0][:8]}"))
            with pytest.raises(RpcFailure) as caught:
                await client.unary("ExecuteTrade", request, gateway.key("alice"), headers={"x-correlation-id": run})
            assert (caught.value.code, caught.value.fields) == ("INVALID_ARGUMENT", fields), caught.value
            assert said in caught.value.message and secret[:16] not in caught.value.message
    finally:
        await client.close()
    wait_until(lambda: len(gateway.audit_rows("tw_requests", correlation_id=run)) == 3, what="the calls on record")
    assert leaks(gateway, secret) == {}


async def test_a_correlation_id_holding_a_secret_is_neither_echoed_nor_recorded(gateway):
    secret = fresh_secret()
    given = [secret, f"tw_qafake01_{secret[:20]}", f"req:{secret[:32]}"]
    request_ids = []
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        for correlation_id in given:
            answer = await http.get("/v1/market", headers={"authorization": f"Bearer {gateway.key('alice')}",
                                                          "x-correlation-id": correlation_id})
            assert answer.status_code == 200
            request_ids.append(answer.headers["x-request-id"])
            assert answer.headers["x-correlation-id"] == answer.headers["x-request-id"]  # its own id instead
        kept = await http.get("/v1/market", headers={"authorization": f"Bearer {gateway.key('alice')}",
                                                    "x-correlation-id": USDC})  # a mint is no secret
        assert kept.headers["x-correlation-id"] == USDC
    wait_until(lambda: all(gateway.audit_rows("tw_requests", request_id=r) and access_lines(gateway, request_id=r)
                           for r in request_ids), what="the calls on record")
    for request_id in request_ids:
        (line,) = access_lines(gateway, request_id=request_id)
        assert line["correlation_id"] == request_id and line["key_label"] == "tw_alice001"
    assert leaks(gateway, secret) == {}


async def test_x_forwarded_for_names_the_caller_only_with_an_ip_address(gateway):
    secret = fresh_secret()
    run = uuid.uuid4().hex[:8]
    forwarded = {"key": f"tw_qafake01_{secret}", "junk": "not-an-ip <script>", "long": "x" * 3000,
                 "zone": f"fe80::1%{secret}", "ipv4": "10.9.8.7", "ipv6 with port": "[2001:db8::5]:4711",
                 "chain": "203.0.113.9, 127.0.0.1"}  # the last entry not a trusted proxy is the client
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        for name, value in forwarded.items():
            answer = await http.get("/v1/market", headers={"authorization": f"Bearer {gateway.key('alice')}",
                                                          "x-forwarded-for": value,
                                                          "x-correlation-id": f"{run}-{name.replace(' ', '-')}"})
            assert answer.status_code == 200, name
    names = [name.replace(" ", "-") for name in forwarded]
    wait_until(lambda: all(access_lines(gateway, correlation_id=f"{run}-{n}") for n in names),
               what="the access lines")
    peers = {n: access_lines(gateway, correlation_id=f"{run}-{n}")[0]["peer"] for n in names}
    for name in ("key", "junk", "long", "zone"):  # the connection's address
        assert peers.pop(name).startswith("127.0.0.1:"), name
    assert peers == {"ipv4": "10.9.8.7:0", "ipv6-with-port": "[2001:db8::5]:4711", "chain": "203.0.113.9:0"}
    says = [line for line in log_lines(gateway) if "names no IP address" in line.get("msg", "")]
    assert len(says) >= 4 and {line["level"] for line in says} == {"debug"}
    assert "not-an-ip" not in gateway.log_text() and "x" * 100 not in gateway.log_text()
    assert leaks(gateway, secret) == {}


async def test_junk_in_x_forwarded_for_does_not_open_a_failed_authentication_budget_of_its_own(tmp_path):
    gateway = GatewayProcess(tmp_path / "gw", env={
        "TRADEWIRE_SERVER__TRUSTED_PROXIES": json.dumps(["127.0.0.1"]),
        "TRADEWIRE_LIMITS__AUTH_FAILURES_PER_S": "0.01", "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "4"}).start()
    run = uuid.uuid4().hex[:8]
    try:
        statuses = []
        async with httpx.AsyncClient(base_url=gateway.http_url) as http:
            for i in range(6):  # each claiming to be "another client"
                answer = await http.get("/v1/trades", headers={"authorization": "Bearer tw_nobody00_" + "n" * 40,
                                                              "x-forwarded-for": f"client-{i} <{i}>",
                                                              "x-correlation-id": f"{run}-{i}"})
                statuses.append(answer.status_code)
        assert statuses == [401] * 4 + [429] * 2  # one budget: the connection's address
        wait_until(lambda: len([r for r in gateway.audit_rows("tw_auth_attempts")
                                if r.get("correlation_id", "").startswith(run)]) >= 4, what="audit rows")
        peers = {r["peer"].rsplit(":", 1)[0] for r in gateway.audit_rows("tw_auth_attempts")
                 if r.get("correlation_id", "").startswith(run)}
        assert peers == {"127.0.0.1"}
    finally:
        assert gateway.stop() == 0


def grpc_call_with_raw_headers(target: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """One gRPC call with an empty message and header values sent as given (grpcio's own client
    refuses what is not text); the trailers it ends with."""
    host, port = target.rsplit(":", 1)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        connection.initiate_connection()
        connection.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                                    (b":authority", b"tradewire"), (b"content-type", b"application/grpc"),
                                    (b"te", b"trailers"), *headers])
        connection.send_data(1, struct.pack(">BI", 0, 0), end_stream=True)
        sock.sendall(connection.data_to_send())
        while True:  # (the socket's timeout bounds each read)
            data = sock.recv(65536)
            assert data, "the gateway closed the connection before the call ended"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.TrailersReceived):
                    return dict(event.headers)
            sock.sendall(connection.data_to_send())


def test_a_key_in_a_header_value_grpcio_cannot_decode_is_not_logged(gateway):
    """grpcio logs a request header value that is not UTF-8, quoting it: a key with a trailing
    non-breaking space pasted from a document must not reach the log that way."""
    key = gateway.key("reader")
    secret = key.split("_", 2)[2]
    trailers = grpc_call_with_raw_headers(gateway.grpc_target, "/tradewire.v1.TradeExecutionService/GetMarket",
                                          [(b"authorization", b"Bearer " + key.encode() + b"\xa0")])
    assert b"grpc-status" in trailers  # answered
    wait_until(lambda: "not UTF-8" in gateway.log_text(), what="grpcio's line about the header")
    wait_until(lambda: gateway.audit_rows("tw_requests", method="GetMarket"), what="the call's audit row")
    assert not leaks(gateway, secret), leaks(gateway, secret)
    lines = [line for line in log_lines(gateway) if line.get("logger", "").startswith("grpc")
             and ("UTF-8" in line["msg"] or "encoding" in line["msg"])]
    assert lines and all(line["level"] == "warning" and "exc" not in line for line in lines), lines  # a client's slip
