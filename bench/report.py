"""bench.json → targets (pass/fail) and bench.md: every figure, how to reproduce it, on what machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.loadgen import tool
from bench.servers import REPO

P99_TARGET_MS = {"grpc": 5.0, "connect": 5.0, "connect-json": 5.0, "json": 10.0}  # at 1,000 trades/s
TARGET_RATE = 1000
RATIO_TARGET = 0.70
RSS_GROWTH_TARGET = 0.05
SOAK_TARGET_S = 600


def _out(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine_facts() -> dict:
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = _out(["git", "rev-parse", "HEAD"])
    dirty = bool(_out(["git", "status", "--porcelain", "--untracked-files=no"]).strip("?"))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "tools": {name: _out([path, "--version"]) if (path := tool(name)) else None
                  for name in ("ghz", "wrk", "h2load")},
    }


def targets(results: dict) -> list[dict]:
    """One row per target in the brief, with the measured value and pass/fail."""
    rows = []
    for protocol, limit in P99_TARGET_MS.items():
        run = results.get("fixed_load", {}).get(protocol, {}).get(str(TARGET_RATE))
        if run is None:
            continue
        p99 = (run.get("latency_ms") or {}).get("p99")
        ok = p99 is not None and p99 <= limit and run["errors"] == 0 and run["achieved_rps"] >= 0.97 * TARGET_RATE
        rows.append({"target": f"ExecuteTrade {protocol} at {TARGET_RATE}/s: p99 ≤ {limit:g} ms, 0 errors",
                     "measured": f"p99 {_ms(p99)} ms, {run['errors']} errors, {run['achieved_rps']:.0f}/s achieved",
                     "pass": ok})
    for protocol, row in results.get("max_throughput", {}).items():
        ratio, how = row.get("ratio_sustained"), "sustained"
        if ratio is None:  # no open-loop step held on one side: fall back to closed-loop saturation
            ratio, how = row.get("ratio_closed_loop"), "closed loop"
        if ratio is None:
            continue
        g, e = (row["gateway"]["sustained_rps"], row["echo"]["sustained_rps"]) if how == "sustained" else \
            (row["gateway"]["closed_loop"]["achieved_rps"], row["echo"]["closed_loop"]["achieved_rps"])
        rows.append({"target": f"max throughput {protocol} ≥ {RATIO_TARGET:.0%} of echo on the same stack",
                     "measured": f"{ratio:.1%} ({how}: {g:.0f} vs {e:.0f}/s)", "pass": ratio >= RATIO_TARGET})
    soak = results.get("memory", {}).get("soak")
    if soak and soak.get("growth") is not None:
        full = soak["duration_s"] >= SOAK_TARGET_S
        rows.append({"target": f"RSS growth < {RSS_GROWTH_TARGET:.0%} over a 10-minute soak under load",
                     "measured": f"{soak['growth']:+.1%} over {soak['duration_s']:.0f} s at {soak['rate']:.0f}/s"
                                 + ("" if full else " (shorter soak than the target's 10 min)"),
                     "pass": full and soak["growth"] < RSS_GROWTH_TARGET})
    return rows


def _ms(v) -> str:
    return "—" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _rate(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _lat(run: dict) -> str:
    lat = run.get("latency_ms") or {}
    return " | ".join(_ms(lat.get(k)) for k in ("p50", "p90", "p99", "max"))


def _errors(run: dict) -> str:
    resent = run.get("resent_after_keepalive_close")
    return f"{run['errors']} ({resent} resent)" if resent else str(run["errors"])


def _mib(kib) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def markdown(results: dict) -> str:
    meta, lines = results["meta"], []
    add = lines.append
    add("# tradewire load benchmark\n")
    add(f"Reproduce: `{meta['command']}` ({meta['profile']} profile; {meta['started']}, "
        f"{meta['elapsed_s'] / 60:.1f} min).  ")
    m = meta["machine"]
    add(f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}, {m['platform']}; "
        f"commit `{m['git_commit']}`.  ")
    add(f"Pinning: {meta['pinning']}.  ")
    speed = results.get("machine_speed", {})
    if "start" in speed and "end" in speed:
        steal = speed.get("steal_pct")
        add(f"Machine speed (`python -m bench.calibrate` on the server CPU; compare runs by it): "
            f"{_rate(speed['start']['loops_per_s'])} loops/s at the start, {_rate(speed['end']['loops_per_s'])} "
            f"at the end; CPU stolen by the hypervisor during the run: "
            f"{'?' if steal is None else f'{steal:.1f} %'}.  ")
    add(f"Gateway: {meta['gateway']}.  ")
    add(f"Latency: {meta['latency_note']}\n")
    for caveat in meta.get("caveats", []):
        add(f"> Caveat: {caveat}\n")

    add("## Targets\n\n| target | measured | result |\n|---|---|---|")
    for row in results.get("targets", []):
        add(f"| {row['target']} | {row['measured']} | {'PASS' if row['pass'] else '**FAIL**'} |")

    add("\n## ExecuteTrade (PAPER) at fixed offered load\n")
    add("| protocol | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | errors | client |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for protocol, by_rate in results.get("fixed_load", {}).items():
        for rate, run in by_rate.items():
            add(f"| {protocol} | {_rate(float(rate))} | {_rate(run['achieved_rps'])} | {_lat(run)} | "
                f"{_errors(run)} | {run['tool']} |")
    add("\n\"resent\": requests met by the gateway closing an idle keep-alive connection, with no byte "
        "of answer, sent once more on another connection as HTTP clients do (bench/openloop.py); "
        "their latency counts from the first sending.")

    add("\n## Maximum throughput (gateway vs bare echo on the same stack)\n")
    add(f"Sustained = highest open-loop step with 0 errors, ≥ 97 % of the offered rate achieved and "
        f"p99 ≤ {meta['sustain_p99_ms']:g} ms. Closed loop = saturation by wrk/ghz at fixed concurrency.\n")
    add("| protocol | gateway sustained/s | p99 ms there | gateway closed-loop/s | echo | echo sustained/s | "
        "echo closed-loop/s | ratio (sustained) | ratio (closed loop) |")
    add("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for protocol, row in results.get("max_throughput", {}).items():
        g, e = row["gateway"], row["echo"]
        add(f"| {protocol} | {_rate(g['sustained_rps'])} | {_ms(g.get('sustained_p99_ms'))} | "
            f"{_rate(g['closed_loop']['achieved_rps'])} | {e['name']} | {_rate(e['sustained_rps'])} | "
            f"{_rate(e['closed_loop']['achieved_rps'])} | {_pct(row.get('ratio_sustained'))} | "
            f"{_pct(row.get('ratio_closed_loop'))} |")
    extra = results.get("connect_python_echo")
    if extra:
        add(f"\nconnect-python alone (its ASGI app, canned ExecuteTrade, no FastAPI, no core), Connect binary: "
            f"sustained {_rate(extra['sustained_rps'])}/s, closed loop {_rate(extra['closed_loop']['achieved_rps'])}/s.")
    ceiling = results.get("client_ceiling")
    if ceiling:
        add(f"\nOpen-loop client ceiling (bench/openloop.py against the raw echo): sustained "
            f"{_rate(ceiling['sustained_rps'])}/s (highest step tried {_rate(ceiling['highest_tried'])}/s); "
            f"the gateway's rates are far below it.")

    add("\n## Audit + metrics + logging cost (closed-loop saturation)\n")
    add("| protocol | all on /s | p99 ms | all off /s | p99 ms | on / off |\n|---|---:|---:|---:|---:|---:|")
    for protocol, row in results.get("recording_cost", {}).items():
        on, off = row["on"], row["off"]
        add(f"| {protocol} | {_rate(on['achieved_rps'])} | {_ms(on['latency_ms'].get('p99'))} | "
            f"{_rate(off['achieved_rps'])} | {_ms(off['latency_ms'].get('p99'))} | {_pct(row.get('ratio'))} |")

    scale = results.get("scale_out")
    if scale:
        add("\n## Scale-out on this machine (Connect, gateway free to use both cores)\n")
        add("`[server] workers = N` (gateway/workers.py): N serving processes on the same ports, state shared "
            "in Redis. Same load generator (CPU 1) and rules as above.\n")
        add("| setup | workers | store | sustained/s | p99 ms there | closed-loop/s | closed-loop p99 ms |")
        add("|---|---:|---|---:|---:|---:|---:|")
        for label, row in scale.items():
            closed = row["closed_loop"]
            add(f"| {label} | {row['workers']} | {row['store']} | {_rate(row['sustained_rps'])} | "
                f"{_ms(row.get('sustained_p99_ms'))} | {_rate(closed['achieved_rps'])} | "
                f"{_ms(closed['latency_ms'].get('p99'))} |")

    add("\n## Status-stream fan-out (gRPC StreamExecutionStatus, one trade per round)\n")
    add("| subscribers | rounds | deliveries | p50 ms | p90 ms | p99 ms | max ms | last terminal ms | errors |")
    add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, run in results.get("fanout", {}).items():
        lat = run["delivery_latency_ms"]
        last = max((r["last_terminal_ms"] or 0) for r in run["per_round"]) if run["per_round"] else None
        add(f"| {n} | {run['rounds']} | {run['deliveries']} | {_ms(lat.get('p50'))} | {_ms(lat.get('p90'))} | "
            f"{_ms(lat.get('p99'))} | {_ms(lat.get('max'))} | {_ms(last)} | {run['errors']} |")

    memory = results.get("memory", {})
    add("\n## Gateway memory (VmRSS, MiB)\n\n| phase | before | peak | after |\n|---|---:|---:|---:|")
    for row in memory.get("phases", []):
        add(f"| {row['phase']} | {_mib(row['before_kib'])} | {_mib(row['peak_kib'])} | {_mib(row['after_kib'])} |")
    soak = memory.get("soak")
    if soak:
        add(f"\nSoak: {soak['duration_s']:.0f} s at {soak['rate']:.0f} trades/s ({soak['mix']}); RSS "
            f"{_mib(soak['start_kib'])} MiB after {soak['warmup_s']:.0f} s warm-up → {_mib(soak['end_kib'])} MiB "
            f"at the end: growth {soak['growth']:+.1%}, slope {soak['slope_mib_per_min']:+.2f} MiB/min. "
            f"{soak.get('note', '')}")
        for name, run in soak.get("clients", {}).items():
            add(f"- {name}: {_rate(run['achieved_rps'])}/s, p50/p90/p99/max {_lat(run)} ms, {run['errors']} errors")

    core = results.get("core")
    if core:
        add("\n## Core only (in-process TradeService, no transport)\n")
        add("| recording | fills/s (1 at a time) | p50 ms | p99 ms | fills/s (64 concurrent) | quotes/s |")
        add("|---|---:|---:|---:|---:|---:|")
        for label in ("on", "off"):
            c = core[label]
            s = c["fills_sequential"]
            add(f"| {label} | {_rate(s['fills_per_s'])} | {_ms(s['latency_ms']['p50'])} | "
                f"{_ms(s['latency_ms']['p99'])} | {_rate(c['fills_concurrent']['fills_per_s'])} | "
                f"{_rate(c['quotes_per_s'])} |")
        add("\n| step (µs per call) | recording on | recording off |\n|---|---:|---:|")
        for step, us in core["on"]["step_us"].items():
            add(f"| {step} | {us:.1f} | {core['off']['step_us'].get(step, float('nan')):.1f} |")

    audit = results.get("audit_rows")
    if audit:
        add("\nAudit rows that reached QuestDB: " + ", ".join(f"{t} {n:,}" if n is not None else f"{t} ?"
                                                            for t, n in audit.items()) + ".")
    if results.get("unsettled"):
        add("\n## Steps that started before the gateway was idle\n")
        add("The process was still busy this long after the step named; the figures of the step after it "
            "include that backlog.\n")
        for entry in results["unsettled"]:
            add(f"- after {entry['after']}: still busy after {entry['waited_s']} s")
    if results.get("phase_errors"):
        add("\n## Phases that failed\n")
        for name, err in results["phase_errors"].items():
            add(f"- {name}: {err}")
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "—" if v is None else f"{v:.0%}"


def write(results: dict, out_dir: Path) -> tuple[Path, Path]:
    import json

    results["targets"] = targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
