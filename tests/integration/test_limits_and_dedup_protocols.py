"""Rate limits as clients of a real gateway meet them: one bucket per caller whatever protocol
carries the call, refused with RESOURCE_EXHAUSTED (HTTP 429) and a retry delay every protocol
can use at the slowest rate the configuration takes; a batch pays per trade in its trades' own buckets, and an
item it cannot pay for says when to retry."""

import pytest

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.trading import trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

BURST, LIVE_BURST = 3, 2
SLOWEST_RATE = 0.001  # requests a second: the least the configuration takes (a token per 1,000 s)


@pytest.fixture(scope="module")
def stingy_gateway(tmp_path_factory):
    """Buckets that refill once in 1,000 s: each caller has BURST calls for the test's length."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("stingy"), env={
        "TRADEWIRE_LIMITS__REQUESTS_PER_S": str(SLOWEST_RATE), "TRADEWIRE_LIMITS__BURST": str(BURST),
        "TRADEWIRE_LIMITS__LIVE_REQUESTS_PER_S": str(SLOWEST_RATE), "TRADEWIRE_LIMITS__LIVE_BURST": str(LIVE_BURST)})
    gateway.start()
    yield gateway
    assert gateway.stop() == 0, gateway.log_text()[-3000:]


async def test_one_bucket_across_protocols_refused_everywhere_with_a_usable_retry_delay(stingy_gateway):
    key = stingy_gateway.key("alice")
    clients = {name: make_client(name, stingy_gateway) for name in PROTOCOLS}
    try:
        for name in ("grpc", "connect-json", "http"):  # the caller's BURST calls, over three protocols
            await clients[name].unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
        for name, client in clients.items():
            with pytest.raises(RpcFailure) as refused:
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
            failure = refused.value
            assert (failure.code, failure.reason) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED"), (name, failure)
            assert 900 < failure.retry_after_s <= 1 / SLOWEST_RATE, name  # RetryInfo
            assert 900 < int(failure.headers["retry-after"]) <= 1 / SLOWEST_RATE, (name, failure.headers)
            assert failure.headers["ratelimit-remaining"] == "0"
            if name == "http":
                assert failure.http_status == 429
    finally:
        for client in clients.values():
            await client.close()


async def test_a_live_batch_pays_one_live_token_per_trade(stingy_gateway):
    """LIVE_BURST LIVE trades in one batch run as LIVE_BURST ExecuteTrade calls would (no LIVE
    executor here: each is REJECTED LIVE_NOT_CONFIGURED, none RATE_LIMITED); the call itself
    costs a token of the caller's own bucket only."""
    key = stingy_gateway.key("trader")
    client = make_client("http", stingy_gateway)
    try:
        batch = spb.ExecuteTradeBatchRequest(trades=[trade(unique("live"), mode=pb.TRADING_MODE_LIVE)
                                                     for _ in range(LIVE_BURST)])
        response, headers = await client.unary("ExecuteTradeBatch", batch, key)
        assert [item.result.error.reason for item in response.results] == ["LIVE_NOT_CONFIGURED"] * LIVE_BURST
        assert headers["ratelimit-remaining"] == "0"  # the LIVE bucket, as the last trade left it
    finally:
        await client.close()


async def test_a_batch_item_the_bucket_cannot_pay_for_carries_its_retry_delay(stingy_gateway):
    key = stingy_gateway.key("bob")
    client = make_client("grpc-web", stingy_gateway)
    try:
        batch = spb.ExecuteTradeBatchRequest(trades=[trade(unique("item")) for _ in range(BURST)])
        response, _ = await client.unary("ExecuteTradeBatch", batch, key)
        ran = [item for item in response.results if item.HasField("result")]
        assert len(ran) == BURST - 1  # the call took one token
        refused = next(item.error for item in response.results if item.HasField("error"))
        assert (refused.reason, refused.code) == ("RATE_LIMITED", 8)
        assert 900 < float(refused.metadata["retry_after_s"]) <= 1 / SLOWEST_RATE
    finally:
        await client.close()
