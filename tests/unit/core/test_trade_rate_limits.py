"""Every trade takes from its caller's rate limit, whichever call carries it: a batch costs
what its trades would cost one by one (plus the call itself), so batching is no way around
the limit; refusals are counted per bucket."""

import pytest

from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_ratetest_" + "r" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BURST = 5


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita", limits={"requests_per_s": 0.001, "burst": BURST}) as made:
        yield made  # (the bucket does not refill within the test)


def trade(request_id: str) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


def refusals(core, bucket: str) -> float:
    return core.metrics.registry.get_sample_value("tradewire_rate_limited_total", {"bucket": bucket}) or 0.0


async def test_a_batch_takes_one_token_per_trade_and_refuses_the_rest_item_by_item(core):
    ctx = call_with_key(KEY, "ExecuteTradeBatch")
    batch = spb.ExecuteTradeBatchRequest(trades=[trade(f"batch-{i}") for i in range(2 * BURST)])
    response = await core.service.ExecuteTradeBatch(batch, ctx)

    filled = [r for r in response.results if r.HasField("result") and r.result.status == pb.TRADE_STATUS_FILLED]
    limited = [r for r in response.results if r.HasField("error") and r.error.reason == "RATE_LIMITED"]
    assert len(filled) == BURST - 1  # the call took one token, each trade one more
    assert len(limited) == BURST + 1 and len(filled) + len(limited) == len(response.results)
    assert refusals(core, "principal") == BURST + 1
    assert all(core.store.get("rita", f"batch-{r.index}") is None for r in limited)  # refused: nothing claimed
    # the answer's headers tell the bucket as the batch left it, not as the call found it
    assert ctx.response_headers["ratelimit-remaining"] == "0", ctx.response_headers
    assert "retry-after" not in ctx.response_headers  # the call itself was answered


async def test_a_batch_item_the_store_fails_is_that_item_s_error_not_the_batch_s(core, monkeypatch):
    """One item meets a store that does not answer (or any fault): it is answered with its error,
    and the other items' outcomes still come back."""
    core.service.pipeline.store_outages = (ConnectionError,)
    admit = core.runner.admit

    def admit_but_one(order):
        if order.request_id == "faulty-store":
            raise ConnectionError("the store did not answer")
        if order.request_id == "faulty-bug":
            raise RuntimeError("a fault")
        return admit(order)

    monkeypatch.setattr(core.runner, "admit", admit_but_one)
    ctx = call_with_key(KEY, "ExecuteTradeBatch")
    batch = spb.ExecuteTradeBatchRequest(trades=[trade("fine"), trade("faulty-store"), trade("faulty-bug")])
    response = await core.service.ExecuteTradeBatch(batch, ctx)

    by_index = {r.index: r for r in response.results}
    assert by_index[0].result.status == pb.TRADE_STATUS_FILLED
    assert (by_index[1].error.reason, by_index[2].error.reason) == ("STORE_UNAVAILABLE", "INTERNAL")
    assert "a fault" not in by_index[2].error.message


async def test_a_session_s_cancels_take_what_cancel_calls_take(core):
    """Inside a TradeSession a cancel costs what a CancelTrade call costs: a session is no way
    around the caller's limit either."""
    async def requests():
        for i in range(2 * BURST):
            yield spb.TradeSessionRequest(cancel=spb.CancelTradeRequest(request_id=f"no-such-{i}"))

    ctx = call_with_key(KEY, "TradeSession")
    reasons = [response.error.error.reason async for response in core.service.TradeSession(requests(), ctx)]
    assert reasons == ["TRADE_NOT_FOUND"] * BURST + ["RATE_LIMITED"] * BURST
    assert refusals(core, "principal") == BURST


async def test_a_session_s_undecodable_messages_take_what_malformed_calls_take(core):
    async def requests():  # (what the transport hands on for a message it could not decode)
        for _ in range(2 * BURST):
            yield TradewireError("MALFORMED_REQUEST", "not a TradeSessionRequest")

    ctx = call_with_key(KEY, "TradeSession")
    reasons = [response.error.error.reason async for response in core.service.TradeSession(requests(), ctx)]
    assert reasons == ["MALFORMED_REQUEST"] * BURST + ["RATE_LIMITED"] * BURST
