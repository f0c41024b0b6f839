"""How fast this machine runs the gateway's kind of Python right now.

The bench machine is a shared 2-vCPU VM whose speed moves between runs: the same code
measured 1,003 and 520 core-only fills/s on the same day (bench/PROFILE.md, "third pass").
So each bench run times this fixed, CPU-bound workload on the server's CPU at its start and
at its end, and reads the CPU time the hypervisor took from the VM (steal): figures of two
runs compare only once their machine speeds are looked at too.

The workload is what a trade spends its CPU on — protobuf messages built, serialized and
parsed, JSON lines, hashing, dict work — repeated for a fixed number of loops, five times;
the median rate is reported.

    python -m bench.calibrate     → {"loops_per_s": ..., "samples": [...]}
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time

from tradewire.v1 import trade_pb2 as pb

LOOPS = 4_000
SAMPLES = 5


def _one_loop(i: int) -> int:
    request = pb.TradeRequest(request_id=f"calibrate-{i:08d}", amount="1.5", slippage_bps=50,
                              input_mint="So11111111111111111111111111111111111111112",
                              output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
    parsed = pb.TradeRequest.FromString(request.SerializeToString())
    line = json.dumps({"request_id": parsed.request_id, "amount": parsed.amount, "i": i, "ok": True})
    digest = hashlib.blake2b(line.encode(), digest_size=16).hexdigest()
    fields = {k: v for k, v in zip("abcdefgh", range(i, i + 8))}
    return len(digest) + sum(fields.values()) % 7


def loops_per_s() -> dict:
    rates = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        for i in range(LOOPS):
            _one_loop(i)
        rates.append(LOOPS / (time.perf_counter() - started))
    return {"loops_per_s": statistics.median(rates), "samples": [round(r) for r in rates]}


def cpu_ticks() -> dict[str, int]:
    """Whole-machine CPU ticks from /proc/stat: total and stolen by the hypervisor."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return {}
    return {"total": sum(fields[:8]), "steal": fields[7] if len(fields) > 7 else 0}


def steal_pct(start: dict[str, int], end: dict[str, int]) -> float | None:
    if not start or not end or end["total"] <= start["total"]:
        return None
    return 100.0 * (end["steal"] - start["steal"]) / (end["total"] - start["total"])


if __name__ == "__main__":
    print(json.dumps(loops_per_s()))
