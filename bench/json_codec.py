"""The JSON protocols' codec: google.protobuf.json_format against core/protojson.py (protobuf-py's
native codec), on the messages a JSON caller sends and gets: a trade request parsed, a trade
result printed, a 500-trade history page printed; and, with ``--wire``, a 500-trade
HTTP/JSON history page fetched from a real gateway (journal audit, pinned like the bench).

    python -m bench.json_codec [--wire] [--out bench/results/json_codec.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from google.protobuf import json_format

from bench.payloads import trade_request
from tradewire.core import protojson
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


def filled_result(request_id: str) -> pb.TradeResult:
    result = pb.TradeResult(
        request_id=request_id, trade_id=f"t-{request_id}", mode=pb.TRADING_MODE_PAPER, status=pb.TRADE_STATUS_FILLED,
        input_mint="So11111111111111111111111111111111111111112",
        output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", swap_mode=pb.SWAP_MODE_EXACT_IN,
        amount_in="1.5", amount_out="245.123456", quoted_amount_out="245.2", other_amount_threshold="244.0",
        executed_price="163.415637", price_impact_pct="0.01", realized_slippage_bps=3,
        fees=pb.Fees(base_fee_lamports=5000, priority_fee_lamports=1200, total_lamports=6200),
        client_metadata={"strategy": "alpha"})
    result.created_at.FromNanoseconds(1_764_000_000_123_000_000)
    result.updated_at.FromNanoseconds(1_764_000_000_456_000_000)
    return result


def per_call_us(fn, n: int) -> float:
    """Median of five timings of ``n`` calls, in µs per call."""
    fn()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def in_process() -> dict[str, dict[str, float]]:
    request_doc = json_format.MessageToDict(trade_request("codec-1"))
    result = filled_result("codec-1")
    page = spb.GetTradeHistoryResponse(trades=[filled_result(f"codec-{i}") for i in range(500)])

    def parse_with_json_format():
        json_format.ParseDict(request_doc, pb.TradeRequest())

    def parse_with_protojson():
        protojson.merge_json_value(request_doc, pb.TradeRequest())

    cases = {
        "parse TradeRequest": (parse_with_json_format, parse_with_protojson, 5000),
        "print TradeResult": (
            lambda: orjson.dumps(json_format.MessageToDict(result, always_print_fields_with_no_presence=True)),
            lambda: protojson.to_json(result), 5000),
        "print a 500-trade history page": (
            lambda: orjson.dumps(json_format.MessageToDict(page, always_print_fields_with_no_presence=True)),
            lambda: protojson.to_json(page), 10),
    }
    return {name: {"json_format_us": per_call_us(old, n), "protojson_us": per_call_us(new, n)}
            for name, (old, new, n) in cases.items()}


def over_the_wire(pages: int = 30) -> dict[str, float]:
    """A 500-trade GET /v1/trades?pageSize=500 against a real gateway, ms per page."""
    from bench.servers import PRINCIPALS, Gateway

    key = PRINCIPALS["json"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    gateway = Gateway(workdir=Path(tempfile.mkdtemp(prefix="tw-json-codec-"))).start()
    base = f"http://127.0.0.1:{gateway.http_port}"
    try:
        for first in range(0, 500, 50):
            batch = {"trades": [json_format.MessageToDict(trade_request(f"page-{first + i}")) for i in range(50)]}
            urllib.request.urlopen(urllib.request.Request(
                base + "/v1/trades:batch", data=json.dumps(batch).encode(), headers=headers), timeout=60).read()
        times = []
        for _ in range(pages):
            started = time.perf_counter()
            body = urllib.request.urlopen(urllib.request.Request(
                base + "/v1/trades?pageSize=500", headers=headers), timeout=60).read()
            times.append((time.perf_counter() - started) * 1000)
        assert len(json.loads(body)["trades"]) == 500
        return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wire", action="store_true", help="also fetch a 500-trade page from a real gateway")
    parser.add_argument("--out", type=Path, default=Path("bench/results/json_codec.json"))
    args = parser.parse_args()
    results = {"in_process": in_process()}
    for name, row in results["in_process"].items():
        print(f"{name:32s} json_format {row['json_format_us']:9.1f} µs   protojson {row['protojson_us']:9.1f} µs")
    if args.wire:
        results["history_page_over_http_json"] = wire = over_the_wire()
        print(f"500-trade HTTP/JSON page over the wire: median {wire['median_ms']:.1f} ms "
              f"(min {wire['min_ms']:.1f}, max {wire['max_ms']:.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
