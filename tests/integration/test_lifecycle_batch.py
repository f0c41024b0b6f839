"""ExecuteTradeBatch on every protocol: items validated one by one, run concurrently within the
configured bound, one result per item in request order; atomic validation on request."""

import pytest

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import SOL, USDC, metric, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

CONCURRENCY = 3
MAX_ITEMS = 12
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


@pytest.fixture(scope="module")
def batch_gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("batch"),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "300",
             "TRADEWIRE_EXECUTION__BATCH_CONCURRENCY": str(CONCURRENCY),
             "TRADEWIRE_LIMITS__MAX_BATCH_ITEMS": str(MAX_ITEMS)},
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(params=PROTOCOLS)
async def client(request, batch_gateway):
    c = make_client(request.param, batch_gateway)
    yield c
    await c.close()


async def test_mixed_batch_returns_one_result_per_item_in_order(client, batch_gateway):
    key = batch_gateway.key("alice")
    earlier, reused = trade(unique("earlier")), trade(unique("reused"))
    for made in (earlier, reused):
        await client.unary("ExecuteTrade", made, key)
    ids = [unique(f"batch-{client.name}") for _ in range(8)]
    items = [
        trade(ids[0]),                                      # 0 fills
        trade(ids[1], amount="0.0000000001"),               # 1 too many decimals for SOL
        trade(ids[2], amount="2"),                          # 2 fills
        trade(ids[3], input_mint=BONK, output_mint=JUP),    # 3 pair not supported
        trade(ids[0], amount="3"),                          # 4 duplicates item 0's request id
        earlier,                                            # 5 an earlier trade: its original result
        trade(ids[6], amount="99999"),                      # 6 valid, but the wallet cannot pay: REJECTED
        trade(ids[7], webhook_url="ftp://example.com/x"),   # 7 invalid webhook_url
        trade(reused.request_id, amount="0.7"),             # 8 an earlier trade's request id, other amount
    ]
    response, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items), key)

    results = list(response.results)
    assert [r.index for r in results] == list(range(len(items)))
    outcome = [r.WhichOneof("outcome") for r in results]
    assert outcome == ["result", "error", "result", "error", "error", "result", "result", "error", "error"]
    assert results[0].result.status == pb.TRADE_STATUS_FILLED and results[0].result.request_id == ids[0]
    assert results[2].result.status == pb.TRADE_STATUS_FILLED and results[2].result.request_id == ids[2]
    assert results[1].error.reason == "VALIDATION_FAILED"
    assert [v.field for v in results[1].error.field_violations] == ["trades[1].amount"]
    assert results[1].error.code == 3  # INVALID_ARGUMENT
    assert results[3].error.reason == "UNSUPPORTED_PAIR"
    assert [v.field for v in results[4].error.field_violations] == ["trades[4].request_id"]
    assert results[5].result.request_id == earlier.request_id and results[5].result.status == pb.TRADE_STATUS_FILLED
    assert results[6].result.status == pb.TRADE_STATUS_REJECTED
    assert results[6].result.error.reason == "INSUFFICIENT_FUNDS"
    assert [v.field for v in results[7].error.field_violations] == ["trades[7].webhook_url"]
    assert results[8].error.reason == "DUPLICATE_REQUEST_MISMATCH" and "(amount differs)" in results[8].error.message
    assert [v.field for v in results[8].error.field_violations] == ["trades[8].request_id"]  # as item 4's path
    for i in (1, 3, 7):  # refused items never became trades
        with pytest.raises(RpcFailure) as failure:
            await client.unary("GetTrade", spb.GetTradeRequest(request_id=ids[i]), key)
        assert failure.value.code == "NOT_FOUND"


async def test_atomic_validation_runs_nothing_when_an_item_is_invalid(client, batch_gateway):
    key = batch_gateway.key("bob")
    good = unique("atomic-good")
    items = [trade(good), trade(unique("atomic-bad"), amount="abc"), trade(unique("atomic-bad"), output_mint=USDC,
                                                                            input_mint=USDC)]
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items, atomic_validation=True),
                           key)
    assert failure.value.code == "INVALID_ARGUMENT"
    assert set(failure.value.fields) == {"trades[1].amount", "trades[2].output_mint"}
    with pytest.raises(RpcFailure) as missing:
        await client.unary("GetTrade", spb.GetTradeRequest(request_id=good), key)
    assert missing.value.code == "NOT_FOUND"

    ok, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(
        trades=[trade(unique("atomic-ok")), trade(unique("atomic-ok"))], atomic_validation=True), key)
    assert [r.result.status for r in ok.results] == [pb.TRADE_STATUS_FILLED] * 2


async def test_batch_size_is_limited_by_configuration(client, batch_gateway):
    items = [trade(unique("big")) for _ in range(MAX_ITEMS + 1)]
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items), batch_gateway.key("bob"))
    assert failure.value.code == "INVALID_ARGUMENT" and failure.value.fields == ["trades"]
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(), batch_gateway.key("bob"))
    assert failure.value.code == "INVALID_ARGUMENT"


async def test_items_run_concurrently_within_the_bound(batch_gateway):
    client = make_client("grpc", batch_gateway)
    try:
        items = [trade(unique("bound")) for _ in range(MAX_ITEMS)]
        response, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items),
                                         batch_gateway.key("trader"))
    finally:
        await client.close()
    spans = [(r.result.created_at.ToNanoseconds(), r.result.updated_at.ToNanoseconds()) for r in response.results]
    assert all(r.result.status == pb.TRADE_STATUS_FILLED for r in response.results)
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, peak = 0, 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == CONCURRENCY  # never more, and the bound was used


async def test_live_items_need_the_live_scope_for_the_whole_batch(batch_gateway):
    client = make_client("grpc", batch_gateway)
    try:
        items = [trade(unique("paper")), trade(unique("live"), mode=pb.TRADING_MODE_LIVE)]
        with pytest.raises(RpcFailure) as failure:
            await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items),
                               batch_gateway.key("alice"))
        assert failure.value.code == "PERMISSION_DENIED"
        assert "ratelimit-remaining" not in failure.value.headers  # refused before the limiter, as ExecuteTrade is
        response, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items),
                                         batch_gateway.key("trader"))
        assert response.results[0].result.status == pb.TRADE_STATUS_FILLED
        assert response.results[1].result.status == pb.TRADE_STATUS_REJECTED
        assert response.results[1].result.error.reason == "LIVE_NOT_CONFIGURED"
    finally:
        await client.close()
    assert await metric(batch_gateway, "tradewire_batch_items_total", outcome="refused") >= 1


async def test_each_item_is_on_record_with_its_own_outcome(client, batch_gateway):
    correlation_id = unique(f"batch-record-{client.name}")
    items = [trade(unique("on-record")), trade(unique("same-mints"), output_mint=SOL),
             trade(unique("too-much"), amount="99999")]  # runs, and is REJECTED: recorded as its ExecuteTrade is
    await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=items), batch_gateway.key("alice"),
                       headers={"x-correlation-id": correlation_id})

    def rows() -> list[dict]:
        return batch_gateway.audit_rows("tw_requests", correlation_id=correlation_id)

    wait_until(lambda: len(rows()) == 4, what="the call's row and one per item")
    by_method = sorted((r["method"], r.get("trade_request_id"), r["code"], r.get("reason")) for r in rows())
    assert by_method == [
        ("ExecuteTradeBatch", None, "OK", None),
        ("ExecuteTradeBatch.trades", items[0].request_id, "OK", None),
        ("ExecuteTradeBatch.trades", items[1].request_id, "INVALID_ARGUMENT", "VALIDATION_FAILED"),
        ("ExecuteTradeBatch.trades", items[2].request_id, "FAILED_PRECONDITION", "INSUFFICIENT_FUNDS"),
    ]
    assert len({r["request_id"] for r in rows()}) == 1  # all under the call's id
