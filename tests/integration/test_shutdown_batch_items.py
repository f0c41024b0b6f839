"""An ExecuteTradeBatch running when SIGTERM comes: the items already running finish (the drain
waits for them), the items not yet started are refused UNAVAILABLE SHUTTING_DOWN — retryable, not
run — as every new trade is while the gateway drains, and the batch is answered (every item's
outcome) before the listeners close."""

from __future__ import annotations

import asyncio

from support.clients import StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import trade, unique
from tradewire.core.errors import Code
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

DEADLINE_S = 16.0


async def test_batch_items_not_started_when_the_drain_begins_are_refused_shutting_down(tmp_path):
    gateway = GatewayProcess(
        tmp_path / "gw",
        extra_config=f"[shutdown]\ndeadline_s = {DEADLINE_S}\nfinal_s = 3\n[execution]\nbatch_concurrency = 1\n",
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "2000"},
    ).start()
    key = gateway.key("alice")
    ids = [unique("batch") for _ in range(3)]
    client = make_client("grpc", gateway)
    try:
        batch = asyncio.create_task(client.unary(
            "ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=[trade(i) for i in ids]), key))
        first = StreamHandle(client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=ids[0]), key)
        await first.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages), what="QUOTED")
        gateway.terminate()
        response, _ = await asyncio.wait_for(batch, DEADLINE_S)
        assert await asyncio.to_thread(gateway.wait_exit, DEADLINE_S + 5) == 0
    finally:
        await client.close()
        if gateway.proc.poll() is None:
            gateway.stop()
    first_item, *later = response.results
    assert first_item.result.status == pb.TRADE_STATUS_FILLED
    for item in later:
        assert (item.error.code, item.error.reason) == (Code.UNAVAILABLE, "SHUTTING_DOWN"), item

    gateway.start()  # nothing of theirs ran: the store does not know them, or knows them to run again
    client = make_client("grpc", gateway)
    try:
        history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=50), key)
    finally:
        await client.close()
        assert gateway.stop() == 0
    assert [t.request_id for t in history.trades] == [ids[0]]
