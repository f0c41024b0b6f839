"""The admission pipeline every call goes through, whatever protocol carried it.

DESIGN.md §2 in code: the context is established first, then :data:`Pipeline.STEPS` is the
visible list; each step has one job.
The trade-specific last steps — de-duplicate and route — are TradeRunner's, and the record
step runs when the call ends (:meth:`Pipeline.call`), whatever the outcome. A transport that
reads and parses a request body itself (HTTP/JSON, Connect, gRPC-Web, native gRPC) runs the
first steps — context, draining, authentication — from the headers before reading it
(:meth:`Pipeline.authenticate_first`); :meth:`Pipeline.call` then goes on from there. A request
the transport could not read is refused in the same order: after the method's scope and, if it
did not decode, after the rate limit, which it counts against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from tradewire.core.audit.events import looks_like_credential
from tradewire.core.auth.authenticator import Authenticator
from tradewire.core.auth.permissions import METHOD_ACCESS, Access, authorize
from tradewire.core.context import CallContext
from tradewire.core.errors import Code, TradewireError, deadline_exceeded, internal_error, invalid, store_unavailable
from tradewire.core.market import Market
from tradewire.core.order import Order, mode_name
from tradewire.core.outage import Tally
from tradewire.core.ratelimit import RateDecision, RateLimits
from tradewire.core.logs import call_fields
from tradewire.core.recorder import Recorder
from tradewire.core.tracing import Tracing
from tradewire.core.validation import check_cancel, check_mint_filter, check_trade_lookup, require_valid, validate_trade
from tradewire.v1 import service_pb2, trade_pb2

T = TypeVar("T")
_BEARER_CHALLENGE = 'Bearer realm="tradewire"'
log = logging.getLogger("tradewire.pipeline")

# W3C trace context, read as OpenTelemetry's propagator reads it (it continues the trace when
# tracing is on, and the correlation id must name that trace): blanks around it allowed, a later
# version may add fields, version 00 may not; version ff, an all-zero trace id and an all-zero
# parent id are invalid (every caller sending zeros would otherwise share one correlation id).
_TRACEPARENT = re.compile(r"^[ \t]*(?!ff)([0-9a-f]{2})-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
                          r"(?:(-.*)|[ \t]*)$")
_TRACEPARENT_MAX_CHARS = 512
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")  # fullmatch: "$" would let a trailing newline in
_TRADE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # TradeRequest.request_id's rule
# ExecuteTradeBatchRequest.trades: repeated.max_items in service.proto (a server may set less).
MAX_BATCH_ITEMS = 100
# A transport's refusals of a request as sent, before the pipeline has it: refused only once the
# caller is known to have the method's scope (README "Errors": the order of refusals) ...
_REQUEST_REFUSALS = frozenset({"MALFORMED_REQUEST", "VALIDATION_FAILED", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"})
# ... and, when it did not decode (its body, query, path or a header), once the caller's rate limit
# has counted it, as an invalid request is; a body too large or of the wrong type is refused before it.
_UNDECODED = frozenset({"MALFORMED_REQUEST", "VALIDATION_FAILED"})


@dataclass
class Call:
    """One call as it moves through the steps."""

    ctx: CallContext
    request: object
    mode: int = 0  # the strictest trading mode the request asks for
    orders: list[Order] = field(default_factory=list)


def _trade_requests(request: object) -> list[trade_pb2.TradeRequest]:
    if isinstance(request, trade_pb2.TradeRequest):
        return [request]
    if isinstance(request, service_pb2.ExecuteTradeBatchRequest):
        return list(request.trades)
    return []


class Pipeline:
    def __init__(self, authenticator: Authenticator, limits: RateLimits, market: Market,
                 recorder: Recorder, tracing: Tracing) -> None:
        self.authenticator = authenticator
        self.limits = limits
        self.market = market
        self.recorder = recorder
        self.tracing = tracing
        self.STEPS = (self.refuse_while_draining, self.refuse_past_deadline, self.authenticate, self.authorize,
                      self.rate_limit, self.validate)
        # A call authenticate_first admitted: draining and the deadline are checked again (its body took a while).
        self._after_authentication = (self.refuse_while_draining, self.refuse_past_deadline, self.authorize,
                                      self.rate_limit, self.validate)
        # Set by TradeService to its own draining flag (begin_drain), so a shutting-down
        # gateway says UNAVAILABLE before anything else — not UNAUTHENTICATED to a bad key.
        self.is_draining: Callable[[], bool] = lambda: False
        # Errors that mean the shared store did not answer (set with a Redis backend): the
        # caller gets UNAVAILABLE STORE_UNAVAILABLE, which it may retry, not INTERNAL.
        self.store_outages: tuple[type[Exception], ...] = ()
        self._unanswered = Tally(log)  # calls the shared store did not answer: a line every 5 s, not per call

    @asynccontextmanager
    async def call(self, ctx: CallContext, request: object) -> AsyncIterator[Call]:
        """Run the admission steps, yield the admitted call, then record how it ended.

        Errors leave as TradewireError only: anything unexpected is logged with its
        traceback here and reaches the caller as a bare INTERNAL. A context that
        :meth:`authenticate_first` admitted keeps its ids, span and principal.
        """
        call = Call(ctx, request)
        _note_trade_request_id(call)
        code, reason = Code.OK, ""
        early = ctx.authenticated
        with contextlib.nullcontext() if early else self.tracing.call_span(ctx):
            if not early:
                self.establish_context(call)  # first: everything after carries the call's ids
            ctx.recorded = True
            fields = call_fields.set({"request_id": ctx.request_id, "correlation_id": ctx.correlation_id,
                                      "trace_id": ctx.trace_id})
            self.recorder.call_started(ctx)
            try:
                for step in self._after_authentication if early else self.STEPS:
                    with self.tracing.step_span(step.__name__):
                        step(call)
                yield call
            except TradewireError as exc:
                code, reason = exc.code, exc.reason
                ctx.response_headers.update(exc.headers)
                raise
            except (asyncio.CancelledError, GeneratorExit):  # the caller went away, or its deadline came
                code, reason = ((Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED") if ctx.ended_by_deadline()
                                else (Code.CANCELLED, ""))
                raise
            except Exception as exc:
                error = self.caller_error(ctx, exc)
                code, reason = error.code, error.reason
                raise error from None
            finally:
                self.tracing.set_outcome(ctx, code, reason)
                self.recorder.call_finished(ctx, code, reason)
                with contextlib.suppress(ValueError):  # a stream may be closed from another context
                    call_fields.reset(fields)

    @contextlib.contextmanager
    def authenticate_first(self, ctx: CallContext) -> Iterator[None]:
        """For a transport that reads the request itself (a body to parse): the call's first
        steps from its headers alone — its context, the draining refusal, authentication — so a
        caller without valid credentials is refused before anything it sent is read.

        The block is the rest of the call: reading the request, then :meth:`call`, which goes
        on from here (same ids, principal and span; no second authentication). A refusal here
        is recorded as :meth:`call` records one and raised before the block; a TradewireError
        raised in the block before :meth:`call` took the call (its body did not decode) is
        recorded as a refused call — after the steps that come before it (:meth:`_in_order`)."""
        call = Call(ctx, None)
        with self.tracing.call_span(ctx):
            self.establish_context(call)
            fields = call_fields.set({"request_id": ctx.request_id, "correlation_id": ctx.correlation_id,
                                      "trace_id": ctx.trace_id})
            try:
                try:
                    for step in (self.refuse_while_draining, self.authenticate):
                        with self.tracing.step_span(step.__name__):
                            step(call)
                except TradewireError as exc:
                    ctx.response_headers.update(exc.headers)
                    self._refused_early(ctx, exc)
                    raise
                except Exception as exc:
                    error = self.caller_error(ctx, exc)
                    self._refused_early(ctx, error)
                    raise error from None
                ctx.authenticated = True
                try:
                    yield
                except TradewireError as exc:
                    refusal = self._in_order(call, exc)
                    self._refused_early(ctx, refusal)  # (nothing when the call itself recorded its end)
                    if refusal is exc:
                        raise
                    raise refusal from None
            finally:
                with contextlib.suppress(ValueError):
                    call_fields.reset(fields)

    def _in_order(self, call: Call, error: TradewireError) -> TradewireError:
        """The refusal of a call whose transport refused its request (``error``) before
        :meth:`call` had it, in the order every call is refused in: the method's scope first (a
        key without it is PERMISSION_DENIED whatever it sent), then, for a request that did not
        decode, the caller's rate limit, which it counts against (its state goes back in the
        headers; an empty bucket is the refusal). Anything else is as it was."""
        if call.ctx.recorded or error.reason not in _REQUEST_REFUSALS:
            return error
        # (without a request: the method's scope, and the bucket of a call in no trade mode)
        steps = (self.authorize, self.rate_limit) if error.reason in _UNDECODED else (self.authorize,)
        try:
            for step in steps:
                with self.tracing.step_span(step.__name__):
                    step(call)
        except TradewireError as earlier:
            call.ctx.response_headers.update(earlier.headers)
            return earlier
        except Exception as exc:  # (the shared store did not answer)
            return self.caller_error(call.ctx, exc)
        return error

    def caller_error(self, ctx: CallContext, exc: Exception) -> TradewireError:
        """What the caller gets for an exception that is not a TradewireError: UNAVAILABLE
        STORE_UNAVAILABLE when the shared store did not answer (retryable), else a bare
        INTERNAL (its traceback logged here, never sent)."""
        if isinstance(exc, self.store_outages):
            self._unanswered.failed("%s: the shared store did not answer: %s: %s", ctx.method,
                                    exc.__class__.__name__, exc)
            return store_unavailable()
        log.error("unexpected error in %s", ctx.method, exc_info=exc)
        return internal_error()

    def _refused_early(self, ctx: CallContext, error: TradewireError) -> None:
        if not ctx.recorded:
            self.tracing.set_outcome(ctx, error.code, error.reason)
            self.record_refused(ctx, error)

    def record_refused(self, ctx: CallContext, error: TradewireError) -> None:
        """A call its adapter refused before admission (its message did not decode, its body
        was too large): it gets ids, and is counted, audited and logged like any other call."""
        if ctx.recorded:  # admitted: the call itself records its end
            return
        ctx.recorded = True
        if not ctx.request_id:  # (authenticate_first gave it its ids already)
            self.establish_context(Call(ctx, None))
        self.recorder.call_started(ctx)
        self.recorder.call_finished(ctx, error.code, error.reason)

    # -- the steps -----------------------------------------------------------------------

    def establish_context(self, call: Call) -> None:
        """Request id, correlation id (x-correlation-id, else the W3C trace id), echoed back."""
        ctx = call.ctx
        ctx.request_id = uuid.uuid4().hex
        if not ctx.trace_id:  # the call span, when tracing, has set it already
            ctx.trace_id = _trace_id(ctx.headers.get("traceparent", ""))
        given = ctx.headers.get("x-correlation-id", "")
        # One that looks like a credential is replaced too: it is logged, audited and echoed.
        usable = _CORRELATION_ID.fullmatch(given) and not looks_like_credential(given)
        ctx.correlation_id = given if usable else (ctx.trace_id or ctx.request_id)
        ctx.response_headers["x-correlation-id"] = ctx.correlation_id
        ctx.response_headers["x-request-id"] = ctx.request_id

    def refuse_while_draining(self, call: Call) -> None:
        """Right after the context: no new call but HealthCheck while shutting down."""
        if call.ctx.method != "HealthCheck" and self.is_draining():
            raise shutting_down()

    @staticmethod
    def refuse_past_deadline(call: Call) -> None:
        """No call starts once its deadline has passed (e.g. while its body was uploaded): one
        that does no waiting would otherwise run to its end, answered as if in time."""
        if call.ctx.past_deadline():
            raise deadline_exceeded()

    def authenticate(self, call: Call) -> None:
        """Principal from the credentials; every attempt recorded; failures limited per peer."""
        ctx = call.ctx
        if ctx.authenticated:  # by authenticate_first, from the headers before the body was read
            return
        public = METHOD_ACCESS.get(ctx.method) is Access.PUBLIC
        if public and not ("authorization" in ctx.headers or "x-api-key" in ctx.headers):
            return
        host = peer_host(ctx.peer)
        self._shared_check(call, lambda: self._counting_refusals(lambda: self.limits.check_peer(host)))
        outcome = self._shared_check(call, lambda: self.authenticator.attempt(ctx.headers))
        if outcome is None:  # HealthCheck, the shared key store not answering: answered as to anyone
            return
        self.recorder.auth_attempt(ctx, outcome)
        if outcome.ok:
            ctx.principal = outcome.principal
            return
        self._shared_check(call, lambda: self.limits.record_auth_failure(host))
        if public:  # answered as to anyone, saying why the credentials were not taken
            ctx.credentials_refused = outcome.error.reason
            return
        if outcome.error.code is Code.UNAUTHENTICATED:  # HTTP's 401 must say how to authenticate
            ctx.response_headers["www-authenticate"] = _BEARER_CHALLENGE
        raise outcome.error

    def still_authenticated(self, ctx: CallContext) -> None:
        """A long-lived call's credential, checked again (a session's next trade, a stream's next
        events): a key revoked or a token expired since the call began raises its refusal, so the
        call ends UNAUTHENTICATED. A refusal is recorded as an authentication attempt; a pass is
        not (the call's own attempt was). The principal is refreshed (its scopes may have changed).
        A shared key store that does not answer leaves the call as it is until the next check."""
        try:
            outcome = self.authenticator.attempt(ctx.headers)
        except self.store_outages:
            return
        if outcome.ok and outcome.principal.id == ctx.principal.id:
            ctx.principal = outcome.principal
            return
        self.recorder.auth_attempt(ctx, outcome)
        raise outcome.error or _credential_changed()

    def authorize(self, call: Call) -> None:
        """The method's scope; for trades the mode's (any LIVE item makes a batch LIVE)."""
        modes = {r.mode for r in _trade_requests(call.request)}
        call.mode = trade_pb2.TRADING_MODE_LIVE if trade_pb2.TRADING_MODE_LIVE in modes else (
            trade_pb2.TRADING_MODE_PAPER if modes else 0)
        authorize(call.ctx.principal, call.ctx.method, mode_name(call.mode))

    def rate_limit(self, call: Call) -> None:
        """Token buckets per principal (LIVE and streams stricter); state returned in headers."""
        principal = call.ctx.principal
        if principal is None:
            return
        # A batch's own token is a call's: each of its trades takes its mode's as it runs. (A LIVE
        # batch of N trades took N + 1 LIVE tokens: with live_burst 2, a batch of 2 ran one.)
        mode = None if call.ctx.method == "ExecuteTradeBatch" else mode_name(call.mode)
        decision = self._shared_check(call, lambda: self._counting_refusals(
            lambda: self.limits.check_call(principal.id, call.ctx.method, mode)))
        if decision is not None:
            call.ctx.response_headers.update(decision.headers())

    def _shared_check(self, call: Call, check: Callable[[], T]) -> T | None:
        """``check()``; for HealthCheck a shared store that does not answer skips it (None), so the
        health answer can say the store is down instead of failing with it."""
        try:
            return check()
        except self.store_outages:
            if call.ctx.method != "HealthCheck":
                raise
            return None

    def limit_trade(self, principal_id: str, mode: int, headers: dict[str, str] | None = None,
                    method: str = "ExecuteTrade") -> RateDecision:
        """One part of a call that carries several (a batch item, a session's trade or cancel)
        takes what a ``method`` call (of ``mode``) takes; raises RATE_LIMITED when a bucket is
        empty. ``headers`` (the call's response headers, when not sent yet) get the bucket's
        state after it."""
        try:
            decision = self._counting_refusals(
                lambda: self.limits.check_call(principal_id, method, mode_name(mode)))
        except TradewireError as exc:
            if headers is not None:  # (the bucket's state; retry-after only on a refused call)
                headers.update((k, v) for k, v in exc.headers.items() if k != "retry-after")
            raise
        if headers is not None:
            headers.update(decision.headers())
        return decision

    def _counting_refusals(self, check: Callable[[], T]) -> T:
        """``check()``; a RATE_LIMITED refusal is counted per bucket (tradewire_rate_limited_total)."""
        try:
            return check()
        except TradewireError as exc:
            if exc.reason == "RATE_LIMITED":
                self.recorder.rate_limited(exc.metadata.get("subject", "").split(":", 1)[0])
            raise

    def validate(self, call: Call) -> None:
        """The contract's rules; trade requests also become Orders (Solana checks)."""
        request = call.request
        if isinstance(request, trade_pb2.TradeRequest):
            call.orders = [validate_trade(request, call.ctx.principal.id, self.market)]
        elif isinstance(request, service_pb2.ExecuteTradeBatchRequest):
            # Only the batch's own rule (its item count): the batch validates each item on its
            # own, so one bad item is that item's error and does not sink the others.
            count = len(request.trades)
            if count < 1:
                raise invalid("trades", "at least one trade is required")
            if count > MAX_BATCH_ITEMS:
                raise invalid("trades", f"at most {MAX_BATCH_ITEMS} trades per batch")
        elif request is not None:
            require_valid(request)
            if isinstance(request, service_pb2.CancelTradeRequest):
                check_cancel(request)
            elif isinstance(request, (service_pb2.GetTradeRequest, service_pb2.StreamExecutionStatusRequest)):
                check_trade_lookup(request)
            elif isinstance(request, (service_pb2.GetTradeHistoryRequest, service_pb2.GetPositionsRequest)):
                check_mint_filter(request)


def _note_trade_request_id(call: Call) -> None:
    """The trade the call is about (ExecuteTrade, GetTrade, CancelTrade, a status stream), for its
    access line and audit row — also when the call is refused, so a refused trade can be found
    by its id."""
    call.ctx.trade_request_id = recordable_trade_id(getattr(call.request, "request_id", ""))


def recordable_trade_id(request_id: object) -> str:
    """A client's trade id as logs and audit rows may carry it: one of the contract's pattern that
    does not look like a credential (those are refused, and must not reach a log), else ""."""
    if request_id.__class__ is str and _TRADE_REQUEST_ID.fullmatch(request_id):
        if not looks_like_credential(request_id):
            return request_id
    return ""


def _credential_changed() -> TradewireError:
    # (a key's owner does not change; this would take a key database edited by hand)
    return TradewireError("AUTH_INVALID", "the credential now names another account: call again")


class CredentialWatch:
    """Checks a long-lived call's credential again as the call goes on — at most every
    ``every_s`` for a stream's events (thousands of followers must not each verify a token per
    event), or on demand for each trade a session sends (each is an authorization)."""

    def __init__(self, pipeline: Pipeline, ctx: CallContext, every_s: float = 1.0) -> None:
        self.pipeline, self.ctx, self.every_s = pipeline, ctx, every_s
        self._next_check = asyncio.get_running_loop().time() + every_s

    def check(self, now: bool = False) -> None:
        """Raises the refusal when the credential no longer authenticates."""
        clock = asyncio.get_running_loop().time()
        if now or clock >= self._next_check:
            self._next_check = clock + self.every_s
            self.pipeline.still_authenticated(self.ctx)


def shutting_down() -> TradewireError:
    return TradewireError("SHUTTING_DOWN", "the gateway is shutting down and accepts no new calls; "
                                           "retry against another instance or once it is back", retry_after_s=1.0)


def _trace_id(traceparent: str) -> str:
    """The trace id of a valid ``traceparent``, else ""."""
    match = _TRACEPARENT.match(traceparent) if len(traceparent) <= _TRACEPARENT_MAX_CHARS else None
    if match is None or (match.group(1) == "00" and match.group(3)):
        return ""
    return match.group(2)


def peer_host(peer: str) -> str:
    """The address part of "host:port" / "[v6]:port" / "ipv4:host:port" (grpc style)."""
    peer = peer.removeprefix("ipv4:").removeprefix("ipv6:")
    host, sep, port = peer.rpartition(":")
    return (host if sep and port.isdigit() else peer).strip("[]")
