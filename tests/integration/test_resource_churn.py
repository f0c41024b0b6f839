"""Churn leaves nothing behind: after a few hundred calls of every kind, on every protocol, the
gateway's asyncio tasks, file descriptors, threads and open-stream counts come back to where
they were (polled with a deadline; a little slack, never growth per call).

The baseline is taken after a first round of the same churn (warm: connection pools, metric
series and allocator pools made once), so each check is that a round leaves nothing."""

from __future__ import annotations

import asyncio
import os
import time

import grpc
import httpx
import pytest

from support.clients import RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.in_process import call_with_key, core_with_key
from support.trading import eventually, scrape, trade, unique
from tradewire.v1 import service_pb2 as spb

PROTOCOLS = ("grpc", "connect-json", "grpc-web", "http")
PER_KIND = 10  # calls of each kind, per protocol and round: ~300 calls a round
KEYS = ("alice", "bob", "trader")


@pytest.fixture(scope="module")
def churn_gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("churn"),
        env={"TRADEWIRE_LOGGING__ACCESS_LOG": "false", "TRADEWIRE_LOGGING__TRANSITION_LOG": "false"},
        # a stream for a trade not made yet waits for it: long enough to be cancelled while it waits
        streams_config="[streams]\nawait_trade_s = 5\nheartbeat_s = 1.0\n",
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def _proc_count(pid: int, what: str) -> int:
    return len(os.listdir(f"/proc/{pid}/{what}"))


async def _resources(gateway) -> dict[str, float]:
    samples = await scrape(gateway)

    def value(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)

    return {
        "tasks": value("tradewire_event_loop_tasks"),
        "fds": _proc_count(gateway.pid, "fd"),
        "threads": _proc_count(gateway.pid, "task"),
        "streams": value("tradewire_stream_subscribers"),
        "sessions": value("tradewire_sessions_open"),
        "trades": value("tradewire_trades_in_flight"),
        "calls": value("tradewire_requests_in_flight"),
    }


async def _quietly(call) -> None:
    try:
        await call
    except RpcFailure:
        pass


async def _round(gateway) -> None:
    """PER_KIND calls of each kind on each protocol, then every client closed."""
    keys = [gateway.key(name) for name in KEYS]
    bogus = "tw_bogus000_" + "z" * 40
    for protocol in PROTOCOLS:
        client = make_client(protocol, gateway)
        try:
            ids = [unique(f"churn-{protocol}") for _ in range(PER_KIND)]
            # unary: filled, invalid, refused credentials, an unknown trade
            await asyncio.gather(*(client.unary("ExecuteTrade", trade(i), keys[n % 3]) for n, i in enumerate(ids)))
            await asyncio.gather(*(_quietly(client.unary("ExecuteTrade", trade(unique("bad"), amount="-1"), keys[0]))
                                   for _ in range(PER_KIND)))
            await asyncio.gather(*(_quietly(client.unary("GetTrade", spb.GetTradeRequest(request_id="x"), bogus))
                                   for _ in range(PER_KIND)))
            await asyncio.gather(*(_quietly(client.unary("GetTrade", spb.GetTradeRequest(request_id=unique("nf")),
                                                         keys[1])) for _ in range(PER_KIND)))
            # batches (one bad item each)
            await asyncio.gather(*(client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(
                trades=[trade(unique("batch")), trade(unique("batch"), amount="-1")]), keys[n % 3])
                for n in range(PER_KIND)))
            # status streams run to their end (replayed), and streams cancelled while they wait
            await asyncio.gather(*(client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(
                request_id=i), keys[n % 3]) for n, i in enumerate(ids)))
            waiting = [StreamHandle(client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(
                request_id=unique("later")), keys[n % 3]) for n in range(PER_KIND)]
            await eventually(lambda: _streams_at_least(gateway, PER_KIND), what="streams waiting for their trade")
            await asyncio.gather(*(handle.cancel() for handle in waiting))
            if protocol == "grpc":  # TradeSessions: completed, and cancelled while open
                await asyncio.gather(*(client.session([spb.TradeSessionRequest(trade=trade(unique("sess")))],
                                                      keys[n % 3]) for n in range(PER_KIND)))
                await asyncio.gather(*(_cancelled_session(client, keys[n % 3]) for n in range(PER_KIND)))
        finally:
            await client.close()
    # unrouted requests, and connections opened and closed without a request
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        for n in range(PER_KIND):
            await http.get(f"/v1/nowhere/{n}")
            await http.post(f"/other.Service/Method{n}", content=b"{}", headers={"content-type": "application/json"})
    for port in (gateway.http_port, gateway.grpc_port):
        for _ in range(PER_KIND):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()


async def _streams_at_least(gateway, n: int) -> bool:
    return (await _resources(gateway))["streams"] >= n


async def _cancelled_session(client, key: str) -> None:
    session = client.open_session(key)
    await session.send(spb.TradeSessionRequest(trade=trade(unique("sess-x"))))
    responses = session.__aiter__()
    await responses.__anext__()
    session.cancel()
    try:
        async for _ in responses:
            pass
    except (RpcFailure, grpc.aio.AioRpcError, asyncio.CancelledError):
        pass


def _within(now: dict, baseline: dict) -> bool:
    # slack: a timer or two that comes and goes, a socket being closed, no growth per call
    slack = {"tasks": 2, "fds": 3, "threads": 1, "streams": 0, "sessions": 0, "trades": 0, "calls": 1}
    return all(now[name] <= baseline[name] + slack[name] for name in slack)


async def test_churn_of_every_call_kind_returns_to_baseline(churn_gateway):
    await _round(churn_gateway)  # warm-up
    await eventually(lambda: _settled(churn_gateway), what="the gateway idle after the warm-up")
    baseline = await _resources(churn_gateway)
    for n in range(2):
        await _round(churn_gateway)
        now = await eventually(lambda: _back_to(churn_gateway, baseline), timeout=15,
                               what=f"resources back to {baseline} after round {n + 1}")
        assert _within(now, baseline), (n, now, baseline)


async def _settled(gateway) -> dict | None:
    now = await _resources(gateway)
    return now if now["streams"] == now["sessions"] == now["trades"] == 0 else None


async def _back_to(gateway, baseline: dict) -> dict | None:
    now = await _resources(gateway)
    return now if _within(now, baseline) else None


async def test_a_session_cancelled_twice_still_closes_its_stream(tmp_path):
    """A TradeSession whose call is cancelled again while it stops its followers (the transport
    ending the call too: a slow consumer dropped, a shutdown) is still unregistered: otherwise
    each such session stays counted as open for good — against its caller's max_open_per_caller
    and the gateway's total, and in the drain of every shutdown."""
    key = "tw_alice001_" + "a" * 40
    async with core_with_key(tmp_path / "data", key, "alice",
                             limits={"stream_burst": 10_000, "burst": 10_000}) as core:
        service, hub = core.service, core.hub
        for _ in range(200):
            requests: asyncio.Queue = asyncio.Queue()

            async def read(queue=requests):
                while True:
                    yield await queue.get()

            answered = asyncio.Event()

            async def consume(messages=read(), answered=answered):
                async for _ in service.TradeSession(messages, call_with_key(key, "TradeSession")):
                    answered.set()

            task = asyncio.create_task(consume())
            await requests.put(spb.TradeSessionRequest(trade=trade(unique("twice"))))
            await answered.wait()
            task.cancel()
            await asyncio.sleep(0)  # the session is in its finally, stopping its reader and followers
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        deadline = time.monotonic() + 5
        while hub.open_streams and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert hub.open_streams == 0
        assert not hub._open_by_caller
        await eventually(lambda: len(core.runner.inflight) == 0, what="the sessions' trades ended")
