"""The executor metrics: tradewire_executor_failures_total counts what the executor (or its
upstreams) brought about — not a caller's cancellation, nor its call's or its order's deadline;
tradewire_executor_duration_seconds has buckets for a LIVE trade's minute, and
tradewire_request_duration_seconds for the call that waited for it and for a stream's life."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code
from tradewire.core.config import MarketConfig, TracingConfig
from tradewire.core.market import Market
from tradewire.core.metrics import Metrics
from tradewire.core.recorder import Recorder
from tradewire.core.tracing import Tracing
from tradewire.core.validation import validate_trade
from tradewire.v1 import trade_pb2 as pb

MARKET = Market(MarketConfig())


def _order(request_id: str, deadline_ns: int | None = None):
    request = pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, amount="0.01", slippage_bps=100,
                              input_mint="So11111111111111111111111111111111111111112",
                              output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
    if deadline_ns is not None:
        request.deadline.FromNanoseconds(deadline_ns)
    return validate_trade(request, "alice", MARKET)


def _end(recorder: Recorder, order, stage: int, reason: str, at_ns: int, signature: str = "") -> None:
    ts = Timestamp()
    ts.FromNanoseconds(at_ns)
    result = pb.TradeResult(request_id=order.request_id, status=stage, signature=signature,
                            error=pb.TradeError(reason=reason, message="..."))
    recorder.transition(order, pb.ExecutionStatus(request_id=order.request_id, sequence=9, stage=stage,
                                                  timestamp=ts, terminal=True, result=result), at_ns)


def _failures(metrics: Metrics) -> dict[str, float]:
    return {s.labels["reason"]: s.value for metric in metrics.executor_failures.collect() for s in metric.samples
            if s.name.endswith("_total")}


def test_only_what_the_executor_caused_is_an_executor_failure() -> None:
    metrics = Metrics()
    recorder = Recorder(metrics, None, Tracing(TracingConfig()), access_log=False, transition_log=False,
                        audit_enabled=False)
    now = time.time_ns()
    past = now - 1_000_000_000
    # the caller's doing
    _end(recorder, _order("c-1"), pb.TRADE_STATUS_CANCELLED, "TRADE_CANCELLED", now)  # CancelTrade
    _end(recorder, _order("c-2"), pb.TRADE_STATUS_CANCELLED, "CANCELLED", now)  # the caller went away
    _end(recorder, _order("c-3"), pb.TRADE_STATUS_EXPIRED, "DEADLINE_EXCEEDED", now)  # the call's deadline
    _end(recorder, _order("c-4", deadline_ns=past), pb.TRADE_STATUS_EXPIRED, "TRADE_EXPIRED", now)  # the order's
    assert _failures(metrics) == {}
    # the executor's (or its upstreams')
    _end(recorder, _order("e-1"), pb.TRADE_STATUS_FAILED, "SLIPPAGE_EXCEEDED", now)
    _end(recorder, _order("e-2"), pb.TRADE_STATUS_REJECTED, "UPSTREAM_UNAVAILABLE", now)
    _end(recorder, _order("e-3"), pb.TRADE_STATUS_REJECTED, "INSUFFICIENT_FUNDS", now)
    _end(recorder, _order("e-4"), pb.TRADE_STATUS_EXPIRED, "TRADE_EXPIRED", now)  # no deadline of the caller's
    # a blockhash that ran out after the send, whatever the order's deadline
    _end(recorder, _order("e-5", deadline_ns=past), pb.TRADE_STATUS_EXPIRED, "TRADE_EXPIRED", now, signature="5sig")
    _end(recorder, _order("e-6", deadline_ns=now + 60_000_000_000), pb.TRADE_STATUS_EXPIRED, "TRADE_EXPIRED", now)
    _end(recorder, _order("ok"), pb.TRADE_STATUS_FILLED, "", now)
    assert _failures(metrics) == {"SLIPPAGE_EXCEEDED": 1, "UPSTREAM_UNAVAILABLE": 1, "INSUFFICIENT_FUNDS": 1,
                                  "TRADE_EXPIRED": 3}
    # every end is still a trade by its final status
    statuses = {s.labels["status"]: s.value for metric in metrics.trades.collect() for s in metric.samples
                if s.name.endswith("_total")}
    assert statuses == {"TRADE_STATUS_CANCELLED": 2, "TRADE_STATUS_EXPIRED": 5, "TRADE_STATUS_FAILED": 1,
                        "TRADE_STATUS_REJECTED": 2, "TRADE_STATUS_FILLED": 1}


def test_the_help_text_says_what_is_counted() -> None:
    help_text = Metrics().executor_failures._documentation
    assert "because of their executor or its upstreams" in help_text and "cancellation or deadline is not" in help_text


def test_a_trade_of_a_minute_lands_in_a_bucket_of_its_own() -> None:
    metrics = Metrics()
    recorder = Recorder(metrics, None, Tracing(TracingConfig()), access_log=False, transition_log=False,
                        audit_enabled=False)
    order, routed = _order("slow-1"), time.time_ns()
    ts = Timestamp()
    ts.FromNanoseconds(routed)
    recorder.transition(order, pb.ExecutionStatus(request_id=order.request_id, sequence=3,
                                                  stage=pb.TRADE_STATUS_ROUTED, timestamp=ts), routed)
    _end(recorder, order, pb.TRADE_STATUS_FILLED, "", routed + 45 * 1_000_000_000)  # confirmed 45 s later
    buckets = {s.labels["le"]: s.value for metric in metrics.executor_seconds.collect() for s in metric.samples
               if s.name.endswith("_bucket")}
    assert (buckets["30.0"], buckets["60.0"], buckets["+Inf"]) == (0, 1, 1)


def test_a_trade_left_to_end_elsewhere_keeps_no_timing_here() -> None:
    """Taken over by another replica: its routing time is dropped, not kept until an end that
    this replica never sees (nor counted should the same trade come back here)."""
    metrics = Metrics()
    recorder = Recorder(metrics, None, Tracing(TracingConfig(enabled=True)), access_log=False,
                        transition_log=False, audit_enabled=False)
    order, routed = _order("moved-1"), time.time_ns()
    ts = Timestamp()
    ts.FromNanoseconds(routed)
    recorder.transition(order, pb.ExecutionStatus(request_id=order.request_id, sequence=3,
                                                  stage=pb.TRADE_STATUS_ROUTED, timestamp=ts), routed)
    recorder.forget(order)
    assert (recorder._routed_ns, recorder._last_transition_ns) == ({}, {})
    _end(recorder, order, pb.TRADE_STATUS_FILLED, "", routed + 1_000_000_000)
    counts = [s.value for metric in metrics.executor_seconds.collect() for s in metric.samples
              if s.name.endswith("_count")]
    assert counts in ([], [0.0])


def test_a_call_of_a_minute_and_a_stream_of_an_hour_land_in_buckets_of_their_own() -> None:
    metrics = Metrics()
    recorder = Recorder(metrics, None, Tracing(TracingConfig()), access_log=False, transition_log=False,
                        audit_enabled=False)
    for method, lasted_s in (("ExecuteTrade", 45), ("StreamExecutionStatus", 1800)):
        ctx = CallContext(protocol=Protocol.GRPC, method=method, peer="ipv4:127.0.0.1:1", headers={})
        ctx.started = time.monotonic() - lasted_s
        metrics.in_flight.labels("grpc").inc()
        recorder.call_finished(ctx, Code.OK)
    buckets = {(s.labels["method"], s.labels["le"]): s.value for metric in metrics.request_seconds.collect()
               for s in metric.samples if s.name.endswith("_bucket")}
    assert (buckets["ExecuteTrade", "30.0"], buckets["ExecuteTrade", "60.0"]) == (0, 1)
    assert (buckets["StreamExecutionStatus", "900.0"], buckets["StreamExecutionStatus", "3600.0"]) == (0, 1)
