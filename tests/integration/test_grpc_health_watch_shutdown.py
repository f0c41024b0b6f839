"""An open grpc.health.v1 Watch stream does not hold up a graceful shutdown: its watcher gets
NOT_SERVING, then the stream ends (OK) in the step where the gateway ends its own streams, not
when the listener's grace period runs out; the gateway exits 0 about as fast as without it."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.gateway_process import GatewayProcess
from support.trading import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE_S = 5.0  # [server] shutdown_grace_s of the test gateway: what an unended Watch would cost
WATCHED = ["", "tradewire.v1.TradeExecutionService"]


class Watcher:
    """One Watch call, read to its end in the background: the statuses it got and how it ended."""

    def __init__(self, channel: grpc.aio.Channel, service: str) -> None:
        self.statuses: list[int] = []
        self.code: grpc.StatusCode | None = None
        self.ended_at: float | None = None
        self._call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self._call:
                self.statuses.append(response.status)
        except grpc.aio.AioRpcError:
            pass  # (how it ended is its code, below)
        self.ended_at = time.monotonic()
        self.code = await self._call.code()


def stopped_line(gateway: GatewayProcess) -> dict:
    [line] = [json.loads(text) for text in gateway.log_text().splitlines() if '"msg":"stopped"' in text]
    return line


async def test_an_open_health_watch_ends_with_not_serving_and_does_not_delay_shutdown(tmp_path):
    gateway = GatewayProcess(tmp_path / "gw").start()
    try:
        async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
            watchers = [Watcher(channel, service) for service in WATCHED]
            await eventually(lambda: all(w.statuses == [SERVING] for w in watchers), timeout=10,
                             what="every watcher's first SERVING")

            gateway.terminate()
            signalled = time.monotonic()
            code = await asyncio.to_thread(gateway.wait_exit, 4 * GRACE_S)
            exited_after = time.monotonic() - signalled
            await asyncio.wait_for(asyncio.gather(*(w.task for w in watchers)), GRACE_S)

        assert code == 0, gateway.log_text()[-3000:]
        for watcher in watchers:
            assert watcher.statuses == [SERVING, NOT_SERVING]
            assert watcher.code == grpc.StatusCode.OK, watcher.code
            assert watcher.ended_at - signalled < GRACE_S / 2
        assert exited_after < GRACE_S / 2, f"exited {exited_after:.1f}s after SIGTERM"
        assert stopped_line(gateway)["shutdown_s"] < GRACE_S / 2, stopped_line(gateway)
    finally:
        if gateway.proc.poll() is None:
            gateway.stop()
