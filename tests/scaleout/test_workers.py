"""`serve` with server.workers = 2: two serving processes on the same ports, one Redis.

Connections are spread over both workers by the kernel, both book into the shared store, a
worker that dies is replaced, and SIGTERM to the supervisor stops every worker cleanly.

A worker that never served ends the service at once; one that served, died and then cannot
start again ends it after a few tries; either way the supervisor stops the others and exits
non-zero with one `tradewire: ...` line. Stopped while a worker is down, it exits non-zero.
Every line a worker logs carries its index and pid; a single gateway's lines carry neither."""

import asyncio
import io
import json
import logging
import os
import re
import signal
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from support.clients import HttpJsonClient
from support.gateway_process import GatewayProcess
from support.ports import free_port
from support.trading import eventually
from tradewire.core.config import ConfigError, load_settings
from tradewire.core.logs import configure_logging, event_logger
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def scrape(gateway: GatewayProcess) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.fixture
def two_workers(tmp_path, redis_server):
    gateway = GatewayProcess(tmp_path, env={"TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
                                            "TRADEWIRE_SERVER__WORKERS": "2"}).start()
    yield gateway
    if gateway.proc.poll() is None:
        gateway.stop()


async def all_workers_serving(gateway: GatewayProcess) -> set[int]:
    pids = children(gateway.pid)
    if len(pids) != 2:
        return set()
    async with httpx.AsyncClient() as probe:  # the supervisor answers nothing itself
        for _ in range(20):
            try:
                if (await probe.get(f"{gateway.http_url}/v1/health")).status_code != 200:
                    return set()
            except httpx.TransportError:  # a connection the killed worker had queued
                return set()
    return pids


async def test_connections_are_spread_over_workers_that_share_one_store(two_workers, redis_server):
    await eventually(lambda: all_workers_serving(two_workers), what="two serving workers")
    key = two_workers.key("alice")
    request_ids = [f"w-{uuid.uuid4().hex[:10]}" for _ in range(24)]
    for request_id in request_ids:  # a new connection per trade: the kernel picks a worker each time
        client = HttpJsonClient(two_workers.http_url)
        try:
            result, _ = await client.unary("ExecuteTrade", pb.TradeRequest(
                request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                amount="0.01", slippage_bps=100), key)
            assert result.status == pb.TRADE_STATUS_FILLED
        finally:
            await client.close()
    store = redis.Redis.from_url(redis_server.url)
    replicas = set()
    for request_id in request_ids:
        (trade_key,) = store.keys(f"tw:trade:*:{request_id}")
        replicas.add(store.hget(trade_key, "replica"))
    assert len(replicas) == 2  # both workers took trades (24 connections on one: p = 2^-23)
    # (what a component says is for callers with credentials)
    health = httpx.get(f"{two_workers.http_url}/v1/health", headers={"authorization": f"Bearer {key}"}).json()
    store_health = next(c for c in health["components"] if c["name"] == "store")
    assert store_health["message"].startswith("redis (replica ")

    # /metrics on the shared port answers for both workers, whichever the scrape reached.
    for _ in range(4):
        samples = scrape(two_workers)
        assert samples[("tradewire_worker_scraped", (("worker", "0"),))] == 1
        assert samples[("tradewire_worker_scraped", (("worker", "1"),))] == 1
        trades = {labels: value for (name, labels), value in samples.items()
                  if name == "tradewire_requests_total" and dict(labels).get("method") == "ExecuteTrade"}
        assert sum(trades.values()) == len(request_ids)
        assert {dict(labels)["worker"] for labels in trades} == {"0", "1"}


async def test_a_dead_worker_is_replaced_and_sigterm_stops_all(two_workers):
    first = await eventually(lambda: all_workers_serving(two_workers), what="two serving workers")
    victim = min(first)
    os.kill(victim, signal.SIGKILL)

    async def replaced_and_serving() -> set[int]:
        pids = await all_workers_serving(two_workers)
        return pids if victim not in pids else set()

    replaced = await eventually(replaced_and_serving, timeout=30, what="a replacement worker")
    assert len(replaced & first) == 1
    assert "restarting it" in two_workers.log_text()

    two_workers.terminate()
    assert await asyncio.to_thread(two_workers.wait_exit, 40) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)


def test_several_workers_need_a_shared_store_and_fixed_ports():
    with pytest.raises(ConfigError, match="server.workers = 2 needs shared.redis_url"):
        load_settings(None, env={"TRADEWIRE_SERVER__WORKERS": "2"})
    with pytest.raises(ConfigError, match="fixed server.grpc_port"):
        load_settings(None, env={"TRADEWIRE_SERVER__WORKERS": "3", "TRADEWIRE_SHARED__REDIS_URL": "redis://x",
                                 "TRADEWIRE_SERVER__HTTP_PORT": "0"})
    assert load_settings(None, env={"TRADEWIRE_SERVER__WORKERS": "2",
                                    "TRADEWIRE_SHARED__REDIS_URL": "redis://x"}).server.workers == 2


def json_and_plain_lines(gateway: GatewayProcess) -> tuple[list[dict], list[str]]:
    parsed, plain = [], []
    for line in gateway.log_text().splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            plain.append(line)
    return parsed, plain


def started_workers(gateway: GatewayProcess) -> list[tuple[int, int]]:
    """(worker index, pid) of every worker the supervisor started, in order."""
    return [(int(index), int(pid)) for index, pid in
            re.findall(r'"worker (\d+) started \(pid (\d+)\)"', gateway.log_text())]


async def kill_a_worker_that_cannot_start_again(gateway: GatewayProcess) -> int:
    """Kill a serving worker after making its restart fail (the config it re-reads is broken);
    the killed worker's index."""
    await eventually(lambda: all_workers_serving(gateway), what="two serving workers")
    (gateway.workdir / "tradewire.toml").write_text("[server\n")
    index, pid = started_workers(gateway)[0]
    os.kill(pid, signal.SIGKILL)
    return index


async def test_a_worker_that_never_served_ends_the_service(tmp_path):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    gateway = GatewayProcess(tmp_path, env={"TRADEWIRE_SHARED__REDIS_URL": closed, "TRADEWIRE_SERVER__WORKERS": "2"})
    with pytest.raises(RuntimeError, match="gateway exited with 1"):
        await asyncio.to_thread(gateway.start)
    gateway.wait_exit(5)
    parsed, plain = json_and_plain_lines(gateway)
    assert len(plain) == 1, plain
    assert plain[0].startswith("tradewire: worker ")
    assert "could not start: the shared store ([shared] redis_url) does not answer" in plain[0]
    assert not any("restarting" in line["msg"] for line in parsed)


async def test_a_worker_that_cannot_start_again_ends_the_service(two_workers):
    survivors = set(children(two_workers.pid))
    index = await kill_a_worker_that_cannot_start_again(two_workers)
    assert await asyncio.to_thread(two_workers.wait_exit, 90) == 1
    assert not any(os.path.exists(f"/proc/{pid}") for pid in survivors)
    parsed, plain = json_and_plain_lines(two_workers)
    assert len(plain) == 1, plain
    assert plain[0].startswith(f"tradewire: worker {index} could not start (5 tries in a row): "
                               f"config file {two_workers.workdir / 'tradewire.toml'} is not valid TOML")
    retries = [line["msg"] for line in parsed if "could not start again" in line["msg"]]
    assert [re.search(r"\((\d) of 5 tries\)", msg).group(1) for msg in retries] == ["1", "2", "3", "4"]


async def test_stopped_while_a_worker_cannot_start_again_exits_non_zero(two_workers):
    index = await kill_a_worker_that_cannot_start_again(two_workers)

    def waiting_to_restart_after_a_failed_restart() -> bool:
        # its third start (the second restart) has already ended, the next is not yet due
        return ([i for i, _ in started_workers(two_workers)].count(index) >= 3
                and len(children(two_workers.pid)) == 1)

    await eventually(waiting_to_restart_after_a_failed_restart, timeout=30, what="a failed restart")
    two_workers.terminate()
    assert await asyncio.to_thread(two_workers.wait_exit, 40) != 0
    assert f"worker {index} was down when stopped" in two_workers.log_text()


async def test_every_line_a_worker_writes_says_which_worker(two_workers):
    def both_serving() -> bool:  # (a health probe may reach the same worker every time)
        return [line["msg"] for line in json_and_plain_lines(two_workers)[0]].count("serving") == 2

    await eventually(both_serving, timeout=30, what="two serving workers")
    two_workers.terminate()
    assert await asyncio.to_thread(two_workers.wait_exit, 40) == 0
    parsed, plain = json_and_plain_lines(two_workers)
    assert plain == []
    started = dict((pid, index) for index, pid in started_workers(two_workers))
    by_workers = [line for line in parsed if line["logger"] != "tradewire.workers"]
    assert {(line["worker"], line["pid"]) for line in by_workers} == {(i, pid) for pid, i in started.items()}
    assert {line["msg"] for line in by_workers} >= {"serving", "shutting down", "stopped"}
    assert all("worker" not in line and "pid" not in line
               for line in parsed if line["logger"] == "tradewire.workers")  # the supervisor's own


def logged_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_process_fields_are_on_every_line_of_both_paths(log_stream):
    configure_logging("INFO", stream=log_stream, process_fields={"worker": 1, "pid": 4242})
    event_logger("tradewire.test.hot").info("call", method="GetTrade")
    logging.getLogger("tradewire.test.standard").warning("slow", extra={"ms": 3})
    hot, standard = logged_lines(log_stream)
    assert hot == {"ts": hot["ts"], "level": "info", "logger": "tradewire.test.hot", "msg": "call",
                   "worker": 1, "pid": 4242, "method": "GetTrade"}
    assert standard == {"ts": standard["ts"], "level": "warning", "logger": "tradewire.test.standard",
                        "msg": "slow", "worker": 1, "pid": 4242, "ms": 3}


def test_a_single_gateway_lines_have_no_process_fields(log_stream):
    configure_logging("INFO", stream=log_stream)
    event_logger("tradewire.test.hot").info("call")
    logging.getLogger("tradewire.test.standard").warning("slow")
    assert [set(line) for line in logged_lines(log_stream)] == [{"ts", "level", "logger", "msg"}] * 2
