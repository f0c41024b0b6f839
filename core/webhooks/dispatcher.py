"""Webhook delivery from the durable outbox.

When a trade reaches its terminal status, TradeRunner stores the result and the trade's
webhooks in one SQLite transaction (``TradeStore.save(..., outbox=...)``): one per URL —
the principal's configured endpoint and the request's ``webhook_url``. This dispatcher
POSTs them with a pooled ``httpx.AsyncClient``:

* 2xx → delivered. Anything else (status, timeout, refused connection) → retried after an
  exponential, jittered backoff (``webhooks.retry``) — or, for a 429 or 503 with
  ``Retry-After``, after what the receiver asks when that is longer (up to ``max_backoff_s``);
  after ``max_attempts`` attempts the entry is dead-lettered (state ``dead``, kept with its
  last error).
* ``timeout_s`` bounds a whole attempt (resolution, connection, request, answer), so it ends
  within its lease however slowly a receiver trickles its answer; of the answer only the status
  counts, and no more than ANSWER_LIMIT bytes of its body are read.
* Entries are leased as they are taken (their next attempt moved past the request timeout,
  atomically with the read), so replicas sharing a store never send one at the same time, and
  one whose sender died mid-delivery is due again when its lease ends — for this process after
  a restart, or for any other replica on the shared store. Nothing is lost, and a receiver may
  rarely see a delivery twice — the ``tradewire-delivery`` header is the id to dedupe on.
* At most ``max_in_flight_per_receiver`` deliveries run at once to one receiver (a URL's
  origin: scheme, lowercased host, port), so a receiver that stalls cannot hold every one of the
  ``concurrency`` slots and keep other receivers' webhooks waiting. An entry taken while its
  receiver is at that bound takes no slot and counts no attempt: it is held here, under the
  lease it was taken with, and sent (leased afresh) when its receiver has room — or, held
  longer than an attempt may take, left to that lease: due again, here or on another replica,
  when it ends.
* On shutdown, :meth:`close` delivers what is due within the time it is given; the rest
  stays in the outbox and goes out after the restart.
* A request's own ``webhook_url`` only reaches global addresses (core/webhooks/destinations.py):
  one that resolves into the gateway's networks is dead-lettered without being sent, and the
  POST connects to the address that was checked.
* Delivered entries are deleted ``keep_delivered_s`` after delivery (checked once a minute),
  so the outbox holds only what is pending, dead, or recent.
* Each POST carries the trade's W3C trace context (``traceparent``, ``tracestate``) as
  headers, never in the signed body. It is kept with the entry in the outbox (written with
  it), so a delivery made after a restart, or by another replica, carries it too; each POST
  has a span id of its own. Entries written before it was kept go without it.

Metrics: ``tradewire_webhook_deliveries_total{outcome=delivered|retry|dead}``,
``tradewire_webhook_outbox_depth{state=pending|dead}`` and the POST latency histogram.
Signing secrets never reach logs, the store or errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
from google.protobuf import json_format

from tradewire.core import protojson
from tradewire.core.errors import invalid
from tradewire.core.retry import RetryPolicy
from tradewire.core.outage import Outage
from tradewire.core.shared import count_failure
from tradewire.core.store.base import OutboxEntry, TradeStore
from tradewire.core.tracing import current_trace, outbound_trace_headers, trace_from_text, trace_to_text
from tradewire.core.webhooks.destinations import (Resolver, check_destination, host_refusal, is_host_name,
                                                  pinned_request, system_resolver)
from tradewire.core.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.webhooks")

EVENT_TYPE = "trade.finished"
USER_AGENT = "tradewire-webhooks/1"
PRUNE_EVERY_S = 60.0
ANSWER_LIMIT = 64 * 1024  # bytes of a receiver's answer read (its status is what counts)
LEASE_SLACK_S = 5.0  # a lease outlasts the attempt's timeout by this (an attempt's overrun, clock skew)
HOLD_LIMIT = 1024  # entries held in memory for receivers at their bound; more are left to their lease
TAKE_PER_PASS = 1024  # entries one look at the outbox takes at most (the event loop waits meanwhile)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret kept in ``path`` (created once, owner-only, 32 random bytes hex).

    The file appears with its whole content or not at all (written aside, then linked into
    place); an empty one — what an older gateway left when it died or ran out of disk space
    while creating it — is replaced, as an empty key would let anyone sign a webhook."""
    try:
        value: str | None = path.read_text().strip()
    except FileNotFoundError:
        value = None
    if value:
        return value.encode()
    if value == "":
        log.warning("the webhook signing secret file is empty: creating a new secret", extra={"path": str(path)})
    path.parent.mkdir(parents=True, exist_ok=True)
    created = secrets.token_hex(32)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(created + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if value is None:
            os.link(aside, path)  # FileExistsError: another process created it meanwhile
        else:
            os.replace(aside, path)
    except FileExistsError:
        return load_or_create_secret(path)
    finally:
        aside.unlink(missing_ok=True)
    log.info("created the webhook signing secret", extra={"path": str(path)})
    return created.encode()


def webhook_body(delivery_id: str, principal_id: str, result: pb.TradeResult) -> bytes:
    """The JSON POSTed for one terminal trade (the TradeResult in proto3 JSON, camelCase)."""
    return orjson.dumps({
        "id": delivery_id,
        "type": EVENT_TYPE,
        "createdAt": json_format.MessageToDict(result.updated_at) if result.HasField("updated_at") else None,
        "principal": principal_id,
        "requestId": result.request_id,
        "status": pb.TradeStatus.Name(result.status),
        "trade": orjson.Fragment(protojson.to_json(result, emit_unpopulated=False)),
    })


def _client(config, keep_alive: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.timeout_s),
        limits=httpx.Limits(max_connections=config.concurrency * 2, max_keepalive_connections=keep_alive),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


async def _discard_answer(response: httpx.Response) -> None:
    """Read at most ANSWER_LIMIT bytes of the receiver's answer and close it: only its status
    counts, and a huge (or endless) body must not fill the gateway's memory."""
    try:
        if not response.is_stream_consumed:  # (consumed: an answer built whole, as in tests)
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= ANSWER_LIMIT:
                    break  # the rest is dropped with the connection
    finally:
        await response.aclose()


def receiver_of(url: str) -> str:
    """The receiver a URL reaches, for the per-receiver bound: its origin (scheme, lowercased
    host, port — the scheme's default when it names none)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, 0)}"


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """The seconds a 429 or 503 answer's ``Retry-After`` asks to wait (a number of seconds or
    an HTTP date), None when it has none (or not one that parses)."""
    value = response.headers.get("retry-after", "").strip()
    if response.status_code not in (429, 503) or not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookDispatcher:
    def __init__(self, store: TradeStore, config, default_secret: bytes | Callable[[], bytes], metrics=None,
                 client: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time,
                 resolver: Resolver = system_resolver, tracer=None) -> None:
        """``config`` is core.config.WebhooksConfig; ``default_secret`` the key (or what gives it,
        called for each delivery) for endpoints without a secret of their own; ``tracer`` the process's
        (core.tracing.Tracing.tracer): each POST is then a client span of the trade's trace."""
        self.store = store
        self.config = config
        self.metrics = metrics
        self.policy = RetryPolicy.from_config(config.retry)
        self._clock = clock
        self._tracer = tracer
        self._endpoints: dict[str, list] = {}
        for endpoint in config.endpoints:
            self._endpoints.setdefault(endpoint.principal, []).append(endpoint)
        self._default_secret = default_secret
        self._client = client or _client(config, keep_alive=config.concurrency)
        # Callers' URLs are sent to a pinned address: a pooled connection, keyed by address,
        # could carry one host name's request over another's TLS session, so none is kept.
        self._unpooled = client or _client(config, keep_alive=0)
        self._resolver = resolver
        self._pruned_at = float("-inf")
        self._slots = asyncio.Semaphore(config.concurrency)
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._deliveries: set[asyncio.Task] = set()
        self._in_flight: Counter[str] = Counter()  # receiver → its deliveries running here
        # receiver → (entry, its lease's end in ns), taken while the receiver was at its bound
        self._held: dict[str, deque[tuple[OutboxEntry, int]]] = {}
        self._held_count = 0
        self._loop_task: asyncio.Task | None = None
        self._closing = False

    # -- what to send --------------------------------------------------------------------

    def check_request_url(self, url: str, field: str = "webhook_url") -> None:
        """INVALID_ARGUMENT when a request's webhook_url may not be used here."""
        if not url:
            return
        if not (self.config.enabled and self.config.request_urls):
            raise invalid(field, "per-request webhooks are disabled on this gateway")
        try:
            parts = urlsplit(url)  # raises ValueError on a malformed IPv6 literal ("https://[zz]/")
        except ValueError:
            raise invalid(field, "is not a valid URL") from None
        try:
            parts.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError:
            raise invalid(field, "has an invalid port") from None
        if parts.scheme not in self.config.allowed_schemes or not parts.hostname:
            allowed = " or ".join(self.config.allowed_schemes)
            raise invalid(field, f"must be an absolute {allowed} URL")
        if ":" not in parts.hostname and not is_host_name(parts.hostname):  # (":": an IPv6 literal)
            raise invalid(field, f"has an invalid host name {parts.hostname!r}")
        refused = None if self.config.allow_private_request_urls else host_refusal(parts.hostname)
        if refused is not None:
            raise invalid(field, f"must reach a public address: {refused}")

    def targets(self, principal_id: str, request_url: str) -> list[str]:
        if not self.config.enabled:
            return []
        urls = [e.url for e in self._endpoints.get(principal_id, ())]
        if request_url and self.config.request_urls and request_url not in urls:
            urls.append(request_url)
        return urls

    def entries(self, principal_id: str, request_url: str, result: pb.TradeResult) -> list[OutboxEntry]:
        """The outbox entries of one terminal trade (to save with it)."""
        urls = self.targets(principal_id, request_url)
        if not urls:
            return []
        trace = trace_to_text(current_trace())  # the trade's (its task runs in the context of its call)
        out = []
        for url in urls:
            delivery_id = uuid.uuid4().hex
            out.append(OutboxEntry(id=delivery_id, principal_id=principal_id, request_id=result.request_id,
                                   url=url, body=webhook_body(delivery_id, principal_id, result), trace=trace))
        return out

    def _configured(self, principal_id: str, url: str) -> bool:
        """An operator's endpoint (trusted), as opposed to a caller's request URL."""
        return any(endpoint.url == url for endpoint in self._endpoints.get(principal_id, ()))

    def _secret(self, principal_id: str, url: str) -> bytes:
        for endpoint in self._endpoints.get(principal_id, ()):
            if endpoint.url == url and endpoint.secret is not None:
                return endpoint.secret.get_secret_value().encode()
        return self._default_secret() if callable(self._default_secret) else self._default_secret

    # -- the worker ----------------------------------------------------------------------

    def notify(self) -> None:
        """New entries were saved: look at the outbox now."""
        self._kick.set()

    async def start(self) -> None:
        self._refresh_depth()
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def _run(self) -> None:
        outage = Outage(log, "webhook outbox (shared store)", "webhooks wait in the outbox")
        idle = False
        while not self._closing:
            self._kick.clear()
            try:
                if idle and self.store.shared:
                    # Other replicas' deliveries change the shared outbox too: the depth this one
                    # reports would otherwise stay what its own last attempt left.
                    self._refresh_depth()
                self._prune_delivered()
                self._dispatch_due()
                wait = self._next_wait()
                outage.answered()
            except Exception:  # a store hiccup must not end deliveries for good
                count_failure(outage, log, "webhook dispatch failed")
                wait = 1.0
            idle = False
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                idle = True

    def _prune_delivered(self) -> None:
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        deleted = self.store.outbox_prune_delivered(int((now - self.config.keep_delivered_s) * 1e9))
        if deleted:
            log.info("deleted %d delivered webhooks older than %.0f s", deleted, self.config.keep_delivered_s)

    def _next_wait(self) -> float:
        # Capped: with a shared store, other replicas' entries fall due (a lease that ended)
        # without kicking this dispatcher.
        cap = self.config.idle_poll_s
        due = self.store.outbox_next_due_ns()
        if due is None:
            return cap
        return min(cap, max(0.0, due / 1e9 - self._clock()))

    def _lease_ns(self, now: float) -> int:
        return int((now + self.config.timeout_s + LEASE_SLACK_S) * 1e9)

    def _dispatch_due(self) -> int:
        """Start what is due, as the global and per-receiver bounds allow; returns how many."""
        if self._closing:
            return 0
        started = self._start_held()
        taken = 0
        # Taken while there are free slots, even past entries whose receiver is at its bound:
        # other receivers' entries may be behind them.
        while taken < TAKE_PER_PASS:
            free = self.config.concurrency - len(self._deliveries)
            if free <= 0:
                break
            now = self._clock()
            # leased as taken: not due again while this attempt runs (here or on another replica
            # sharing the store), and due again if this process dies before it ends
            lease_ns = self._lease_ns(now)
            entries = self.store.outbox_take_due(int(now * 1e9), free, lease_ns)
            taken += len(entries)
            for entry in entries:
                receiver = receiver_of(entry.url)
                if self._in_flight[receiver] < self.config.max_in_flight_per_receiver:
                    self._start(entry, receiver)
                    started += 1
                elif self._held_count < HOLD_LIMIT:
                    self._held.setdefault(receiver, deque()).append((entry, lease_ns))
                    self._held_count += 1
                # else left to its lease: due again when it ends
            if len(entries) < free:
                break
        return started

    def _start_held(self) -> int:
        """Start held entries whose receiver has room now; drop those held too long to lease
        afresh safely (due again in the store when their lease ends)."""
        started = 0
        for receiver in list(self._held):
            held = self._held[receiver]
            while held and len(self._deliveries) < self.config.concurrency:
                entry, lease_ns = held[0]
                now = self._clock()
                # Leased afresh only well within its lease, as no other replica may have taken it then.
                expired = now + LEASE_SLACK_S >= lease_ns / 1e9
                if not expired and self._in_flight[receiver] >= self.config.max_in_flight_per_receiver:
                    break
                held.popleft()
                self._held_count -= 1
                if not expired:
                    self.store.outbox_update(entry.id, "pending", entry.attempts, self._lease_ns(now),
                                             entry.last_error)  # the same entry, leased for this attempt
                    self._start(entry, receiver)
                    started += 1
            if not held:
                del self._held[receiver]
        return started

    def _start(self, entry: OutboxEntry, receiver: str) -> None:
        task = asyncio.create_task(self._deliver(entry), name=f"webhook-{entry.id}")
        self._deliveries.add(task)
        self._in_flight[receiver] += 1
        self._idle.clear()
        task.add_done_callback(lambda done: self._delivered(done, receiver))

    def _delivered(self, task: asyncio.Task, receiver: str) -> None:
        self._deliveries.discard(task)
        self._in_flight[receiver] -= 1
        if self._in_flight[receiver] <= 0:
            del self._in_flight[receiver]
        if not self._deliveries:
            self._idle.set()
        self._kick.set()

    async def _deliver(self, entry: OutboxEntry) -> None:
        attempts = entry.attempts + 1
        started = time.monotonic()
        error, refused, retry_after = "", None, None
        try:
            # The whole attempt, however slowly the receiver answers: httpx's timeout bounds
            # each read, not their sum, and an attempt outliving its lease is taken again.
            async with self._slots, asyncio.timeout(self.config.timeout_s):
                timestamp = int(self._clock())
                headers = {
                    "content-type": "application/json",
                    SIGNATURE_HEADER: sign(self._secret(entry.principal_id, entry.url), entry.body, timestamp),
                    DELIVERY_HEADER: entry.id,
                    EVENT_HEADER: EVENT_TYPE,
                }
                client, request = self._client, None
                if self.config.allow_private_request_urls or self._configured(entry.principal_id, entry.url):
                    request = client.build_request("POST", entry.url, content=entry.body, headers=headers)
                else:  # a caller's URL: to the address checked now, on a connection of its own
                    destination = await check_destination(entry.url, self._resolver)
                    refused, client = destination.refusal, self._unpooled
                    if refused is None:
                        request = pinned_request(client, entry.url, destination.address, entry.body, headers)
                if request is not None:
                    with outbound_trace_headers("POST", urlsplit(entry.url).hostname or "",
                                                trace_from_text(entry.trace, self._tracer)) as trace_headers:
                        request.headers.update(trace_headers)  # (the signature covers the body only)
                        response = await client.send(request, stream=True)
                        await _discard_answer(response)
                    if not 200 <= response.status_code < 300:
                        error = f"HTTP {response.status_code}"
                        retry_after = _retry_after(response, self._clock())
        except (httpx.HTTPError, OSError) as exc:  # (TimeoutError is an OSError)
            timed_out = isinstance(exc, (httpx.TimeoutException, TimeoutError))
            detail = str(exc) or (f"no answer within {self.config.timeout_s:g} s" if timed_out else "no detail")
            error = f"{type(exc).__name__}: {detail}"[:300]
        except asyncio.CancelledError:  # shutting down: the lease brings it back after the restart
            raise
        except Exception as exc:  # noqa: BLE001 - a bad URL, a key that cannot be loaded: never crash the worker
            error = f"{type(exc).__name__}"
        if self.metrics is not None and refused is None:
            self.metrics.webhook_seconds.observe(time.monotonic() - started)
        if refused is not None:  # not sent, and not retried: the caller aimed it into our networks
            self.store.outbox_update(entry.id, "dead", attempts, 0, f"refused: {refused}"[:300])
            outcome = "dead"
            log.warning("webhook refused: its URL reaches a non-public address",
                        extra={"delivery_id": entry.id, "trade_request_id": entry.request_id, "error": refused})
        elif not error:
            self.store.outbox_update(entry.id, "delivered", attempts, 0, "")
            outcome = "delivered"
        elif not self.policy.retries_left(attempts):
            self.store.outbox_update(entry.id, "dead", attempts, 0, error)
            outcome = "dead"
            log.warning("webhook dead-lettered after %d attempts", attempts,
                        extra={"delivery_id": entry.id, "trade_request_id": entry.request_id, "error": error})
        else:
            delay = self.policy.delay(attempts)
            if retry_after is not None:  # the receiver's own ask, within the longest backoff
                delay = max(delay, min(retry_after, self.policy.max_backoff_s))
            next_ns = int((self._clock() + delay) * 1e9)
            self.store.outbox_update(entry.id, "pending", attempts, next_ns, error)
            outcome = "retry"
            log.info("webhook attempt %d failed; retrying", attempts,
                     extra={"delivery_id": entry.id, "trade_request_id": entry.request_id, "error": error})
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()
        self._refresh_depth()

    def _refresh_depth(self) -> None:
        if self.metrics is None:
            return
        counts = self.store.outbox_counts()
        for state in ("pending", "dead"):
            self.metrics.webhook_outbox_depth.labels(state).set(counts.get(state, 0))

    async def flush(self, timeout: float) -> bool:
        """Deliver what is due now (and retries that fall due meanwhile); True when nothing
        due is left. Entries waiting for a later retry stay in the outbox."""
        deadline = time.monotonic() + timeout
        while True:
            self._dispatch_due()
            if not self._deliveries:
                due = self.store.outbox_next_due_ns()
                if due is None or due / 1e9 > self._clock():
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                async with asyncio.timeout(min(left, 0.1) if not self._deliveries else left):
                    await self._idle.wait()
            except TimeoutError:
                pass

    async def close(self, flush_timeout: float = 0.0) -> None:
        if flush_timeout > 0:
            await self.flush(flush_timeout)
        self._closing = True
        self._held.clear()  # their leases end, and they are due again (after a restart, or elsewhere)
        self._held_count = 0
        self._kick.set()
        tasks = [t for t in (self._loop_task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()
        await self._unpooled.aclose()
