"""A gateway killed outright (SIGKILL) after a paper trade was sent: the trade's SUBMITTED event
reached its stream but was never stored. After the restart the trade's outcome comes after it, so
the stream resumed at the last sequence it saw + 1 gets the end, and the audit trail has no two
rows of the trade with one sequence."""

import asyncio
import collections

from support.clients import StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, trade, transitions, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


async def test_a_trade_killed_after_it_was_sent_ends_after_the_last_sequence_its_stream_saw(tmp_path):
    gateway = GatewayProcess(  # paper trades: 2 s building, then 2 s landing after SUBMITTED
        tmp_path / "gw", env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "4000"},
    ).start()
    try:
        await _kill_after_submitted_then_resume(gateway)
    finally:
        if gateway.proc.poll() is None:
            gateway.stop()


async def _kill_after_submitted_then_resume(gateway: GatewayProcess) -> None:
    key, request_id = gateway.key("alice"), unique("kill")
    http = make_client("http", gateway)  # SSE, as the browser follows it
    try:
        execution = asyncio.create_task(http.unary("ExecuteTrade", trade(request_id), key))
        stream = StreamHandle(http, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                              key)
        await stream.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_SUBMITTED for m in s.messages),
                              what="SUBMITTED")
        seen = transitions(stream.messages)[-1].sequence
        # its audit row is written (within 20 ms) before the kill
        await eventually(lambda: any(r["sequence"] == seen for r in gateway.audit_rows(
            "tw_transitions", request_id=request_id)), timeout=1.5, interval=0.01, what="SUBMITTED's audit row")
        gateway.proc.kill()
        assert gateway.wait_exit(10) != 0
        await stream.finished(10)
        execution.cancel()
        await asyncio.gather(execution, stream.task, return_exceptions=True)
    finally:
        await http.close()

    gateway.start()  # on the same data: it settles the trade (its fill never landed: EXPIRED)
    http = make_client("http", gateway)
    try:
        rest = await asyncio.wait_for(http.stream(
            "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=seen + 1),
            key), 20)
        assert rest and rest[-1].terminal and rest[-1].stage == pb.TRADE_STATUS_EXPIRED, rest
        assert all(m.sequence > seen for m in transitions(rest))
    finally:
        await http.close()
    assert gateway.stop() == 0
    rows = gateway.audit_rows("tw_transitions", request_id=request_id)
    shared = {n: c for n, c in collections.Counter(r["sequence"] for r in rows).items() if c > 1}
    assert not shared, f"audit rows sharing a sequence: {shared}"
