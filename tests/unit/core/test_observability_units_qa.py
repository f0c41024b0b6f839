"""What an operator reads must survive the failure of one of its parts, and cost the calls nothing:
a kill switch that cannot be read leaves every other metric scraped, a worker whose figures could
not be collected is not counted as scraped, a scrape of several workers does not stall the loop
serving calls, and what the interpreter itself writes to stderr (warnings, a thread's or a
finalizer's exception) is a JSON line like any other."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from support.ports import free_port
from tradewire.core.executors.live.metrics import register_kill_switch_metric
from tradewire.core.metrics import Metrics
from tradewire.core.shared.redis_kill_switch import KEY, SharedKillSwitch
from tradewire.gateway.worker_metrics import WorkerMetrics


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode()) for sample in family.samples}


def test_a_shared_kill_switch_key_of_another_type_halts_and_leaves_every_other_metric_scraped(redis_server):
    client = redis_server.client()
    client.hset(KEY, "state", "off")  # set by hand with the wrong command: GET answers WRONGTYPE
    try:
        metrics = Metrics()
        metrics.draining.set(0)
        register_kill_switch_metric(metrics.registry, SharedKillSwitch(client).state)
        scraped = samples(generate_latest(metrics.registry))
    finally:
        client.delete(KEY)
    assert scraped[("tradewire_live_kill_switch", (("state", "halt"),))] == 1  # fail safe
    assert scraped[("tradewire_live_kill_switch", (("state", "off"),))] == 0
    assert scraped[("tradewire_draining", ())] == 0


def test_a_kill_switch_that_cannot_be_read_at_all_is_unknown_and_the_scrape_goes_on():
    def unreadable() -> str:
        raise redis.ResponseError("ERR something the switch's reader did not expect")

    metrics = Metrics()
    metrics.draining.set(0)
    register_kill_switch_metric(metrics.registry, unreadable)
    scraped = samples(generate_latest(metrics.registry))
    assert scraped[("tradewire_live_kill_switch", (("state", "unknown"),))] == 1
    assert scraped[("tradewire_draining", ())] == 0


class _Failing(Collector):
    def collect(self):
        raise RuntimeError("a collector that fails")


async def test_a_worker_whose_figures_could_not_be_collected_is_not_counted_as_scraped():
    port = free_port()  # (names the workers' sockets: no other test's)
    asking, failing = Metrics(), Metrics()
    failing.registry.register(_Failing())
    sibling = WorkerMetrics(failing.registry, 1, 2, "127.0.0.1", port)
    await sibling.start()
    try:
        merged = samples(await WorkerMetrics(asking.registry, 0, 2, "127.0.0.1", port).exposition())
    finally:
        await sibling.stop()
    assert merged[("tradewire_worker_scraped", (("worker", "0"),))] == 1
    assert merged[("tradewire_worker_scraped", (("worker", "1"),))] == 0


def test_warnings_and_exceptions_the_interpreter_reports_are_json_lines():
    script = textwrap.dedent("""
        import threading, warnings
        from tradewire.core.logs import configure_logging

        configure_logging("INFO")
        warnings.warn("a-warning-marker", RuntimeWarning)
        thread = threading.Thread(target=lambda: 1 / 0, name="a-thread-marker")
        thread.start()
        thread.join()

        class Finalized:
            def __del__(self):
                raise ValueError("a-finalizer-marker")

        Finalized()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # (raises on a line that is not JSON)
    warned, thread, finalizer = lines
    assert warned["logger"] == "py.warnings" and "a-warning-marker" in warned["msg"]
    assert thread["level"] == "error" and "a-thread-marker" in thread["msg"] and "ZeroDivisionError" in thread["exc"]
    assert finalizer["level"] == "error" and "a-finalizer-marker" in finalizer["exc"]


def populated() -> Metrics:
    """A worker's figures after a while in service: every method on every protocol, several codes."""
    metrics = Metrics()
    for method in ("ExecuteTrade", "ExecuteTradeBatch", "GetTrade", "GetTradeHistory", "GetPositions", "GetMarket",
                   "HealthCheck", "CancelTrade", "StreamExecutionStatus", "TradeSession"):
        for protocol in ("grpc", "grpc-web", "connect", "http"):
            for code in ("OK", "CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "UNAVAILABLE"):
                metrics.requests.labels(method, protocol, code).inc()
            metrics.request_seconds.labels(method, protocol).observe(0.01)
    return metrics


async def test_a_scrape_of_several_workers_does_not_stall_the_calls_the_asking_worker_serves():
    port, workers = free_port(), 4
    siblings = [WorkerMetrics(populated().registry, i, workers, "127.0.0.1", port) for i in range(1, workers)]
    for sibling in siblings:
        await sibling.start()
    gaps: list[float] = []
    loop = asyncio.get_running_loop()
    last_tick = [loop.time()]

    async def ticking() -> None:  # what a call waiting for the loop waits
        while True:
            await asyncio.sleep(0.001)
            gaps.append(loop.time() - last_tick[0])
            last_tick[0] = loop.time()

    ticker = asyncio.create_task(ticking())
    try:
        started = loop.time()
        merged = await WorkerMetrics(populated().registry, 0, workers, "127.0.0.1", port).exposition()
        took = loop.time() - started
        gaps.append(loop.time() - last_tick[0])  # (the wait still open)
    finally:
        ticker.cancel()
        for sibling in siblings:
            await sibling.stop()
    assert samples(merged)[("tradewire_worker_scraped", (("worker", "3"),))] == 1
    # (parsing and writing out four workers' figures takes ~0.2-0.4 s of CPU: done in one go on the
    # loop, the longest wait was nearly all of it)
    assert max(gaps) < took / 2, (max(gaps), took)
