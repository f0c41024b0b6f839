"""One pooled, keep-alive HTTP client per upstream (quote API, RPC, block engine), each behind
its own circuit breaker, shared by every trade.

What counts as an upstream *failure* (for the breaker and for retries): a transport error
(connect, read, timeout), HTTP 5xx or 429. Any other answer — including a 4xx or a JSON-RPC
error object — is an answer: the upstream is up. URLs are never logged or put in errors
(RPC URLs often carry an API key).

Retries (:meth:`Upstream.retrying`) are bounded and back off exponentially with jitter;
they are for calls made *before* a transaction is sent. Nothing that sends is retried here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx

from tradewire.core.executors.live.breaker import CircuitBreaker, CircuitOpen
from tradewire.core.retry import RetryPolicy
from tradewire.core.tracing import current_trace, outbound_trace_headers

log = logging.getLogger("tradewire.live.upstream")
T = TypeVar("T")

TransportWrapper = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


class UpstreamError(Exception):
    """The upstream did not answer usefully; ``transient`` ones are worth retrying."""

    def __init__(self, upstream: str, message: str, transient: bool = True) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.message = message
        self.transient = transient


class MalformedAnswer(UpstreamError):
    """The upstream answered, but not in the shape its API has: nothing can be read from it.
    Anticipated (a misbehaving node or proxy), so it is told in one line, never a traceback."""

    def __init__(self, upstream: str, what: str) -> None:
        super().__init__(upstream, f"malformed answer ({what})", transient=False)


@contextmanager
def reading(upstream: str, what: str):
    """Parse an answer: a missing field or a value of the wrong type is a MalformedAnswer."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise MalformedAnswer(upstream, f"{what}: {type(exc).__name__} {exc}"[:200]) from None


@dataclass(frozen=True)
class HttpSettings:
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    max_connections: int = 16


class Upstream:
    """An httpx.AsyncClient with bounded connections and timeouts, plus a circuit breaker."""

    def __init__(self, name: str, base_url: str, http: HttpSettings, breaker: CircuitBreaker,
                 retry: RetryPolicy, wrap_transport: TransportWrapper | None = None) -> None:
        self.name = name
        self.breaker = breaker
        self.retry = retry
        limits = httpx.Limits(max_connections=http.max_connections,
                              max_keepalive_connections=http.max_connections, keepalive_expiry=30.0)
        transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(limits=limits)
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), transport=transport,
            timeout=httpx.Timeout(http.timeout_s, connect=http.connect_timeout_s),
        )
        self.calls = 0  # requests that went out (tests and metrics)

    async def request(self, method: str, path: str, *, check_breaker: bool = True,
                      headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        """``headers``: the caller's own, sent beside the trace context."""
        if check_breaker:
            self.breaker.before_call()  # raises CircuitOpen
        self.calls += 1
        try:
            with outbound_trace_headers(method, self.http.base_url.host, current_trace()) as trace_headers:
                response = await self.http.request(method, path, headers={**(headers or {}), **trace_headers},
                                                   **kwargs)
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            self.breaker.record_failure()
            raise UpstreamError(self.name, f"unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            self.breaker.record_failure()
            raise UpstreamError(self.name, f"answered HTTP {response.status_code}")
        self.breaker.record_success()
        return response

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` with bounded retries of transient failures; an open breaker ends them."""
        failed = 0
        while True:
            try:
                return await call()
            except UpstreamError as exc:
                failed += 1
                if not exc.transient or not self.retry.retries_left(failed):
                    raise
                log.info("retrying %s after a transient failure", self.name,
                         extra={"upstream": self.name, "attempt": failed, "error": exc.message})
                await asyncio.sleep(self.retry.delay(failed))
            except CircuitOpen:
                raise

    async def close(self) -> None:
        await self.http.aclose()
