"""1,000 concurrent status streams on one gateway process: every stream receives every event of
its trade, and after the clients disconnect the streams are released at once and the process's
memory returns to its baseline.

Memory is the RSS of the gateway process (VmRSS in /proc/<pid>/status). The baseline is taken
after a first full round of 1,000 streams (warm: code paths loaded, allocator pools and gRPC
buffers grown once — that first growth is kept by the allocators and is not a leak), so the
check is that a round of 1,000 streams leaves nothing behind. Tolerance: a quarter of what the
1,000 open streams added (at least 4 MiB of allocator noise, at most 16 MiB): a leak of 16 KiB
per stream — a task, a queue, a list of events — would keep 16 MiB.
"""

import asyncio
import os

import pytest

from support.clients import RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, metric, trade, transitions, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

STREAMS = 1000
TRADES = 50  # 20 subscribers each
GRPC_CHANNELS = 8
PROTOCOL_SHARE = {"grpc": 800, "http": 100, "connect-proto": 50, "grpc-web": 50}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("scale"),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "8000",
             "TRADEWIRE_LOGGING__ACCESS_LOG": "false", "TRADEWIRE_LOGGING__TRANSITION_LOG": "false"},
        streams_config="[streams]\nawait_trade_s = 10\nheartbeat_s = 1.0\n",
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


async def _clients(gateway) -> list:
    made = [make_client("grpc", gateway) for _ in range(GRPC_CHANNELS)]
    made.append(make_client("http", gateway))
    made[-1] = type(made[-1])(gateway.http_url, max_connections=PROTOCOL_SHARE["http"] + 10)
    made += [make_client("connect-proto", gateway), make_client("grpc-web", gateway)]
    return made


def _assignments(clients) -> list:
    """Which client serves each of the STREAMS streams."""
    grpc_clients, http, connect, grpc_web = clients[:GRPC_CHANNELS], clients[-3], clients[-2], clients[-1]
    out = [grpc_clients[i % GRPC_CHANNELS] for i in range(PROTOCOL_SHARE["grpc"])]
    out += [http] * PROTOCOL_SHARE["http"] + [connect] * PROTOCOL_SHARE["connect-proto"]
    out += [grpc_web] * PROTOCOL_SHARE["grpc-web"]
    assert len(out) == STREAMS
    return out


async def _open_round(gateway, clients, prefix: str):
    key = gateway.key("trader")
    ids = [unique(prefix) for _ in range(TRADES)]
    assignment = _assignments(clients)
    # half the subscribers come before their trade exists, half once it runs
    early = [StreamHandle(c, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=ids[i % TRADES]),
                          key) for i, c in enumerate(assignment[: STREAMS // 2])]
    await eventually(lambda: _subscribers_at_least(gateway, STREAMS // 2), timeout=60, what="early subscribers")
    calls = [asyncio.create_task(clients[0].unary("ExecuteTrade", trade(request_id), key)) for request_id in ids]
    await asyncio.gather(*(h.wait_for(lambda s: len(s.messages) >= 4, timeout=60, what="QUOTED") for h in early))
    late = [StreamHandle(c, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=ids[i % TRADES]),
                         key) for i, c in enumerate(assignment[STREAMS // 2:])]
    await asyncio.gather(*(h.wait_for(lambda s: len(s.messages) >= 4, timeout=60, what="QUOTED") for h in late))
    return ids, calls, early + late


async def _subscribers_at_least(gateway, n: int) -> bool:
    return await metric(gateway, "tradewire_stream_subscribers") >= n


async def _subscribers_are(gateway, n: int) -> bool:
    return await metric(gateway, "tradewire_stream_subscribers") == n


async def test_1000_streams_get_every_event_and_memory_returns_to_baseline(gateway):
    cold_kib = gateway.rss_kib()
    # round 1: every stream runs to its trade's terminal event
    clients = await _clients(gateway)
    try:
        ids, calls, handles = await _open_round(gateway, clients, "scale-a")
        assert await metric(gateway, "tradewire_stream_subscribers") == STREAMS
        results = await asyncio.gather(*calls)
        assert all(r.status == pb.TRADE_STATUS_FILLED for r, _ in results)
        for i, handle in enumerate(handles):
            events = transitions(await handle.finished(timeout=60))
            assert handle.error is None, handle.error
            assert [e.sequence for e in events] == list(range(1, 10)), i
            assert events[-1].terminal and events[-1].result.request_id == ids[i % TRADES]
    finally:
        for client in clients:
            await client.close()
    await eventually(lambda: _subscribers_are(gateway, 0), what="round 1 streams closed")
    await eventually(lambda: _released(gateway, 1), what="freed memory returned after round 1")
    tasks_idle = await metric(gateway, "tradewire_event_loop_tasks")
    baseline_kib = gateway.rss_kib()

    # round 2: 1,000 streams open, then every client disconnects mid-trade
    clients = await _clients(gateway)
    try:
        ids, calls, handles = await _open_round(gateway, clients, "scale-b")
        during_kib = gateway.rss_kib()
        assert await metric(gateway, "tradewire_stream_subscribers") == STREAMS
        await asyncio.gather(*(h.cancel() for h in handles))
        await eventually(lambda: _subscribers_are(gateway, 0), timeout=5, interval=0.02,
                         what="every stream released after the disconnects")
        for request_id in ids:  # end the trades too (those not sent yet are cancelled)
            try:
                await clients[0].unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id),
                                       gateway.key("trader"))
            except RpcFailure as failure:
                assert failure.reason == "NOT_CANCELLABLE"
        await asyncio.gather(*calls, return_exceptions=True)
    finally:
        for client in clients:
            await client.close()
    await eventually(lambda: _tasks_at_most(gateway, tasks_idle), what="no task left behind")
    await eventually(lambda: _released(gateway, 2), what="freed memory returned after round 2")
    grown = during_kib - baseline_kib
    tolerance = min(16 * 1024, max(grown // 4, 4 * 1024))
    after_kib = await eventually(lambda: _rss_within(gateway, baseline_kib + tolerance), timeout=20,
                                 what=f"RSS back within {tolerance} KiB of {baseline_kib} KiB")
    report = (f"RSS KiB: cold {cold_kib}, baseline {baseline_kib}, with {STREAMS} streams {during_kib} "
              f"(+{grown}), after disconnect {after_kib} (+{after_kib - baseline_kib}, tolerance {tolerance})")
    print(report)
    with open(os.environ.get("TRADEWIRE_SCALE_REPORT", os.devnull), "a") as out:
        out.write(report + "\n")
    assert grown > 4 * 1024  # the streams did cost memory while open (the measurement means something)


async def _released(gateway, times: int) -> bool:
    return await metric(gateway, "tradewire_memory_releases_total") >= times


async def _tasks_at_most(gateway, n: float) -> bool:
    return await metric(gateway, "tradewire_event_loop_tasks") <= n


def _rss_within(gateway, limit_kib: int) -> int | None:
    rss = gateway.rss_kib()
    return rss if rss <= limit_kib else None
