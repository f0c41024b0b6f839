"""What one GetTradeHistory store read costs with a long history, on each store.

One caller with ``--trades`` finished trades (claimed, then saved FILLED, as the runner does)
in the embedded store (SQLite) and the shared one (Redis, Debian's redis-server started
here); page size 50. For each filter: ms per call (min / median / p90 of ``--reps`` calls,
the two stores interleaved), and the trades and token the first page answers. Then a filter
that matches nothing, followed token to token to the end: calls made, time in all, longest
call — the Redis store bounds what one call examines (``HISTORY_SCAN_BUDGET``), so a long
search is several short calls rather than one that holds the event loop. Prints a Markdown
table and writes bench/results/history.json.

    python -m bench.history_bench [--trades 20000] [--reps 40] [--out bench/results/history.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.servers import RedisServer
from tradewire.core.shared.fail_fast import fail_fast_client
from tradewire.core.shared.redis_store import HISTORY_SCAN_BUDGET, RedisTradeStore
from tradewire.core.store.base import HistoryQuery
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb

RESULTS = Path(__file__).parent / "results" / "history.json"
SOL, USDC = "So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"  # a mint none of the trades touch
T0 = 1_700_000_000 * 10**9  # the first trade's created_at; one a second after it
CALLER = "bench-caller"
PAGE = 50


def filled(i: int, request_id: str, trade_id: str, status: int) -> pb.TradeResult:
    """The i-th trade as stored at its claim (status UNSPECIFIED) or its end (FILLED)."""
    result = pb.TradeResult(request_id=request_id, trade_id=trade_id, mode=pb.TRADING_MODE_PAPER, status=status,
                            input_mint=SOL, output_mint=USDC, swap_mode=pb.SWAP_MODE_EXACT_IN, requested_amount="0.01")
    result.created_at.FromNanoseconds(T0 + i * 10**9)
    result.updated_at.FromNanoseconds(T0 + i * 10**9 + 5 * 10**6)
    if status == pb.TRADE_STATUS_FILLED:
        result.amount_in, result.amount_out, result.quoted_amount_out = "0.01", "1.523481", "1.523912"
        result.other_amount_threshold, result.executed_price, result.price_impact_pct = "1.508673", "152.3481", "0.0012"
        result.fees.base_fee_lamports, result.fees.priority_fee_lamports, result.fees.total_lamports = 5000, 1200, 6200
    return result


def cases(trades: int) -> dict[str, HistoryQuery]:
    return {
        "first page, no filter": HistoryQuery(),
        "mint matching nothing": HistoryQuery(mint=JUP),
        "status matching nothing": HistoryQuery(statuses=(pb.TRADE_STATUS_EXPIRED,)),
        "mode matching nothing": HistoryQuery(mode=pb.TRADING_MODE_LIVE),
        "end_time near the oldest trades": HistoryQuery(end_ns=T0 + 100 * 10**9),
        "start_time: the last 30 trades": HistoryQuery(start_ns=T0 + (trades - 30) * 10**9),
    }


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"min_ms": ordered[0], "median_ms": statistics.median(ordered), "p90_ms": ordered[int(len(ordered) * 0.9)]}


def to_the_end(store, query: HistoryQuery) -> dict[str, float]:
    calls, after, longest, start = 0, None, 0.0, time.perf_counter()
    while True:
        began = time.perf_counter()
        page = store.history(CALLER, query, PAGE, after)
        calls += 1
        longest = max(longest, time.perf_counter() - began)
        if page.last_cursor is None:
            break
        after = page.last_cursor
    return {"calls": calls, "total_ms": (time.perf_counter() - start) * 1000, "longest_ms": longest * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=40, help="calls per filter and store")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            stores = {"sqlite": SqliteStore(Path(tmp) / "trades.db"),
                      "redis": RedisTradeStore(fail_fast_client(server.url, 5.0, 5.0), "bench")}
            for i in range(args.trades):
                request_id, trade_id = f"req-{i:06d}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
                for store in stores.values():
                    store.claim(CALLER, request_id, "fp", filled(i, request_id, trade_id, pb.TRADE_STATUS_UNSPECIFIED))
                    store.save(CALLER, filled(i, request_id, trade_id, pb.TRADE_STATUS_FILLED))
            results: dict[str, dict] = {}
            for name, query in cases(args.trades).items():
                samples: dict[str, list[float]] = {label: [] for label in stores}
                for _ in range(args.reps):
                    for label, store in stores.items():
                        began = time.perf_counter()
                        store.history(CALLER, query, PAGE, None)
                        samples[label].append((time.perf_counter() - began) * 1000)
                results[name] = {}
                for label, store in stores.items():
                    page = store.history(CALLER, query, PAGE, None)
                    results[name][label] = {**ms(samples[label]), "trades": len(page.trades),
                                            "token": page.last_cursor is not None}
            searched = {label: to_the_end(store, HistoryQuery(mint=JUP)) for label, store in stores.items()}
        finally:
            server.stop()

    report = {"trades": args.trades, "page_size": PAGE, "reps": args.reps, "redis_scan_budget": HISTORY_SCAN_BUDGET,
              "python": sys.version.split()[0], "machine": platform.machine(), "per_call": results,
              "mint_matching_nothing_to_the_end": searched}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.trades} trades of one caller, page size {PAGE}; ms per call, min / median / p90 of {args.reps}\n")
    print("| filter | SQLite | Redis |\n|---|---|---|")
    for name, by_store in results.items():
        cells = [f"{r['min_ms']:.2f} / {r['median_ms']:.2f} / {r['p90_ms']:.2f} ({r['trades']}"
                 f"{' + token' if r['token'] else ''})" for r in (by_store["sqlite"], by_store["redis"])]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    for label, row in searched.items():
        print(f"\n{label}: a mint matching nothing, token to token to the end: {row['calls']} calls, "
              f"{row['total_ms']:.1f} ms in all, longest {row['longest_ms']:.1f} ms", end="")
    print(f"\n\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
