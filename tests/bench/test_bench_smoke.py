"""The benchmark harness works end to end: `scripts/bench.sh --smoke` against real processes.

The smoke profile runs every section for a second or so (QuestDB, echo servers, gateway,
every protocol at 100 trades/s, max-throughput search on gRPC and Connect, fan-out, a
3-second soak, recording on/off, core only) and must finish well under a minute. The
assertions are about the harness, not about performance targets: every section is
present, low-rate runs have zero errors, and the numbers are sane.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    for name in ("ghz", "wrk", "java", "taskset"):
        if not (shutil.which(name) or (ROOT / ".cache" / "go" / "bin" / name).exists()):
            require_tool(name)
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([str(ROOT / "scripts" / "bench.sh"), "--smoke", "--soak", "3", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PATH": f"{ROOT / '.cache' / 'go' / 'bin'}:{os.environ['PATH']}"})
    assert done.returncode == 0, f"bench.sh --smoke failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert (out / "bench.md").read_text().startswith("# tradewire load benchmark")
    return json.loads((out / "bench.json").read_text())


def test_every_section_is_present(results):
    for section in ("meta", "targets", "client_ceiling", "fixed_load", "max_throughput", "recording_cost",
                    "fanout", "memory", "core", "audit_rows", "scale_out", "machine_speed"):
        assert results.get(section), f"missing section {section}"
    assert not results["phase_errors"]
    assert results["unsettled"] == []  # every step at these rates found the gateway idle after it
    speed = results["machine_speed"]
    assert speed["start"]["loops_per_s"] > 1000 and speed["end"]["loops_per_s"] > 1000
    assert speed["steal_pct"] is None or 0 <= speed["steal_pct"] <= 100
    meta = results["meta"]
    assert meta["machine"]["nproc"] >= 1 and meta["machine"]["python"].startswith("3.11")
    assert meta["command"].startswith("scripts/bench.sh")


def test_low_rate_runs_have_no_errors_on_every_protocol(results):
    assert set(results["fixed_load"]) == {"grpc", "connect", "connect-json", "grpc-web", "json"}
    for protocol, by_rate in results["fixed_load"].items():
        run = by_rate["100"]
        assert run["errors"] == 0, (protocol, run["error_kinds"])
        assert run["achieved_rps"] > 80, (protocol, run["achieved_rps"])
        lat = run["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 10_000, (protocol, lat)


def test_throughput_echo_fanout_and_core_numbers_are_sane(results):
    for protocol, row in results["max_throughput"].items():
        assert row["gateway"]["closed_loop"]["achieved_rps"] > 50, protocol
        assert row["echo"]["closed_loop"]["achieved_rps"] > row["gateway"]["closed_loop"]["achieved_rps"]
        assert 0 < row["ratio_closed_loop"] < 1
    for protocol, row in results["recording_cost"].items():
        assert row["on"]["achieved_rps"] > 0 and row["off"]["achieved_rps"] > 0, protocol
    fanout = results["fanout"]["20"]
    assert fanout["errors"] == 0 and fanout["deliveries"] >= 20 * 8
    assert 0 <= fanout["delivery_latency_ms"]["p50"] < 5_000
    core = results["core"]
    assert core["on"]["fills_sequential"]["fills_per_s"] > 50
    assert core["off"]["quotes_per_s"] > 1000
    assert all(us > 0 for us in core["on"]["step_us"].values())
    assert results["client_ceiling"]["sustained_rps"] > 1000


def test_memory_and_audit_are_recorded(results):
    memory = results["memory"]
    assert memory["idle_start_kib"] > 10_000
    assert all(p["before_kib"] and p["peak_kib"] >= p["before_kib"] * 0.5 for p in memory["phases"])
    soak = memory["soak"]
    assert soak["growth"] is not None and soak["clients"]
    assert all(c["errors"] == 0 for c in soak["clients"].values()), soak["clients"]
    # the gateway really audited to QuestDB: at least one row per trade placed
    assert results["audit_rows"]["tw_fills"] >= 400
    assert results["audit_rows"]["tw_transitions"] >= 9 * results["audit_rows"]["tw_fills"] * 0.9


def test_scale_out_runs_one_process_and_workers_on_redis(results):
    scale = results["scale_out"]
    assert [row["workers"] for row in scale.values()] == [1, 1, 2]
    assert all(row["closed_loop"]["achieved_rps"] > 50 and row["closed_loop"]["errors"] == 0
               for row in scale.values()), scale


def test_the_json_codec_bench_measures_both_codecs_on_the_same_messages(tmp_path):
    out = tmp_path / "json_codec.json"
    done = subprocess.run([sys.executable, "-m", "bench.json_codec", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["in_process"]
    assert set(rows) == {"parse TradeRequest", "print TradeResult", "print a 500-trade history page"}
    assert all(row["json_format_us"] > 0 and row["protojson_us"] > 0 for row in rows.values())


def test_the_auth_micro_benchmark_measures_every_store(tmp_path):
    out = tmp_path / "auth.json"
    done = subprocess.run([sys.executable, "-m", "bench.auth_bench", "--n", "50", "--rounds", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert all(r["median_us"] > 0 and r["calls"] == 50 for r in results.values())
    reads, kept = (results[f"API key verify (Redis store, {how})"]["median_us"] for how in ("reads Redis", "key kept 1 s"))
    assert kept < reads  # the kept key answers without the round trip
    assert "API key verify only (store.verify, cached)" in results and "Redis PING round trip" in " ".join(results)


def test_the_history_bench_measures_both_stores_and_a_search_to_the_end(tmp_path):
    out = tmp_path / "history.json"
    done = subprocess.run([sys.executable, "-m", "bench.history_bench", "--trades", "1500", "--reps", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    nothing = report["per_call"]["mint matching nothing"]
    assert nothing["sqlite"] == {**nothing["sqlite"], "trades": 0, "token": False}
    assert nothing["redis"]["trades"] == 0 and nothing["redis"]["token"]  # 1,500 trades: past one call's budget
    searched = report["mint_matching_nothing_to_the_end"]
    assert searched["redis"]["calls"] == 2 and searched["sqlite"]["calls"] == 1
    assert all(row["median_ms"] > 0 for by_store in report["per_call"].values() for row in by_store.values())
