"""The in-flight registry: per-principal and total limits (RESOURCE_EXHAUSTED), visible in
HealthCheck and in the metrics; a refused trade claims nothing, so it can be retried."""

import asyncio

import pytest

from support.clients import PROTOCOLS, RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, metric, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

PER_PRINCIPAL = 3
TOTAL = 5


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("inflight"),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "20000",
             "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_PER_PRINCIPAL": str(PER_PRINCIPAL),
             "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_TOTAL": str(TOTAL)},
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


async def _running(grpc_client, gateway, key_name: str) -> int:
    health, _ = await grpc_client.unary("HealthCheck", spb.HealthCheckRequest(), gateway.key(key_name))
    return health.caller.in_flight


async def test_limits_refuse_with_resource_exhausted_on_every_protocol(limited_gateway):
    grpc_client = make_client("grpc", limited_gateway)
    started: list[tuple[str, str]] = []
    late = None
    try:
        # fill alice's share, then the rest of the total with bob's; each waits 10 s before being sent
        for name, count in (("alice", PER_PRINCIPAL), ("bob", TOTAL - PER_PRINCIPAL)):
            for _ in range(count):
                request_id = unique(f"held-{name}")
                asyncio.create_task(grpc_client.unary("ExecuteTrade", trade(request_id), limited_gateway.key(name)))
                started.append((name, request_id))
        await eventually(lambda: _running(grpc_client, limited_gateway, "alice"), what="alice's trades running")
        await eventually(lambda: _total_running(limited_gateway, TOTAL), what="all trades running")
        assert await _running(grpc_client, limited_gateway, "alice") == PER_PRINCIPAL
        assert await _running(grpc_client, limited_gateway, "bob") == TOTAL - PER_PRINCIPAL

        health, _ = await grpc_client.unary("HealthCheck", spb.HealthCheckRequest(), limited_gateway.key("bob"))
        in_flight = next(c for c in health.components if c.name == "in_flight")
        assert f"{TOTAL} trades running" in in_flight.message
        assert in_flight.status == spb.SERVING_STATUS_DEGRADED  # at the total limit
        # an anonymous probe sees the same statuses, and no load figures
        anonymous, _ = await grpc_client.unary("HealthCheck", spb.HealthCheckRequest())
        assert [(c.name, c.status) for c in anonymous.components] == [(c.name, c.status) for c in health.components]
        assert not any(char.isdigit() for c in anonymous.components for char in c.message), anonymous.components

        for protocol in PROTOCOLS:
            client = make_client(protocol, limited_gateway)
            try:
                for name, scope in (("alice", "principal"), ("trader", "total")):
                    request_id = unique(f"refused-{protocol}")
                    with pytest.raises(RpcFailure) as failure:
                        await client.unary("ExecuteTrade", trade(request_id), limited_gateway.key(name))
                    assert failure.value.code == "RESOURCE_EXHAUSTED", (protocol, name)
                    assert failure.value.reason == "TOO_MANY_IN_FLIGHT"
                    assert "in flight" in failure.value.message
                    if protocol == "http":
                        assert failure.value.http_status == 429
                    # nothing was claimed: the id is free
                    with pytest.raises(RpcFailure) as missing:
                        await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id),
                                           limited_gateway.key(name))
                    assert missing.value.code == "NOT_FOUND"
            finally:
                await client.close()
        assert await metric(limited_gateway, "tradewire_trades_refused_total", scope="principal") >= len(PROTOCOLS)
        assert await metric(limited_gateway, "tradewire_trades_refused_total", scope="total") >= len(PROTOCOLS)
        assert await metric(limited_gateway, "tradewire_trades_in_flight") == TOTAL
        assert await metric(limited_gateway, "tradewire_trades_in_flight_limit", scope="principal") == PER_PRINCIPAL

        # a slot freed (here by cancelling one of alice's trades) admits the next trade
        name, request_id = started[0]
        cancelled, _ = await grpc_client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id),
                                               limited_gateway.key(name))
        assert cancelled.status == pb.TRADE_STATUS_CANCELLED
        late = unique("admitted")
        asyncio.create_task(grpc_client.unary("ExecuteTrade", trade(late), limited_gateway.key("alice")))
        watcher = StreamHandle(grpc_client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=late),
                               limited_gateway.key("alice"))
        await watcher.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages), what="admitted")
    finally:
        for name, request_id in started + ([("alice", late)] if late else []):
            try:
                await grpc_client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id),
                                        limited_gateway.key(name))
            except RpcFailure:
                pass
        await eventually(lambda: _total_running(limited_gateway, 0), what="every trade ended")
        await grpc_client.close()


async def _total_running(gateway, expected: int) -> bool:
    return await metric(gateway, "tradewire_trades_in_flight") == expected
