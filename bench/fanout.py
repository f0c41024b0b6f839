"""Status-stream fan-out: N gRPC subscribers follow one trade; how late does each event arrive?

Per round: N StreamExecutionStatus streams are opened for a request id that does not
exist yet (the gateway holds such a stream for ``streams.await_trade_s``), the harness
waits until the gateway counts them all in flight (``tradewire_requests_in_flight`` on
/metrics), then places the trade. Delivery latency = receipt (client wall clock) minus
the event's own ``timestamp`` (the gateway's wall clock at the transition; same host).
The client's own decoding is part of the figure: one Python process reads every copy.

    python -m bench.fanout --grpc-port P --http-port Q --key KEY --subscribers 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import urllib.request

import grpc

from bench.payloads import SERVICE, run_tag, trade_request
from bench.stats import summarize
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

_IN_FLIGHT = re.compile(r'^tradewire_requests_in_flight\{protocol="grpc"\}\s+([0-9.e+]+)', re.M)
STREAMS_PER_CHANNEL = 250


def grpc_in_flight(http_port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
            match = _IN_FLIGHT.search(resp.read().decode())
    except OSError:
        return None
    return float(match.group(1)) if match else None


async def _follow(channel: grpc.aio.Channel, rid: str, metadata, latencies: list[float]) -> float | None:
    """One subscriber: every transition's delivery latency; the terminal one's is returned."""
    call = channel.unary_stream(f"/{SERVICE}/StreamExecutionStatus",
                                request_serializer=spb.StreamExecutionStatusRequest.SerializeToString,
                                response_deserializer=pb.ExecutionStatus.FromString)
    async for event in call(spb.StreamExecutionStatusRequest(request_id=rid), metadata=metadata, timeout=60):
        received = time.time_ns()
        if event.kind == pb.STATUS_KIND_TRANSITION:
            delay = (received - event.timestamp.ToNanoseconds()) / 1e9
            latencies.append(delay)
            if event.terminal:
                return delay
    return None


async def _round(channels, trade_channel, http_port: int, key: str, subscribers: int, rid: str) -> dict:
    metadata = (("authorization", f"Bearer {key}"),)
    latencies: list[float] = []
    # the previous round's streams may still be closing on the server: let the count drop first
    idle_by = time.monotonic() + 10
    while (baseline := grpc_in_flight(http_port) or 0.0) > 0 and time.monotonic() < idle_by:
        await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(_follow(channels[i % len(channels)], rid, metadata, latencies))
             for i in range(subscribers)]
    deadline = time.monotonic() + 8  # below the gateway's streams.await_trade_s (10 s)
    registered = None
    while time.monotonic() < deadline:
        registered = grpc_in_flight(http_port)
        if registered is None or registered - baseline >= subscribers:
            break
        await asyncio.sleep(0.05)
    if registered is None:  # metrics off: give the streams a moment instead
        await asyncio.sleep(2)
    execute = trade_channel.unary_unary(f"/{SERVICE}/ExecuteTrade", request_serializer=pb.TradeRequest.SerializeToString,
                                        response_deserializer=pb.TradeResult.FromString)
    started = time.perf_counter()
    result = await execute(trade_request(rid), metadata=metadata, timeout=30)
    trade_ms = (time.perf_counter() - started) * 1000
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    all_done_ms = (time.perf_counter() - started) * 1000
    terminal = [o for o in outcomes if isinstance(o, float)]
    failures = [repr(o)[:200] for o in outcomes if isinstance(o, BaseException)]
    return {
        "trade_status": pb.TradeStatus.Name(result.status),
        "trade_call_ms": trade_ms,
        "deliveries": len(latencies),
        "subscribers_complete": len(terminal),
        "errors": subscribers - len(terminal),
        "error_kinds": {f: failures.count(f) for f in set(failures)},
        "latencies": latencies,
        "terminal_latencies": terminal,
        "last_terminal_ms": max(terminal) * 1000 if terminal else None,
        "all_streams_done_ms": all_done_ms,
    }


async def run(grpc_port: int, http_port: int, key: str, subscribers: int, rounds: int) -> dict:
    target = f"127.0.0.1:{grpc_port}"
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, -(-subscribers // STREAMS_PER_CHANNEL)))]
    trade_channel = grpc.aio.insecure_channel(target)
    tag = run_tag()
    per_round, latencies, terminal = [], [], []
    try:
        for n in range(rounds):
            r = await _round(channels, trade_channel, http_port, key, subscribers, f"{tag}-fanout-{n}")
            latencies += r.pop("latencies")
            terminal += r.pop("terminal_latencies")
            per_round.append(r)
    finally:
        for channel in (*channels, trade_channel):
            await channel.close()
    return {
        "tool": "bench/fanout.py (grpc.aio client, StreamExecutionStatus)",
        "subscribers": subscribers,
        "rounds": rounds,
        "events_per_trade": per_round[0]["deliveries"] // max(1, subscribers) if per_round else 0,
        "deliveries": len(latencies),
        "errors": sum(r["errors"] for r in per_round),
        "delivery_latency_ms": summarize(latencies),
        "terminal_latency_ms": summarize(terminal),
        "per_round": per_round,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    json.dump(asyncio.run(run(args.grpc_port, args.http_port, args.key, args.subscribers, args.rounds)), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
