"""Pipeline steps that need no gateway: the draining and deadline gates and the batch's own rules."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from support.trace_context import TRACE_ID as TRACE
from tradewire.core.context import CallContext, Principal, Protocol
from tradewire.core.errors import Code, TradewireError
from tradewire.core.outage import Tally
from tradewire.core.pipeline import MAX_BATCH_ITEMS, Call, Pipeline
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


def _pipeline() -> Pipeline:
    pipeline = Pipeline.__new__(Pipeline)  # these steps use no collaborator
    pipeline.is_draining = lambda: False
    return pipeline


def _call(method: str, request=None) -> Call:
    return Call(CallContext(protocol=Protocol.GRPC, method=method, peer="ipv4:127.0.0.1:1", headers={}), request)


def test_while_draining_every_call_but_health_check_is_refused_first() -> None:
    pipeline = _pipeline()
    pipeline.refuse_while_draining(_call("ExecuteTrade"))  # not draining: nothing happens
    pipeline.is_draining = lambda: True
    with pytest.raises(TradewireError) as refused:
        pipeline.refuse_while_draining(_call("ExecuteTrade"))
    assert refused.value.reason == "SHUTTING_DOWN" and refused.value.retry_after_s
    pipeline.refuse_while_draining(_call("HealthCheck"))


def test_a_batch_is_validated_for_its_item_count_only() -> None:
    pipeline = _pipeline()
    bad_item = pb.TradeRequest(request_id="", amount="-1")  # each item is the batch's own business
    pipeline.validate(_call("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=[bad_item])))
    for trades in ([], [bad_item] * (MAX_BATCH_ITEMS + 1)):
        with pytest.raises(TradewireError) as refused:
            pipeline.validate(_call("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=trades)))
        assert refused.value.reason == "VALIDATION_FAILED"
        assert [v.field for v in refused.value.field_violations] == ["trades"]


def test_a_long_call_whose_key_store_does_not_answer_goes_on_until_the_next_check() -> None:
    """A stream's or session's re-check of its credential, the shared key store away: not a
    refusal (its key passed when the call began); the next check asks again."""
    class Unanswering:
        def attempt(self, headers):
            raise ConnectionError("the shared store did not answer")

    pipeline = _pipeline()
    pipeline.authenticator, pipeline.store_outages = Unanswering(), (ConnectionError,)
    ctx = _call("StreamExecutionStatus").ctx
    ctx.principal = principal = Principal("alice", frozenset({"read"}), "api_key", "tw_abcdefgh")
    pipeline.still_authenticated(ctx)
    assert ctx.principal is principal
    pipeline.store_outages = ()  # anything else is not an outage: it still ends the call
    with pytest.raises(ConnectionError):
        pipeline.still_authenticated(ctx)



def test_calls_the_shared_store_does_not_answer_are_one_warning_line_not_one_each(caplog) -> None:
    pipeline = _pipeline()
    pipeline.store_outages, pipeline._unanswered = (ConnectionError,), Tally(logging.getLogger("tradewire.pipeline"))
    with caplog.at_level(logging.WARNING, logger="tradewire.pipeline"):
        refusals = [pipeline.caller_error(_call("GetPositions").ctx, ConnectionError("refused")) for _ in range(120)]
    assert {(r.code, r.reason) for r in refusals} == {(Code.UNAVAILABLE, "STORE_UNAVAILABLE")}
    lines = [r.getMessage() for r in caplog.records if r.name == "tradewire.pipeline"]
    assert len(lines) == 1 and "the shared store did not answer" in lines[0], lines


def test_a_tally_says_how_many_failed_since_its_last_line() -> None:
    now, said = [0.0], []

    class Logger:
        def warning(self, message, *args):
            said.append(message % args)

    tally = Tally(Logger(), every_s=5.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 5.5, 6.0):
        now[0] = t
        tally.failed("store away")
    assert said == ["store away (1 time(s) since the last such line)", "store away (3 time(s) since the last such line)"]


@pytest.mark.parametrize("traceparent, trace_id", [
    (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
    (f"01-{TRACE}-00f067aa0ba902b7-00", TRACE),  # a later version: read as this one
    (f"ff-{TRACE}-00f067aa0ba902b7-01", None),  # W3C: version ff is invalid
    (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id
    (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
    (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", None),  # lower-case hex only
    (f" \t00-{TRACE}-00f067aa0ba902b7-01 ", TRACE),  # blanks around it
    (f"01-{TRACE}-00f067aa0ba902b7-01-later-fields", TRACE),  # a later version may add fields
    (f"00-{TRACE}-00f067aa0ba902b7-01-more", None),  # version 00 may not
    (f"01-{TRACE}-00f067aa0ba902b7-01-{'x' * 500}", None),  # past 512 characters
])
def test_only_a_valid_traceparent_gives_the_call_its_trace_and_correlation_id(traceparent, trace_id) -> None:
    call = _call("GetMarket")
    call.ctx.headers["traceparent"] = traceparent
    _pipeline().establish_context(call)
    assert call.ctx.correlation_id == (trace_id or call.ctx.request_id)


def test_a_call_whose_deadline_has_passed_is_not_started() -> None:
    call = _call("ExecuteTrade")
    Pipeline.refuse_past_deadline(call)  # no deadline: it runs
    call.ctx.deadline = time.monotonic() + 5
    Pipeline.refuse_past_deadline(call)  # one still ahead: it runs
    call.ctx.deadline = time.monotonic() + 0.018
    Pipeline.refuse_past_deadline(call)  # a low-latency caller's few ms: it runs too
    call.ctx.deadline = time.monotonic() - 0.1
    with pytest.raises(TradewireError) as refused:
        Pipeline.refuse_past_deadline(call)
    assert (refused.value.code, refused.value.reason) == (Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")


@pytest.mark.parametrize("traceparent", [
    f"00-{TRACE}-00f067aa0ba902b7-01", f" 00-{TRACE}-00f067aa0ba902b7-01\t", f"00-{TRACE}-00f067aa0ba902b7-01-x",
    f"02-{TRACE}-00f067aa0ba902b7-01-x", f"02-{TRACE}-00f067aa0ba902b7-01x", f"ff-{TRACE}-00f067aa0ba902b7-01",
    f"00-{TRACE}-00f067aa0ba902b7", f"00-{TRACE}-00f067aa0ba902b7-01 x", f"0-{TRACE}-00f067aa0ba902b7-01",
    f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01", f"01-{TRACE}-00f067aa0ba902b7-01-{'x' * 490}",
])
def test_the_correlation_id_names_the_trace_opentelemetry_continues(traceparent) -> None:
    # With tracing on, the call's span continues what OpenTelemetry's propagator accepts: the
    # correlation id must be that trace's id exactly then, and the call's own id otherwise.
    continued = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    expected = format(continued.get_span_context().trace_id, "032x") if continued.get_span_context().is_valid else None
    call = _call("GetMarket")
    call.ctx.headers["traceparent"] = traceparent
    _pipeline().establish_context(call)
    assert call.ctx.correlation_id == (expected or call.ctx.request_id)
