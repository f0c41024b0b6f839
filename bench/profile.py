"""Where the gateway's time goes per ExecuteTrade, per protocol: py-spy under a steady load.

For each protocol: a fixed open-loop rate (below saturation, so the profile shows work,
not queueing), py-spy sampling the gateway (``--gil``: only the thread holding the GIL,
i.e. Python CPU time) for a window, and /proc CPU over the same window for the whole
process (grpc's C threads and the kernel included). Writes per protocol the folded stacks
and a ranked summary (self time by file:line, inclusive time by function, and the
pipeline's parts), plus profile.json with CPU per trade. bench/PROFILE.md interprets them.

py-spy is a profiling-only tool: ``pip install py-spy`` into the venv (not a dependency).

    python -m bench.profile [--rate 300] [--duration 20] [--out bench/results/profile]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import loadgen
from bench.payloads import PROTOCOLS
from bench.run import KEY_OF, cpu_seconds, settle
from bench.servers import PRINCIPALS, REPO, Gateway, QuestDB

# Inclusive shares worth naming: (label, frame prefix as py-spy prints it).
PARTS = [
    ("adapter + framework (everything outside TradeService)", None),
    ("TradeService.ExecuteTrade (call path in core)", "TradeService.ExecuteTrade "),
    ("  pipeline: authenticate", "Pipeline.authenticate "),
    ("  pipeline: validate", "Pipeline.validate "),
    ("  pipeline: rate_limit", "Pipeline.rate_limit "),
    ("  runner: admit (dedup, claim in SQLite)", "TradeRunner.admit "),
    ("trade task (TradeRunner._run: executor, transitions, finish)", "TradeRunner._run "),
    ("  PaperExecutor.execute", "PaperExecutor.execute "),
    ("  TradeRunner._finish (store.save)", "TradeRunner._finish "),
    ("recording: Recorder.transition (x9/trade)", "Recorder.transition "),
    ("recording: Recorder.call_finished", "Recorder.call_finished "),
    ("recording: Recorder.auth_attempt", "Recorder.auth_attempt "),
    ("recording: Recorder.fill", "Recorder.fill "),
    ("recording: log lines", "_EventLogger._log "),
    ("recording: AuditEvent construction", "AuditEvent.__post_init__ "),
    ("audit sink threads (QuestDB writer)", "QuestDBSink."),
    ("SQLite store (all calls)", "SqliteStore."),
    ("protobuf Timestamp helpers", "Timestamp."),
]


def _function(frame: str) -> str:
    """'name (file:line)' → 'name (file)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else frame


def summarize_folded(path: Path, top: int = 30) -> dict:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for fn in {_function(f) for f in frames}:
            inclusive[fn] += n
        in_service = False
        for label, prefix in PARTS:
            if prefix and any(f.startswith(prefix) for f in frames):
                parts[label] += n
                if prefix == "TradeService.ExecuteTrade " or prefix == "TradeRunner._run ":
                    in_service = True
        if not in_service and not any(f.startswith("QuestDBSink.") for f in frames):
            parts[PARTS[0][0]] += n
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "parts": [{"part": label, "share": share(parts[label])} for label, _ in PARTS],
        "self": [{"frame": f, "share": share(n)} for f, n in self_time.most_common(top)],
        "inclusive": [{"function": f, "share": share(n)} for f, n in inclusive.most_common(top + 30)],
    }


def profile_protocol(gateway: Gateway, protocol: str, rate: float, duration: float, out: Path,
                     protoset: Path, py_spy: str) -> dict:
    key = PRINCIPALS[KEY_OF[protocol]]
    result: dict = {}

    def load() -> None:
        if protocol == "grpc":
            result["load"] = loadgen.ghz(gateway.grpc_port, protoset, key, duration, rate=rate)
        else:
            result["load"] = loadgen.openloop(gateway.http_port, [protocol], [key], rate, duration)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(2)  # warm-up
    window = max(3.0, duration - 4)
    folded = out / f"{protocol}.folded"
    cpu0, t0 = cpu_seconds(gateway.pid), time.monotonic()
    subprocess.run([py_spy, "record", "--pid", str(gateway.pid), "--gil", "-r", "200", "-d", str(int(window)),
                    "-f", "raw", "-o", str(folded)], capture_output=True, check=True)
    cpu1, t1 = cpu_seconds(gateway.pid), time.monotonic()
    thread.join()
    settle(gateway.pid)
    summary = summarize_folded(folded)
    trades = rate * (t1 - t0)
    summary.update({
        "protocol": protocol, "rate": rate, "window_s": t1 - t0,
        "process_cpu_ms_per_trade": (cpu1 - cpu0) * 1000 / trades,
        "gil_ms_per_trade": summary["samples"] / 200 * 1000 / trades,
        "load": {k: result["load"][k] for k in ("achieved_rps", "errors", "latency_ms")},
    })
    (out / f"{protocol}.txt").write_text(render(summary))
    return summary


def render(s: dict) -> str:
    lines = [f"{s['protocol']}: {s['rate']:.0f} trades/s for {s['window_s']:.0f} s; process CPU "
             f"{s['process_cpu_ms_per_trade']:.2f} ms/trade, GIL held {s['gil_ms_per_trade']:.2f} ms/trade; "
             f"p50/p99 {s['load']['latency_ms'].get('p50', 0):.2f}/{s['load']['latency_ms'].get('p99', 0):.2f} ms", "",
             "share of GIL-held samples, by part (inclusive; parts overlap):"]
    lines += [f"  {p['share']:6.1%}  {p['part']}" for p in s["parts"]]
    lines += ["", "self time (leaf frame, file:line):"]
    lines += [f"  {x['share']:6.1%}  {x['frame']}" for x in s["self"]]
    lines += ["", "inclusive time by function:"]
    lines += [f"  {x['share']:6.1%}  {x['function']}" for x in s["inclusive"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "profile")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tradewire-profile-"))
    questdb = QuestDB(workdir / "questdb").start()
    gateway = Gateway(workdir / "gateway", audit_conf=questdb.conf).start()
    summaries = []
    try:
        protoset = loadgen.build_protoset(workdir / "tradewire.protoset")
        for protocol in args.protocols.split(","):
            print(f"[profile] {protocol}", file=sys.stderr, flush=True)
            summaries.append(profile_protocol(gateway, protocol, args.rate, args.duration, args.out, protoset, py_spy))
            gateway.truncate_log()
    finally:
        gateway.stop()
        questdb.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    (args.out / "profile.json").write_text(json.dumps(summaries, indent=1) + "\n")
    for s in summaries:
        print(render(s).split("\n\nself time")[0] + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
