"""Runs the load generators (ghz, wrk, bench.openloop) pinned to the client core, and
turns their output into one result shape: offered/achieved rate, ok/errors, latency_ms.

* gRPC: ghz with a protoset (so the measured gateway answers no reflection calls), metadata
  ``authorization``, and a templated request id (``{{.RequestNumber}}``) so every call is
  a new trade. ``--async --rps R`` is open-loop: calls leave on schedule whether or not
  earlier ones have answered. Without ``--rps`` it is closed-loop at ``-c`` workers.
* HTTP (Connect, gRPC-Web, JSON) at fixed rates: bench.openloop (see its docstring).
* HTTP closed-loop saturation: wrk with a Lua script that builds every request from the
  same templates (unique ids, binary-safe bodies) and reports percentiles as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.payloads import (HTTP_PROTOCOLS, ID_WIDTH, SERVICE, body_parts, ghz_data, http_headers, run_tag)
from bench.servers import CLIENT_CPU, REPO, pinned
from bench.stats import summarize

GO_BIN = REPO / ".cache" / "go" / "bin"


def tool(name: str) -> str | None:
    """The tool on PATH, else where scripts/provision.sh --test puts the Go ones."""
    found = shutil.which(name) or shutil.which(name, path=f"{GO_BIN}:{Path.home() / 'go' / 'bin'}")
    return found


def build_protoset(out: Path) -> Path:
    """``buf build`` of the contract with its workspace deps (scripts/buf.sh lint assembles them)."""
    venv_bin = str(Path(sys.executable).parent)  # buf (buf-bin) lives next to the venv's python
    subprocess.run([str(REPO / "scripts" / "buf.sh"), "lint"], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "PYTHON": sys.executable, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"})
    buf = tool("buf") or str(Path(sys.executable).parent / "buf")
    subprocess.run([buf, "build", "--as-file-descriptor-set", "-o", str(out)], cwd=REPO, check=True,
                   capture_output=True)
    return out


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(pinned(cmd, CLIENT_CPU), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


# -- gRPC: ghz ---------------------------------------------------------------------------------

def ghz(port: int, protoset: Path, api_key: str | None, duration_s: float, rate: float | None = None,
        concurrency: int = 50, connections: int = 4) -> dict:
    """ExecuteTrade for ``duration_s``: open-loop at ``rate`` (``--async --rps``), else closed-loop."""
    exe = tool("ghz")
    if exe is None:
        raise RuntimeError("ghz is not installed (scripts/provision.sh --test)")
    tag = run_tag()
    cmd = [exe, "--insecure", "--protoset", str(protoset), "--call", f"{SERVICE}/ExecuteTrade",
           "-d", ghz_data(tag), "-z", f"{duration_s}s", "--duration-stop", "wait", "-c", str(concurrency),
           "--connections", str(connections), "--cpus", "1", "-t", "30s", "-O", "json"]
    if api_key:
        cmd += ["-m", json.dumps({"authorization": f"Bearer {api_key}"})]
    if rate:
        cmd += ["--async", "--rps", str(int(rate))]
    cmd.append(f"127.0.0.1:{port}")
    report = json.loads(_run(cmd, timeout=duration_s + 120).stdout)
    return parse_ghz(report, rate, duration_s, concurrency)


def parse_ghz(report: dict, rate: float | None, duration_s: float, concurrency: int) -> dict:
    details = report.get("details") or []
    ok = [d["latency"] / 1e9 for d in details if d.get("status") == "OK"]
    statuses = dict(report.get("statusCodeDistribution") or {})
    errors = sum(n for code, n in statuses.items() if code != "OK")
    if not details:  # ghz left the details out: fall back to its own distribution
        ok = []
    latency = summarize(ok) if ok else _ghz_distribution(report)
    total_s = report.get("total", 0) / 1e9
    return {
        "tool": "ghz --async --rps (open loop)" if rate else f"ghz -c {concurrency} (closed loop)",
        "offered_rps": rate,
        "duration_s": duration_s,
        "sent": report.get("count", 0),
        "ok": statuses.get("OK", 0),
        "errors": errors,
        "error_kinds": {**{k: v for k, v in statuses.items() if k != "OK"},
                        **{f"error: {k}"[:120]: v for k, v in (report.get("errorDistribution") or {}).items()}},
        "achieved_rps": statuses.get("OK", 0) / total_s if total_s else 0.0,
        "latency_ms": latency,
    }


def _ghz_distribution(report: dict) -> dict:
    dist = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    return {"count": report.get("count", 0), "p50": dist.get(50), "p90": dist.get(90), "p99": dist.get(99),
            "max": report.get("slowest", 0) / 1e6, "mean": report.get("average", 0) / 1e6}


# -- HTTP open loop: bench.openloop ---------------------------------------------------------------

def openloop(port: int, protocols: list[str], keys: list[str], rate: float, duration_s: float,
             connections: int = 64, path: str | None = None, drain_s: float = 10.0) -> dict:
    cmd = [sys.executable, "-m", "bench.openloop", "--port", str(port), "--protocols", ",".join(protocols),
           "--rate", str(rate), "--duration", str(duration_s), "--connections", str(connections),
           "--drain", str(drain_s)]
    for key in keys:
        cmd += ["--key", key]
    if path:
        cmd += ["--path", path]
    return json.loads(_run(cmd, timeout=duration_s + drain_s + 60).stdout)


# -- HTTP closed loop: wrk + Lua ------------------------------------------------------------------

_LUA = r"""
-- generated by bench/loadgen.py: every request is a new trade (unique request id)
local function unhex(s) return (s:gsub("..", function(c) return string.char(tonumber(c, 16)) end)) end
local prefix, suffix = unhex("{prefix}"), unhex("{suffix}")
local tag, width, check_grpc = "{tag}", {width}, {check_grpc}
local threads, counter = {{}}, 0
tid, bad = 0, 0  -- globals: setup() sets tid through thread:set, done() reads bad through thread:get
wrk.method = "POST"
wrk.path = "{path}"
{headers}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local head = string.format("%s%02d-", tag, tid)
  local id = head .. string.format("%0" .. (width - #head) .. "d", counter)
  return wrk.format(nil, nil, nil, prefix .. id .. suffix)
end
if check_grpc then
  function response(status, headers, body)
    local code = headers["grpc-status"] or (body and body:match("grpc%-status:%s*(%d+)"))
    if status ~= 200 or code ~= "0" then bad = bad + 1 end
  end
end
function done(summary, latency, requests)
  local grpc_errors = 0
  for _, t in ipairs(threads) do grpc_errors = grpc_errors + (tonumber(t:get("bad")) or 0) end
  local e = summary.errors
  io.write("WRKJSON ", string.format(
    '{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"grpc":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, grpc_errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_script(protocol: str, api_key: str, path: str | None = None) -> str:
    """The Lua script for ``protocol``: unique ids per thread and request, binary-safe body."""
    prefix, suffix = body_parts(protocol)
    tag = run_tag()[:6]
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in http_headers(protocol, api_key, "x").items()
                        if k != "Host")
    return _LUA.format(prefix=prefix.hex(), suffix=suffix.hex(), tag=tag, width=ID_WIDTH,
                       check_grpc="true" if protocol == "grpc-web" else "false",
                       path=path or HTTP_PROTOCOLS[protocol][0], headers=headers)


def wrk(port: int, protocol: str, api_key: str, duration_s: float, connections: int = 32,
        path: str | None = None) -> dict:
    """Closed-loop saturation: ``connections`` requests always in flight for ``duration_s``."""
    exe = tool("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(protocol, api_key, path))
    try:
        seconds = max(1, round(duration_s))  # wrk takes whole seconds
        cmd = [exe, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", f.name,
               f"http://127.0.0.1:{port}{path or HTTP_PROTOCOLS[protocol][0]}"]
        out = _run(cmd, timeout=duration_s + 60).stdout
    finally:
        os.unlink(f.name)
    line = next(l for l in out.splitlines() if l.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON "):])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"] + raw["grpc"]
    seconds = raw["duration_us"] / 1e6
    kinds = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout", "grpc") if raw[k]}
    return {
        "tool": f"wrk -t1 -c{connections} (closed loop)",
        "offered_rps": None,
        "duration_s": duration_s,
        "sent": raw["requests"],
        "ok": raw["requests"] - errors,
        "errors": errors,
        "error_kinds": kinds,
        "achieved_rps": (raw["requests"] - errors) / seconds if seconds else 0.0,
        "latency_ms": {"count": raw["requests"], "p50": raw["p50"] / 1000, "p90": raw["p90"] / 1000,
                       "p99": raw["p99"] / 1000, "max": raw["max"] / 1000, "mean": raw["mean"] / 1000},
    }
