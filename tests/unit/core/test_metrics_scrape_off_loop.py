"""A /metrics scrape is built off the event loop: while a collector works (tens of ms with many
series, or a read of the shared store), the calls the process serves go on."""

import asyncio
import threading

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tradewire.core.config import ServerConfig
from tradewire.gateway.http_app import build_http_app
from tradewire.gateway.worker_metrics import WorkerMetrics

from support.stand_ins import NoService

WAIT_S = 10.0


class WaitsForTheLoop(Collector):
    """A collector that finishes only once the event loop has run while it was collecting:
    built on the loop, it would wait in vain (the loop is blocked) until WAIT_S."""

    def __init__(self) -> None:
        self.collecting = threading.Event()
        self.loop_ran = threading.Event()

    def collect(self):
        self.collecting.set()
        family = GaugeMetricFamily("loop_ran_while_collecting", "1 if the loop ran meanwhile")
        family.add_metric([], 1.0 if self.loop_ran.wait(WAIT_S) else 0.0)
        yield family


async def loop_ticks_while(collector: WaitsForTheLoop, scrape) -> bytes:
    async def tick() -> None:
        while not collector.collecting.is_set():
            await asyncio.sleep(0.001)  # polling a thread's flag (no awaitable to wait on)
        collector.loop_ran.set()

    ticker = asyncio.create_task(tick())
    try:
        return await asyncio.wait_for(scrape(), WAIT_S * 2)
    finally:
        ticker.cancel()


async def test_a_single_process_scrape_leaves_the_loop_free():
    registry, collector = CollectorRegistry(), WaitsForTheLoop()
    registry.register(collector)
    app = build_http_app(NoService(), registry, ServerConfig())

    async def scrape() -> bytes:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            return answer.content

    assert b"loop_ran_while_collecting 1.0" in await loop_ticks_while(collector, scrape)


async def test_a_worker_s_own_figures_are_built_off_the_loop():
    registry, collector = CollectorRegistry(), WaitsForTheLoop()
    registry.register(collector)
    worker = WorkerMetrics(registry, 0, 1, "127.0.0.1", 40_999)
    assert b'loop_ran_while_collecting{worker="0"} 1.0' in await loop_ticks_while(collector, worker.exposition)
