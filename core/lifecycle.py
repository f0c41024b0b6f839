"""The trade state machine, declared once for both modes (DESIGN.md §3).

Each stage has its place in the progress bar and a human message; a transition is legal
only forward along :data:`PATH`, or to a terminal failure from any non-terminal stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from tradewire.core.errors import Code
from tradewire.v1 import trade_pb2 as pb

S = pb.TradeStatus


@dataclass(frozen=True)
class Stage:
    status: int
    percent: int
    message: str
    terminal: bool = False


STAGES: dict[int, Stage] = {
    s.status: s
    for s in (
        Stage(pb.TRADE_STATUS_RECEIVED, 5, "request received"),
        Stage(pb.TRADE_STATUS_VALIDATED, 10, "request validated"),
        Stage(pb.TRADE_STATUS_ROUTED, 20, "routed to executor"),
        Stage(pb.TRADE_STATUS_QUOTED, 35, "quote obtained"),
        Stage(pb.TRADE_STATUS_SIGNED, 50, "transaction signed"),
        Stage(pb.TRADE_STATUS_SIMULATED, 60, "transaction simulated"),
        Stage(pb.TRADE_STATUS_SUBMITTED, 75, "transaction submitted"),
        Stage(pb.TRADE_STATUS_CONFIRMED, 90, "transaction confirmed"),
        Stage(pb.TRADE_STATUS_FILLED, 100, "trade filled", terminal=True),
        Stage(pb.TRADE_STATUS_REJECTED, 100, "trade rejected", terminal=True),
        Stage(pb.TRADE_STATUS_FAILED, 100, "trade failed", terminal=True),
        Stage(pb.TRADE_STATUS_CANCELLED, 100, "trade cancelled", terminal=True),
        Stage(pb.TRADE_STATUS_EXPIRED, 100, "trade expired", terminal=True),
    )
}

# The happy path, in order.
PATH: tuple[int, ...] = (
    pb.TRADE_STATUS_RECEIVED,
    pb.TRADE_STATUS_VALIDATED,
    pb.TRADE_STATUS_ROUTED,
    pb.TRADE_STATUS_QUOTED,
    pb.TRADE_STATUS_SIGNED,
    pb.TRADE_STATUS_SIMULATED,
    pb.TRADE_STATUS_SUBMITTED,
    pb.TRADE_STATUS_CONFIRMED,
    pb.TRADE_STATUS_FILLED,
)
_ORDER = {status: i for i, status in enumerate(PATH)}
# The most transitions one trade publishes: a stage is entered once, and only forward.
MOST_TRANSITIONS = len(PATH)
# Once sent, a trade can no longer be cancelled.
SENT_STAGES = frozenset({pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_CONFIRMED})
# The point of no return: an executor yields SIMULATED right before it sends. While the
# executor is suspended at that yield nothing has been sent; once the runner resumes it, the
# trade may be on its way and is no longer cancelled, interrupted or retried.
POINT_OF_NO_RETURN = pb.TRADE_STATUS_SIMULATED
# The most events a trade can have published before its point of no return is stored (one per
# stage up to it: a runner publishes a stage, then stores it).
MOST_EVENTS_BEFORE_COMMIT = _ORDER[POINT_OF_NO_RETURN] + 1


def most_unsaved(status: int) -> int:
    """The most events a trade stored at ``status`` may publish before it is stored again: one per
    stage ahead of it up to the point of no return (stored as the trade commits), and past that up
    to CONFIRMED (SUBMITTED and CONFIRMED are published unstored; an end is stored first)."""
    if is_terminal(status):
        return 0
    at = _ORDER.get(status, -1)
    last_unsaved = _ORDER[POINT_OF_NO_RETURN] if at < _ORDER[POINT_OF_NO_RETURN] else _ORDER[pb.TRADE_STATUS_CONFIRMED]
    return max(0, last_unsaved - at)


def last_sequence(events) -> int:
    """The sequence of the last of a trade's ``events`` (0 for none)."""
    return events[-1].sequence if events else 0


class IllegalTransition(RuntimeError):
    pass


def is_terminal(status: int) -> bool:
    return STAGES[status].terminal if status in STAGES else False


def check_transition(current: int | None, new: int) -> None:
    if current is None:
        if new != pb.TRADE_STATUS_RECEIVED:
            raise IllegalTransition(f"a trade starts at RECEIVED, not {S.Name(new)}")
        return
    if is_terminal(current):
        raise IllegalTransition(f"{S.Name(current)} is terminal")
    if new in _ORDER and _ORDER[new] > _ORDER[current]:
        return
    if is_terminal(new) and new != pb.TRADE_STATUS_FILLED:
        return
    raise IllegalTransition(f"{S.Name(current)} → {S.Name(new)}")


def timestamp_of(ns: int) -> timestamp_pb2.Timestamp:
    """A Timestamp from ns since the epoch, built directly (FromNanoseconds is pure Python)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def ns_of(ts: timestamp_pb2.Timestamp) -> int:
    """What Timestamp.ToNanoseconds() returns, without its pure-Python call chain and range check."""
    return ts.seconds * 1_000_000_000 + ts.nanos


def now_timestamp() -> timestamp_pb2.Timestamp:
    return timestamp_of(time.time_ns())


def status_event(request_id: str, sequence: int, status: int, message: str | None = None,
                 result: pb.TradeResult | None = None, at_ns: int | None = None) -> pb.ExecutionStatus:
    """``at_ns``: the transition's time, when the caller took it already (one clock read per transition)."""
    stage = STAGES[status]
    return pb.ExecutionStatus(
        request_id=request_id,
        sequence=sequence,
        stage=status,
        percent_complete=stage.percent,
        message=message or stage.message,
        timestamp=timestamp_of(time.time_ns() if at_ns is None else at_ns),
        terminal=stage.terminal,
        result=result,
        kind=pb.STATUS_KIND_TRANSITION,
    )


def rank(status: int) -> int:
    """Position on the happy path (-1 for unspecified or a terminal failure)."""
    return _ORDER.get(status, -1)


def may_run_again(result: pb.TradeResult) -> bool:
    """A trade that ended before anything was sent, in a way its caller may retry: refused
    because something was unavailable (an upstream, the shared store, the gateway itself), or
    stopped by its caller's own call going away or passing its deadline (the commonest reason
    to retry: a dropped connection). A retry with the same request id and payload runs it again
    instead of getting this end back. (CancelTrade and the order's own deadline stay final.)"""
    if result.status == pb.TRADE_STATUS_REJECTED and result.error.code == Code.UNAVAILABLE:
        return True
    return stopped_by_its_call(result)


def stopped_by_its_call(result: pb.TradeResult) -> bool:
    """Stopped before anything was sent because the call waiting for it went away or passed
    its deadline (not by CancelTrade, nor by the order's own deadline)."""
    return result.status in _STOPPED_BY_THE_CALL and result.error.reason in _THE_CALLS_OWN_STOPS \
        and not result.signature


_STOPPED_BY_THE_CALL = frozenset({pb.TRADE_STATUS_CANCELLED, pb.TRADE_STATUS_EXPIRED})
_THE_CALLS_OWN_STOPS = frozenset({"CANCELLED", "DEADLINE_EXCEEDED"})  # (core/trades.py's stops of a waiting call)


def may_have_been_sent(status: int) -> bool:
    """True from the point of no return on (for a non-terminal status)."""
    return rank(status) >= _ORDER[POINT_OF_NO_RETURN]


def heartbeat_event(request_id: str, last: pb.ExecutionStatus | None) -> pb.ExecutionStatus:
    """Keep-alive on an idle stream: no transition, the trade's current stage and percent."""
    stage = last.stage if last is not None else pb.TRADE_STATUS_UNSPECIFIED
    where = f" (currently {S.Name(stage).removeprefix('TRADE_STATUS_')})" if stage else ""
    return pb.ExecutionStatus(
        request_id=request_id, stage=stage, percent_complete=last.percent_complete if last is not None else 0,
        message=f"waiting for the next status{where}", timestamp=now_timestamp(), kind=pb.STATUS_KIND_HEARTBEAT,
    )


def shutdown_event(request_id: str, last: pb.ExecutionStatus | None, *, left_here: bool = False) -> pb.ExecutionStatus:
    """The last message of a stream the server closes while shutting down, or (``left_here``)
    of a trade this replica stopped running while serving on (another replica took it over):
    how to resume."""
    stage = last.stage if last is not None else pb.TRADE_STATUS_UNSPECIFIED
    if request_id:
        resume = (last.sequence + 1) if last is not None else 1
        message = (f"this replica no longer runs the trade (another one took it over): reconnect and resume "
                   f"with from_sequence={resume}" if left_here else
                   f"server shutting down: reconnect once it is back and resume with from_sequence={resume}; "
                   f"an unfinished trade resumes after the restart")
    else:
        message = ("server shutting down; reconnect and follow each trade with StreamExecutionStatus "
                   "(from_sequence = last sequence + 1)")
    return pb.ExecutionStatus(
        request_id=request_id, stage=stage, percent_complete=last.percent_complete if last is not None else 0,
        message=message, timestamp=now_timestamp(), kind=pb.STATUS_KIND_SHUTDOWN,
    )
