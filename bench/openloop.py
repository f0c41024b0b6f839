"""Open-loop HTTP/1.1 load generator on raw sockets (asyncio + uvloop + httptools).

Why not the usual tools: h2load sends one body for every request, and the gateway
de-duplicates by request id, so it would measure only the replay path; Debian's wrk is
closed-loop (no ``-R``), so at a fixed load a slow server would simply be offered less.
This client sends request i at ``t0 + i / rate`` whatever the server does, each with its
own request id (bench/payloads.py templates), over a pool of keep-alive connections (one
request in flight per connection; no pipelining).

The gateway closes a keep-alive connection idle past its timeout; a request sent down it at that
moment meets the close with no byte of answer. As HTTP clients do (RFC 9112 §9.3.1), such a
request — on a reused connection, nothing answered — is sent once more on another connection
(the request id makes that safe) and counted as ``resent``; any other loss is an error.

Latency is measured from the moment a request became due (the scheduler noticed it), so
time spent waiting for a free connection counts — no coordinated omission. The timer
slack of the event loop (~1 ms) is excluded from latency and reported as
``schedule_lag``. Its own ceiling is measured against the bare echo server (bench.md).

Bounded: at most ``rate * duration`` requests, then ``drain_s`` to collect answers.
Loopback only. Prints one JSON object.

    python -m bench.openloop --port 8080 --protocols connect --key KEY --rate 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
import time
from array import array

import httptools
import uvloop

from bench.payloads import http_template, request_id, run_tag
from bench.stats import summarize

_GRPC_STATUS = re.compile(rb"grpc-status:\s*(\d+)")


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, client: OpenLoopClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.due = 0.0
        self.index = -1  # of the request in flight
        self.grpc_web = False
        self.busy = False
        self.answering = False  # a byte of the answer to the request in flight has come
        self.reused = False  # an answer came on it before
        self.grpc_status: bytes | None = None
        self.body = bytearray()

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answering = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.client.failed(self, f"bad response: {exc}")
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.client.lost(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.grpc_web and name.lower() == b"grpc-status":
            self.grpc_status = value

    def on_body(self, body: bytes) -> None:
        if self.grpc_web:
            self.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        error = None if status == 200 else f"http {status}"
        if error is None and self.grpc_web:
            code = self.grpc_status
            if code is None:
                match = _GRPC_STATUS.search(self.body)
                code = match.group(1) if match else b"missing"
            if code != b"0":
                error = f"grpc-status {code.decode()}"
        self.client.completed(self, error)

    def send(self, raw: bytes, index: int, due: float, grpc_web: bool) -> None:
        self.busy, self.index, self.due, self.grpc_web, self.answering = True, index, due, grpc_web, False
        self.grpc_status, self.body = None, bytearray()
        self.transport.write(raw)


class OpenLoopClient:
    def __init__(self, host: str, port: int, templates: list, rate: float, duration: float,
                 connections: int, drain_s: float, tag: str) -> None:
        self.host, self.port = host, port
        self.templates = templates
        self.rate = rate
        self.total = max(1, int(rate * duration))
        self.duration = duration
        self.connections = connections
        self.drain_s = drain_s
        self.tag = tag
        self.free: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.backlog: collections.deque[tuple[int, float]] = collections.deque()
        self.latencies = array("d")
        self.lags = array("d")
        self.errors: collections.Counter[str] = collections.Counter()
        self.outstanding = 0
        self.resent: set[int] = set()  # requests sent again after a keep-alive close (see above)
        self.idle_closed = 0  # idle connections the server closed
        self.max_backlog = 0
        self.last_done = 0.0
        self._idle = asyncio.Event()
        self._closing = False

    # -- connection pool ------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        self.conns.add(conn)
        self._release(conn)

    def _release(self, conn: _Conn) -> None:
        conn.busy = False
        if self.backlog:
            i, due = self.backlog.popleft()
            self._send(conn, i, due)
        else:
            self.free.append(conn)

    def _send(self, conn: _Conn, i: int, due: float) -> None:
        template = self.templates[i % len(self.templates)]
        conn.send(template.render(request_id(self.tag, i)), i, due, template.protocol == "grpc-web")

    def _dispatch(self, i: int, due: float, first: bool = False) -> None:
        """Send request ``i`` now if a connection is free, else queue it (``first``: ahead of the rest)."""
        if self.free:
            self._send(self.free.pop(), i, due)
        elif first:
            self.backlog.appendleft((i, due))
        else:
            self.backlog.append((i, due))

    # -- callbacks from connections ----------------------------------------------------------

    def completed(self, conn: _Conn, error: str | None) -> None:
        now = time.perf_counter()
        self.outstanding -= 1
        self.last_done = now
        conn.reused = True
        if error is None:
            self.latencies.append(now - conn.due)
        else:
            self.errors[error] += 1
        self._release(conn)
        if self.outstanding == 0:
            self._idle.set()

    def failed(self, conn: _Conn, error: str) -> None:
        if conn.busy:
            conn.busy = False
            self.outstanding -= 1
            self.errors[error] += 1

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.free:
            self.free.remove(conn)
        if not conn.busy:
            self.idle_closed += 1
        elif conn.reused and not conn.answering and conn.index not in self.resent:
            conn.busy = False
            self.resent.add(conn.index)
            self._dispatch(conn.index, conn.due, first=True)  # it has waited longest
        else:
            self.failed(conn, "connection lost")
        if self.outstanding == 0:
            self._idle.set()
        if len(self.conns) < self.connections and not self._closing:
            asyncio.ensure_future(self._reopen())

    async def _reopen(self) -> None:
        try:
            await self._open()
        except OSError as exc:
            self.errors[f"connect: {exc.__class__.__name__}"] += 1

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> dict:
        await asyncio.gather(*(self._open() for _ in range(self.connections)))
        start = time.perf_counter() + 0.01
        i = 0
        while i < self.total:
            now = time.perf_counter()
            due_n = min(self.total, int((now - start) * self.rate) + 1)
            while i < due_n:
                self.lags.append(now - (start + i / self.rate))
                self.outstanding += 1
                self._idle.clear()
                self._dispatch(i, now)
                i += 1
            self.max_backlog = max(self.max_backlog, len(self.backlog))
            wait = start + i / self.rate - time.perf_counter()
            await asyncio.sleep(wait if wait > 0 else 0)
        sent_end = time.perf_counter()
        try:
            async with asyncio.timeout(self.drain_s):
                while self.outstanding > 0:
                    await self._idle.wait()
        except TimeoutError:
            pass
        self._closing = True
        unanswered = self.outstanding + len(self.backlog)
        if unanswered:
            self.errors["timeout (unanswered at the end)"] += unanswered
        for conn in list(self.conns):
            conn.transport.close()
        elapsed = max(sent_end, self.last_done) - start
        return {
            "tool": "openloop (bench/openloop.py)",
            "offered_rps": self.rate,
            "duration_s": self.duration,
            "sent": self.total,
            "ok": len(self.latencies),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "achieved_rps": len(self.latencies) / elapsed if elapsed > 0 else 0.0,
            "connections": self.connections,
            "max_backlog": self.max_backlog,
            "resent_after_keepalive_close": len(self.resent),
            "idle_connections_closed_by_server": self.idle_closed,
            "latency_ms": summarize(self.latencies),
            "schedule_lag_ms": summarize(self.lags),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocols", required=True, help="comma-separated; requests rotate over them")
    parser.add_argument("--key", action="append", required=True,
                        help="API key; one for all protocols, or one per protocol in the same order")
    parser.add_argument("--path", help="override the request path (echo servers)")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--drain", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    protocols = args.protocols.split(",")
    keys = args.key if len(args.key) == len(protocols) else [args.key[0]] * len(protocols)
    host = f"{args.host}:{args.port}"
    templates = [http_template(p, k, host, args.path) for p, k in zip(protocols, keys)]
    client = OpenLoopClient(args.host, args.port, templates, args.rate, args.duration, args.connections,
                            args.drain, run_tag())
    result = uvloop.run(client.run())
    result["protocols"] = protocols
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
