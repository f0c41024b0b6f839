"""The whole benchmark in one command (scripts/bench.sh): start, measure, stop, report.

Starts QuestDB (scripts/questdb.sh, free ports), the bare echo servers and the gateway
(`tradewire serve`, realistic settings: API-key auth, validation, audit to that QuestDB,
metrics and JSON logs on), measures, stops everything, and writes bench.json + bench.md.

Phases: machine speed → client ceiling → echo max throughput → core only → gateway (fixed
loads, max throughput, fan-out, soak) → gateway with audit/metrics/logs off → scale-out →
QuestDB row counts → machine speed again (bench/calibrate.py: runs compare only with it).
A failing phase is recorded under ``phase_errors`` and the run goes on.

    python -m bench.run [--quick | --smoke] [--soak SECONDS] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import calibrate, loadgen, report
from bench.payloads import HTTP_PROTOCOLS, PROTOCOLS
from bench.servers import (CLIENT_CPU, PRINCIPALS, SERVER_CPU, REPO, EchoServers, Gateway, QuestDB, RedisServer,
                           pinned, pinning_note, rss_kib, wait_until)

SUSTAIN_P99_MS = 50.0  # a step whose p99 exceeds this has "blown up"
SUSTAIN_ACHIEVED = 0.97
# Known limits of this 2-core setup, printed at the top of bench.md.
CAVEATS = [
    "QuestDB shares CPU 1 with the load generators. Measured separately: the open-loop client against "
    "the bare echo at 5,000/s has p99 0.7 ms without QuestDB and 78 ms with it running, so the HTTP p99 "
    "figures (and echo/ceiling steps failing the 50 ms p99 rule) include client-side stalls; the gateway "
    "at 250/s Connect had p99 40 ms with audit to QuestDB vs 17 ms with the local journal.",
    "Debian's wrk has no -R (constant throughput): wrk is used closed-loop only; fixed rates use "
    "bench/openloop.py (HTTP) and ghz --async --rps (gRPC).",
]
# Scale-out on this machine (gateway/workers.py): label → (workers, state in Redis).
SCALE_OUT = {"1 process, embedded store": (1, False), "1 worker, Redis": (1, True), "2 workers, Redis": (2, True)}
KEY_OF = {"grpc": "grpc", "connect": "connect", "connect-json": "connectjs", "grpc-web": "grpcweb", "json": "json"}


@dataclass(frozen=True)
class Profile:
    name: str
    fixed_rates: tuple[int, ...]
    fixed_s: float
    saturate_s: float  # each closed-loop saturation run
    step_s: float  # each open-loop step of the max-throughput search
    step_fractions: tuple[float, ...]  # of the closed-loop rate
    max_protocols: tuple[str, ...]
    recording_protocols: tuple[str, ...]
    fanout: tuple[int, ...]
    fanout_rounds: int
    core_n: int
    ceiling_rates: tuple[int, ...]
    ceiling_s: float
    drain_s: float


PROFILES = {
    "full": Profile("full", (250, 500, 1000), 60, 10, 10, (0.5, 0.7, 0.85, 1.0, 1.15), PROTOCOLS, PROTOCOLS,
                    (100, 1000), 3, 3000, (10000, 20000, 30000, 40000, 50000), 5, 15),
    "quick": Profile("quick", (250, 500, 1000), 3, 3, 2, (0.6, 0.85, 1.0), PROTOCOLS, PROTOCOLS,
                     (100, 1000), 1, 500, (10000, 30000), 2, 5),
    "smoke": Profile("smoke", (100,), 1.5, 1.5, 1, (0.5,), ("grpc", "connect"), ("grpc", "connect"),
                     (20,), 1, 200, (5000,), 1, 3),
}


class RssSampler:
    """VmRSS of one pid every ``period_s`` on a thread: the peak of a phase, and the soak curve."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((time.monotonic(), kib))
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


SETTLE_TIMEOUT_S = 180  # a saturated step can leave minutes of audit rows and abandoned calls behind


def settle(pid: int, timeout_s: float = SETTLE_TIMEOUT_S, window_s: float = 0.3) -> bool:
    """Wait until the server is idle (< 5 % of a core), so one run's backlog never bleeds into the
    next. False when it was still busy at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        after = cpu_seconds(pid)
        if before is None or after is None or (after - before) / window_s < 0.05:
            return True
    return False


class Bench:
    def __init__(self, profile: Profile, workdir: Path, soak_s: float, soak_rate: float) -> None:
        self.p = profile
        self.workdir = workdir
        self.soak_s, self.soak_rate = soak_s, soak_rate
        self.results: dict = {"fixed_load": {}, "max_throughput": {}, "recording_cost": {}, "fanout": {},
                              "memory": {"phases": []}, "scale_out": {}, "phase_errors": {}, "unsettled": []}
        self.protoset = loadgen.build_protoset(workdir / "tradewire.protoset")

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def phase(self, name: str):
        """Runs a phase; its failure is recorded, not raised (the other phases still run)."""
        print(f"[bench] {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported in bench.json / bench.md
            traceback.print_exc()
            self.results["phase_errors"][name] = f"{exc.__class__.__name__}: {str(exc)[:500]}"
        print(f"[bench] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    def settle(self, *pids: int, after: str) -> None:
        """:func:`settle` every process; one still busy at the deadline is recorded, since the
        next figures then include its backlog."""
        for pid in pids:
            if not settle(pid):
                print(f"[bench] still busy {SETTLE_TIMEOUT_S} s after {after}", file=sys.stderr, flush=True)
                self.results["unsettled"].append({"after": after, "pid": pid, "waited_s": SETTLE_TIMEOUT_S})

    @contextmanager
    def memory(self, gateway: Gateway, name: str):
        """RSS before, peak during, and after (once idle) one phase of the gateway."""
        before = gateway.rss_kib()
        with RssSampler(gateway.pid) as sampler:
            yield
            self.settle(gateway.pid, after=name)
        peak = max((kib for _, kib in sampler.samples), default=None)
        self.results["memory"]["phases"].append(
            {"phase": name, "before_kib": before, "peak_kib": peak, "after_kib": gateway.rss_kib()})

    def fixed(self, port_grpc: int, port_http: int, protocol: str, rate: float, duration: float,
              key: str | None, path: str | None = None) -> dict:
        if protocol == "grpc":
            return loadgen.ghz(port_grpc, self.protoset, key, duration, rate=rate)
        return loadgen.openloop(port_http, [protocol], [key or "x"], rate, duration, path=path,
                                drain_s=self.p.drain_s)

    def closed(self, port_grpc: int, port_http: int, protocol: str, key: str | None, path: str | None = None) -> dict:
        if protocol == "grpc":
            return loadgen.ghz(port_grpc, self.protoset, key, self.p.saturate_s, concurrency=32)
        return loadgen.wrk(port_http, protocol, key or "x", self.p.saturate_s, path=path)

    def sustained(self, closed_rps: float, step: Callable[[float], dict], pids: list[int], what: str) -> dict:
        """Open-loop steps at fractions of the closed-loop rate; the highest one that holds."""
        steps, best = [], None
        fractions = list(self.p.step_fractions)
        while fractions:
            fraction = fractions.pop(0)
            rate = max(10, round(closed_rps * fraction))
            run = step(rate)
            self.settle(*pids, after=f"{what} at {rate}/s")
            p99 = (run.get("latency_ms") or {}).get("p99")
            held = run["errors"] == 0 and run["achieved_rps"] >= SUSTAIN_ACHIEVED * rate and \
                p99 is not None and p99 <= SUSTAIN_P99_MS
            steps.append({"offered_rps": rate, "achieved_rps": run["achieved_rps"], "p99_ms": p99,
                          "errors": run["errors"], "held": held})
            if not held:
                if best is None and fraction > 0.1:  # even the first step failed: step down, halving
                    fractions = [fraction / 2]
                    continue
                break
            best = run
        return {"sustained_rps": best["achieved_rps"] if best else 0.0,
                "sustained_p99_ms": best["latency_ms"]["p99"] if best else None, "steps": steps}

    def max_throughput(self, pid: int, grpc_port: int, http_port: int, protocol: str, key: str | None,
                       path: str | None = None) -> dict:
        closed = self.closed(grpc_port, http_port, protocol, key, path)
        self.settle(pid, after=f"{protocol} closed loop")
        found = self.sustained(closed["achieved_rps"],
                               lambda rate: self.fixed(grpc_port, http_port, protocol, rate, self.p.step_s, key, path),
                               [pid], protocol)
        return {"closed_loop": closed, **found}

    # -- phases ---------------------------------------------------------------------------------

    def echo_phases(self) -> dict:
        echo = EchoServers(self.workdir / "echo").start()
        baselines = {}
        try:
            with self.phase("client ceiling (openloop vs raw echo)"):
                steps = []
                for rate in self.p.ceiling_rates:
                    run = loadgen.openloop(echo.http_port, ["connect"], ["x"], rate, self.p.ceiling_s, drain_s=5)
                    self.settle(echo.pid, after=f"client ceiling at {rate}/s")
                    held = run["errors"] == 0 and run["achieved_rps"] >= SUSTAIN_ACHIEVED * rate and \
                        run["latency_ms"]["p99"] <= SUSTAIN_P99_MS
                    steps.append({"offered_rps": rate, "achieved_rps": run["achieved_rps"],
                                  "p99_ms": run["latency_ms"]["p99"], "held": held})
                    if not held:
                        break
                held = [s for s in steps if s["held"]]
                self.results["client_ceiling"] = {"sustained_rps": held[-1]["achieved_rps"] if held else 0.0,
                                                  "highest_tried": steps[-1]["offered_rps"], "steps": steps}
            with self.phase("echo max throughput: grpc.aio"):
                baselines["grpc"] = {"name": "grpc.aio echo (uvloop)",
                                     **self.max_throughput(echo.pid, echo.grpc_port, 0, "grpc", None)}
            with self.phase("echo max throughput: uvicorn raw ASGI"):
                baselines["http"] = {"name": "uvicorn raw ASGI echo (httptools+uvloop), Connect-binary body",
                                     **self.max_throughput(echo.pid, 0, echo.http_port, "connect", None)}
            with self.phase("echo max throughput: connect-python"):
                self.results["connect_python_echo"] = self.max_throughput(echo.pid, 0, echo.connect_port,
                                                                          "connect", None)
        finally:
            echo.stop()
        return baselines

    def core_phase(self, questdb: QuestDB | None) -> None:
        with self.phase("core only"):
            cmd = [sys.executable, "-m", "bench.core_bench", "--workdir", str(self.workdir / "core"),
                   "--n", str(self.p.core_n)]
            if questdb:
                cmd += ["--questdb-conf", questdb.conf]
            done = subprocess.run(pinned(cmd, SERVER_CPU), capture_output=True, text=True, cwd=REPO, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            self.results["core"] = json.loads(done.stdout)

    def gateway_phases(self, questdb: QuestDB | None, baselines: dict) -> None:
        gateway = Gateway(self.workdir / "gateway", audit_conf=questdb.conf if questdb else None).start()
        self.results["memory"]["idle_start_kib"] = gateway.rss_kib()
        g, h = gateway.grpc_port, gateway.http_port
        try:
            for protocol in PROTOCOLS:
                key = PRINCIPALS[KEY_OF[protocol]]
                with self.phase(f"fixed load: {protocol}"), self.memory(gateway, f"fixed load {protocol}"):
                    runs = self.results["fixed_load"].setdefault(protocol, {})
                    for rate in self.p.fixed_rates:
                        runs[str(rate)] = self.fixed(g, h, protocol, rate, self.p.fixed_s, key)
                        self.settle(gateway.pid, after=f"{protocol} at {rate}/s")
                gateway.truncate_log()
            for protocol in self.p.max_protocols:
                key = PRINCIPALS[KEY_OF[protocol]]
                with self.phase(f"max throughput: {protocol}"), self.memory(gateway, f"max throughput {protocol}"):
                    found = self.max_throughput(gateway.pid, g, h, protocol, key)
                    echo = baselines.get("grpc" if protocol == "grpc" else "http")
                    row = {"gateway": found, "echo": echo or {"name": "missing", "sustained_rps": None,
                                                              "closed_loop": {"achieved_rps": None}}}
                    if echo and echo["sustained_rps"]:
                        row["ratio_sustained"] = found["sustained_rps"] / echo["sustained_rps"]
                    if echo and echo["closed_loop"]["achieved_rps"]:
                        row["ratio_closed_loop"] = found["closed_loop"]["achieved_rps"] / echo["closed_loop"]["achieved_rps"]
                    self.results["max_throughput"][protocol] = row
                gateway.truncate_log()
            for n in self.p.fanout:
                with self.phase(f"fan-out: {n} subscribers"), self.memory(gateway, f"fan-out {n}"):
                    cmd = [sys.executable, "-m", "bench.fanout", "--grpc-port", str(g), "--http-port", str(h),
                           "--key", PRINCIPALS["fanout"], "--subscribers", str(n), "--rounds", str(self.p.fanout_rounds)]
                    done = subprocess.run(pinned(cmd, CLIENT_CPU), capture_output=True, text=True, cwd=REPO,
                                          timeout=600)
                    if done.returncode != 0:
                        raise RuntimeError(done.stderr[-2000:])
                    self.results["fanout"][str(n)] = json.loads(done.stdout)
            if self.soak_s > 0:
                with self.phase(f"soak: {self.soak_s:.0f} s"):
                    self.soak(gateway)
        finally:
            gateway.stop()

    def soak(self, gateway: Gateway) -> None:
        """Half gRPC (ghz), half HTTP (openloop rotating Connect, Connect JSON, gRPC-Web, JSON)."""
        rate, note = self.soak_rate, ""
        sustained = [r["gateway"]["sustained_rps"] for r in self.results["max_throughput"].values()
                     if r["gateway"].get("sustained_rps")]
        if sustained and rate > 0.8 * min(sustained):
            capped = round(0.8 * min(sustained))
            note = (f"Requested {rate:.0f}/s exceeds what the gateway sustains (lowest protocol: "
                    f"{min(sustained):.0f}/s), which would measure an ever-growing queue, not leaks: "
                    f"ran at {capped}/s (80 % of it).")
            rate = capped
        http = [p for p in PROTOCOLS if p in HTTP_PROTOCOLS]
        clients: dict[str, dict] = {}

        def grpc_client() -> None:
            clients["grpc (ghz)"] = loadgen.ghz(gateway.grpc_port, self.protoset, PRINCIPALS["soak"],
                                                self.soak_s, rate=rate / 2)

        def http_client() -> None:
            clients["http (openloop: " + ", ".join(http) + ")"] = loadgen.openloop(
                gateway.http_port, http, [PRINCIPALS["soak"]], rate / 2, self.soak_s, drain_s=self.p.drain_s)

        started = time.monotonic()
        with RssSampler(gateway.pid, period_s=1.0 if self.soak_s >= 60 else 0.25) as sampler:
            threads = [threading.Thread(target=grpc_client), threading.Thread(target=http_client)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        end_load = started + self.soak_s
        self.settle(gateway.pid, after="the soak")
        samples = [(t - started, kib) for t, kib in sampler.samples if t <= end_load]
        warmup = min(60.0, 0.1 * self.soak_s)
        after = [(t, kib) for t, kib in samples if t >= warmup] or samples
        start_kib, end_kib = after[0][1], after[-1][1]
        self.results["memory"]["soak"] = {
            "duration_s": self.soak_s, "rate": rate, "requested_rate": self.soak_rate, "note": note,
            "mix": "½ gRPC via ghz, ½ HTTP via openloop rotating " + ", ".join(http),
            "warmup_s": warmup, "start_kib": start_kib, "end_kib": end_kib,
            "growth": end_kib / start_kib - 1 if start_kib else None,
            "slope_mib_per_min": _slope(after) * 60 / 1024, "after_idle_kib": gateway.rss_kib(),
            "samples": samples[:: max(1, len(samples) // 200)], "clients": clients,
        }

    def recording_off_phase(self, questdb: QuestDB | None) -> None:
        gateway = Gateway(self.workdir / "gateway-off", audit_conf=questdb.conf if questdb else None,
                          recording=False).start()
        try:
            for protocol in self.p.recording_protocols:
                with self.phase(f"recording off: {protocol}"):
                    off = self.closed(gateway.grpc_port, gateway.http_port, protocol, PRINCIPALS[KEY_OF[protocol]])
                    self.settle(gateway.pid, after=f"{protocol} closed loop, recording off")
                    on = self.results["max_throughput"].get(protocol, {}).get("gateway", {}).get("closed_loop")
                    row = {"on": on, "off": off}
                    if on and off["achieved_rps"]:
                        row["ratio"] = on["achieved_rps"] / off["achieved_rps"]
                    if on:
                        self.results["recording_cost"][protocol] = row
        finally:
            gateway.stop()

    def scale_out_phase(self, questdb: QuestDB | None) -> None:
        """Connect max throughput of one process on the embedded store vs 1 and 2 workers
        sharing one Redis; here every gateway may use both cores (load generators on CPU 1)."""
        redis = RedisServer(self.workdir / "redis").start()
        try:
            for label, (workers, shared) in SCALE_OUT.items():
                with self.phase(f"scale-out: {label}"):
                    env = {"TRADEWIRE_SERVER__WORKERS": str(workers)}
                    if shared:
                        env["TRADEWIRE_SHARED__REDIS_URL"] = redis.url
                    gateway = Gateway(self.workdir / f"scale-out-{workers}-{int(shared)}", extra_env=env, cpu=None,
                                      audit_conf=questdb.conf if questdb else None).start()
                    try:
                        pids = _serving_pids(gateway, workers)
                        found = self.max_throughput_of(pids, gateway.grpc_port, gateway.http_port, "connect",
                                                       PRINCIPALS["connect"])
                    finally:
                        gateway.stop()
                    self.results["scale_out"][label] = {"workers": workers, "store": "redis" if shared else "sqlite",
                                                        **found}
        finally:
            redis.stop()

    def max_throughput_of(self, pids: list[int], grpc_port: int, http_port: int, protocol: str, key: str) -> dict:
        """:meth:`max_throughput` for several serving processes (settles every one of them)."""
        closed = self.closed(grpc_port, http_port, protocol, key)
        what = f"{protocol} on {len(pids)} process(es)"
        self.settle(*pids, after=f"{what}, closed loop")

        def step(rate: float) -> dict:
            return self.fixed(grpc_port, http_port, protocol, rate, self.p.step_s, key)

        return {"closed_loop": closed, **self.sustained(closed["achieved_rps"], step, pids, what)}

    def machine_speed(self, when: str) -> None:
        """bench/calibrate.py on the server's CPU: how fast the machine was at ``when``."""
        with self.phase(f"machine speed at the {when}"):
            done = subprocess.run(pinned([sys.executable, "-m", "bench.calibrate"], SERVER_CPU), capture_output=True,
                                  text=True, cwd=REPO, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            self.results.setdefault("machine_speed", {})[when] = json.loads(done.stdout)

    def run(self, with_questdb: bool) -> dict:
        ticks = calibrate.cpu_ticks()
        self.machine_speed("start")
        questdb = QuestDB(self.workdir / "questdb").start() if with_questdb else None
        try:
            baselines = self.echo_phases()
            self.core_phase(questdb)
            self.gateway_phases(questdb, baselines)
            self.recording_off_phase(questdb)
            self.scale_out_phase(questdb)
            if questdb:
                from tradewire.core.audit import TABLES
                time.sleep(1)  # WAL apply
                self.results["audit_rows"] = {t: questdb.row_count(t) for t in sorted(TABLES)}
        finally:
            if questdb:
                questdb.stop()
        self.machine_speed("end")
        self.results.setdefault("machine_speed", {})["steal_pct"] = calibrate.steal_pct(ticks, calibrate.cpu_ticks())
        return self.results


def _serving_pids(gateway: Gateway, workers: int) -> list[int]:
    """The processes that serve: the gateway itself, or its workers once all of them are up."""
    if workers == 1:
        return [gateway.pid]
    children = Path(f"/proc/{gateway.pid}/task/{gateway.pid}/children")
    wait_until(lambda: len(children.read_text().split()) == workers, 60, f"{workers} workers")
    # each worker logs "serving" once both of its listeners are up (gateway/server.py)
    wait_until(lambda: gateway.log_path.read_text(errors="replace").count('"msg":"serving"') >= workers, 60,
               f"{workers} workers serving")
    return [int(p) for p in children.read_text().split()]


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares KiB per second."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mk = sum(k for _, k in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (k - mk) for t, k in points) / var if var else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    mode.add_argument("--smoke", action="store_true", help="the least that shows every section (tests)")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="mixed-protocol soak (e.g. 600)")
    parser.add_argument("--soak-rate", type=float, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--no-questdb", action="store_true", help="audit to the local journal instead")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tradewire-bench-"))
    try:
        results = Bench(profile, workdir, args.soak, args.soak_rate).run(not args.no_questdb)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    command = "scripts/bench.sh" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    results["meta"] = {
        "command": command, "profile": profile.name, "started": started, "elapsed_s": time.monotonic() - t0,
        "machine": report.machine_facts(), "pinning": pinning_note(), "sustain_p99_ms": SUSTAIN_P99_MS,
        "gateway": ("`python -m tradewire.gateway.cli serve`, API-key auth, validation, audit to "
                    + ("QuestDB" if not args.no_questdb else "the local journal")
                    + ", metrics and JSON logs (to a file) on; rate limits raised, large paper wallets"),
        "latency_note": ("ms from the moment a request was due (open loop, bench/openloop.py) or sent "
                         "(ghz); closed-loop runs (wrk, ghz -c) measure from send."),
        "profile_settings": profile.__dict__,
        "caveats": CAVEATS,
    }
    json_path, md_path = report.write(results, args.out)
    print(md_path.read_text())
    print(f"[bench] wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if results["phase_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
