"""The shutdown deadline holds while an HTTP request is still being uploaded: the HTTP listener
waits for it only as long as the deadline leaves (as the gRPC listener does), not a fixed grace
period of its own counted after the trades' drain — which ran past the deadline, leaving the
audit flush no time at all (an orchestrator's SIGKILL arrives at the deadline). The upload cut
off is answered 503 SHUTTING_DOWN (retryable)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from support.clients import RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import equals, eventually, metric, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

DEADLINE_S, FINAL_S = 6.0, 5.0


async def test_a_request_still_uploading_does_not_hold_the_exit_past_the_deadline(tmp_path):
    gateway = GatewayProcess(
        tmp_path / "gw", extra_config=f"[shutdown]\ndeadline_s = {DEADLINE_S}\nfinal_s = {FINAL_S}\n",
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "60000",
             "TRADEWIRE_SERVER__SHUTDOWN_GRACE_S": "30"},
    ).start()
    key, request_id = gateway.key("alice"), unique("held")
    client = make_client("grpc", gateway)
    upload = socket.create_connection(("127.0.0.1", gateway.http_port))
    try:
        execution = asyncio.create_task(client.unary("ExecuteTrade", trade(request_id), key))
        stream = StreamHandle(client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                              key)
        await stream.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages), what="QUOTED")
        # a trade whose body is still on its way (1 of 1000 bytes), and stays so
        authenticated = await metric(gateway, "tradewire_auth_attempts_total", outcome="success", reason="OK")
        upload.sendall(f"POST /v1/trades HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n"
                       "content-type: application/json\r\ncontent-length: 1000\r\n\r\n{".encode())
        await eventually(lambda: equals(metric(gateway, "tradewire_auth_attempts_total", outcome="success",
                                               reason="OK"), authenticated + 1),
                         what="the upload's call authenticated (then waiting for its body)")

        gateway.terminate()
        signalled = time.monotonic()
        code = await asyncio.to_thread(gateway.wait_exit, DEADLINE_S + 10)
        elapsed = time.monotonic() - signalled
        assert code == 0, gateway.log_text()[-3000:]
        assert elapsed < DEADLINE_S, f"exited {elapsed:.2f}s after SIGTERM, past the {DEADLINE_S}s deadline"
        [stopped] = [json.loads(line) for line in gateway.log_text().splitlines() if '"msg":"stopped"' in line]
        assert stopped["shutdown_s"] < DEADLINE_S - 0.5, stopped  # (what is left of it is the flush's)
        assert stopped["trades_left_unfinished"] == 1, stopped
        with pytest.raises(RpcFailure) as failure:  # the running trade's caller: retryable, resumes
            await execution
        assert (failure.value.code, failure.value.reason) == ("UNAVAILABLE", "SHUTTING_DOWN")
        # the upload cut off: answered as retryable, not uvicorn's 500 and its traceback
        upload.settimeout(5)
        answer = upload.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:300]
        assert b'"reason":"SHUTTING_DOWN"' in answer, answer
        assert "Exception in ASGI application" not in gateway.log_text()
    finally:
        upload.close()
        await client.close()
        if gateway.proc.poll() is None:
            gateway.stop()
