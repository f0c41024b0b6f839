"""/metrics as an operator relies on it, from outside real gateway processes: it is served whatever
one of its collectors cannot read, and a call cut off — by its deadline, or by a client that gave
up its stream — is counted once on every protocol, with the in-flight gauges back at rest."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest

from support.clients import PROTOCOLS, RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess, live_settings
from support.trading import eventually, scrape, trade, unique
from tradewire.core.shared.redis_kill_switch import KEY as KILL_SWITCH_KEY
from tradewire.v1 import service_pb2 as spb

PROTOCOL_LABEL = {"grpc": "grpc", "connect-json": "connect", "connect-proto": "connect", "grpc-web": "grpc-web",
                  "http": "http"}
# The deadline as each protocol's client sends it (native gRPC: the call's timeout).
DEADLINE_HEADERS = {"connect-json": {"connect-timeout-ms": "300"}, "connect-proto": {"connect-timeout-ms": "300"},
                    "grpc-web": {"grpc-timeout": "300m"}, "http": {"x-server-timeout": "0.3"}}


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory, redis_server):
    """LIVE enabled (its kill switch is on /metrics) on a shared Redis; no upstream is reached."""
    workdir = tmp_path_factory.mktemp("sre-live")
    process = GatewayProcess(workdir, extra_config=live_settings(workdir),
                             env={"TRADEWIRE_SHARED__REDIS_URL": redis_server.url}).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


async def test_metrics_are_served_while_the_shared_kill_switch_cannot_be_read(live_gateway, redis_server):
    store = redis_server.client()
    store.hset(KILL_SWITCH_KEY, "state", "off")  # set by hand with the wrong command: GET answers WRONGTYPE
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{live_gateway.http_url}/metrics")
    finally:
        store.delete(KILL_SWITCH_KEY)
    assert response.status_code == 200, response.text[:300]
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in response.text.splitlines() if line and not line.startswith("#")}
    assert samples['tradewire_live_kill_switch{state="halt"}'] == 1  # what it cannot read halts
    assert samples['tradewire_requests_total{code="OK",method="HealthCheck",protocol="http"}'] >= 1
    assert "WRONGTYPE" in live_gateway.log_text()  # said, as a warning line


def requests_total(samples, method: str, protocol: str, code: str) -> float:
    return samples.get(("tradewire_requests_total", (("code", code), ("method", method), ("protocol", protocol))), 0.0)


async def past_its_deadline(client, protocol: str, gateway) -> str:
    """An ExecuteTrade whose deadline passes before its trade is sent: the code it ends with."""
    key = gateway.key("alice")
    if protocol == "grpc":
        call = client._callable("ExecuteTrade")(trade(unique("sre-deadline")), timeout=0.3,
                                                metadata=(("authorization", f"Bearer {key}"),))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        return failure.value.code().name
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTrade", trade(unique("sre-deadline")), key, headers=DEADLINE_HEADERS[protocol])
    return failure.value.code


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_calls_cut_off_are_counted_once_and_the_gauges_come_back_to_rest(slow_gateway, protocol):
    label, key = PROTOCOL_LABEL[protocol], slow_gateway.key("alice")
    before = await scrape(slow_gateway)
    client = make_client(protocol, slow_gateway)
    try:
        assert await past_its_deadline(client, protocol, slow_gateway) == "DEADLINE_EXCEEDED"
        followed = unique("sre-followed")
        running = asyncio.create_task(client.unary("ExecuteTrade", trade(followed), key))
        stream = StreamHandle(client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=followed),
                              key)
        await stream.wait_for(lambda s: len(s.messages) >= 1, what="the stream's first status")
        await stream.cancel()  # its client gives up the stream while the trade runs on
        await running
    finally:
        await client.close()

    async def settled() -> dict | None:
        after = await scrape(slow_gateway)
        counted = {(method, code): requests_total(after, method, label, code)
                   - requests_total(before, method, label, code)
                   for method, code in (("ExecuteTrade", "DEADLINE_EXCEEDED"), ("ExecuteTrade", "OK"),
                                        ("StreamExecutionStatus", "CANCELLED"))}
        at_rest = all(after.get(name, 0.0) == before.get(name, 0.0) for name in (
            ("tradewire_requests_in_flight", (("protocol", label),)), ("tradewire_stream_subscribers", ())))
        return counted if at_rest and all(counted.values()) else None

    counted = await eventually(settled, what="the calls counted and the gauges at rest")
    assert set(counted.values()) == {1.0}, counted
