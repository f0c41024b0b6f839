"""Core only, no transport: quotes/s, paper fills/s and per-step costs through TradeService.

Builds the core in-process with ``tradewire.gateway.assembly.build_core(settings)`` — the
same object graph `serve` uses — and calls it directly, so the difference between these
figures and the protocol figures is what the transports and frameworks cost. Runs with
the bench's realistic settings (audit, metrics, logs on; logs to a file), then once more
with the four recording switches off.

    python -m bench.core_bench --workdir DIR [--n 2000] [--questdb-conf CONF]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench.payloads import request_id, run_tag, trade_request
from bench.servers import BENCH_ENV, PRINCIPALS, RECORDING_OFF_ENV
from bench.stats import summarize
from tradewire.core.config import load_settings
from tradewire.core.context import CallContext, Protocol
from tradewire.core.logs import configure_logging
from tradewire.gateway.assembly import build_core


def settings_for(workdir: Path, recording: bool, questdb_conf: str | None):
    from tradewire.core.auth.api_keys import hash_key

    env = {**BENCH_ENV, **({} if recording else RECORDING_OFF_ENV),
           "TRADEWIRE_STORAGE__DATA_DIR": str(workdir),
           "TRADEWIRE_AUTH__API_KEYS": json.dumps([{"prefix": PRINCIPALS["core"][:11],
                                                     "sha256": hash_key(PRINCIPALS["core"]),
                                                     "owner": "bench-core", "scopes": ["read", "trade:paper"]}])}
    if questdb_conf:
        env["TRADEWIRE_AUDIT__QUESTDB_CONF"] = questdb_conf
    return load_settings(None, env=env)


def context() -> CallContext:
    return CallContext(protocol=Protocol.GRPC, method="ExecuteTrade", peer="ipv4:127.0.0.1:40000",
                       headers={"authorization": f"Bearer {PRINCIPALS['core']}"})


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def fills(service, n: int, concurrency: int, tag: str) -> dict:
    """n ExecuteTrade calls, ``concurrency`` at a time; per-call latency and fills/s."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            result = await service.ExecuteTrade(trade_request(request_id(tag, i)), context())
            latencies.append(time.perf_counter() - started)
            assert result.status == 4 or result.status, result  # FILLED, else raised

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"calls": n, "concurrency": concurrency, "fills_per_s": n / elapsed, "latency_ms": summarize(latencies)}


async def step_costs(core, n: int) -> dict[str, float]:
    """µs per call of each pipeline step and of the record step's pieces."""
    from tradewire.core.errors import Code
    from tradewire.core.pipeline import Call

    pipeline, service = core.service.pipeline, core.service
    request = trade_request("step-cost-probe")
    call = Call(context(), request)
    pipeline.establish_context(call)
    costs = {}
    costs["establish_context"] = per_call_us(lambda: pipeline.establish_context(Call(context(), request)), n)
    for step in pipeline.STEPS:
        costs[step.__name__] = per_call_us(lambda: step(call), n)
    recorder = pipeline.recorder
    costs["record: call_finished"] = per_call_us(lambda: recorder.call_finished(call.ctx, Code.OK), n)
    order = call.orders[0]
    from tradewire.core import lifecycle
    from tradewire.v1 import trade_pb2 as pb
    event = lifecycle.status_event(order.request_id, 3, pb.TRADE_STATUS_ROUTED, "routed", None)
    costs["record: transition (x9 per trade)"] = per_call_us(lambda: recorder.transition(order, event), n)
    quotes, market = core.quotes, service.market
    sol, usdc = market.mint(order.input_mint.address, "input_mint"), market.mint(order.output_mint.address, "x")

    start = time.perf_counter()
    for _ in range(n):
        await quotes.quote(sol, usdc, order.amount_atomic, False, order.slippage_bps)
    costs["quote (price table)"] = (time.perf_counter() - start) / n * 1e6
    return costs


async def measure(workdir: Path, n: int, recording: bool, questdb_conf: str | None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    core = build_core(settings_for(workdir, recording, questdb_conf))
    await core.start()
    try:
        tag = run_tag()
        await fills(core.service, min(200, n), 1, tag + "w")  # warm-up: wallet, caches, SQLite pages
        sequential = await fills(core.service, n, 1, tag + "s")
        concurrent = await fills(core.service, n, 64, tag + "c")
        steps = await step_costs(core, max(200, n // 2))
        quote_us = steps["quote (price table)"]
        return {"fills_sequential": sequential, "fills_concurrent": concurrent, "step_us": steps,
                "quotes_per_s": 1e6 / quote_us if quote_us else None}
    finally:
        await core.close()


async def run(workdir: Path, n: int, questdb_conf: str | None) -> dict:
    return {
        "tool": "bench/core_bench.py (in-process build_core, no transport)",
        "audit": "questdb" if questdb_conf else "journal",
        "on": await measure(workdir / "on", n, True, questdb_conf),
        "off": await measure(workdir / "off", n, False, None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--questdb-conf")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = open(args.workdir / "core.log", "w")
    configure_logging("INFO", stream=log)  # the JSON lines go to a file, as in the gateway
    result = uvloop.run(run(args.workdir, args.n, args.questdb_conf))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
