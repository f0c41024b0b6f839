"""Latency summaries: one shape (milliseconds) for every tool's numbers."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/p99.9/max/mean in ms of latencies given in seconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0}
    ms = 1000.0
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50) * ms,
        "p90": percentile(ordered, 90) * ms,
        "p99": percentile(ordered, 99) * ms,
        "p999": percentile(ordered, 99.9) * ms,
        "max": ordered[-1] * ms,
        "mean": sum(ordered) / len(ordered) * ms,
    }
