"""The same paper-trading journey on every protocol: trade, stream, history, positions, health."""

import itertools
from decimal import Decimal

import pytest

from support.clients import RpcFailure
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
_ids = itertools.count()


def trade(request_id: str, amount: str = "0.5", **kw) -> pb.TradeRequest:
    fields = dict(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                  amount=amount, slippage_bps=100)
    fields.update(kw)
    return pb.TradeRequest(**fields)


def unique(prefix: str, client) -> str:
    return f"{prefix}-{client.name}-{next(_ids)}"


async def test_paper_trade_fills_and_is_recorded(client, gateway):
    key = gateway.key("alice")
    request_id = unique("fill", client)
    result, headers = await client.unary("ExecuteTrade", trade(request_id), key)

    assert result.status == pb.TRADE_STATUS_FILLED
    assert result.request_id == request_id
    assert Decimal(result.amount_in) == Decimal("0.5")
    # 0.5 SOL at ~150 USDC, less the 25 bps pool fee and a little impact.
    assert Decimal("74") < Decimal(result.amount_out) < Decimal("75")
    assert result.fees.base_fee_lamports == 5000
    assert result.fees.total_lamports == (result.fees.base_fee_lamports + result.fees.priority_fee_lamports
                                          + result.fees.jito_tip_lamports + result.fees.ata_rent_lamports)

    fetched, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    assert fetched == result

    history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=500), key)
    assert request_id in [t.request_id for t in history.trades]


async def test_a_trade_that_sold_nothing_still_says_what_was_asked(client, gateway):
    key = gateway.key("alice")
    request_id = unique("too-much", client)
    with pytest.raises(RpcFailure) as refused:
        await client.unary("ExecuteTrade", trade(request_id, amount="1000.50"), key)
    assert refused.value.reason == "INSUFFICIENT_FUNDS"
    stored, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    assert (stored.status, stored.amount_in, stored.requested_amount) == (pb.TRADE_STATUS_REJECTED, "", "1000.5")
    bought, _ = await client.unary("ExecuteTrade", trade(unique("exact-out", client), amount="2.000",
                                                         swap_mode=pb.SWAP_MODE_EXACT_OUT), key)
    assert bought.requested_amount == "2" and Decimal(bought.amount_out) == 2  # (USDC: the output mint)


async def test_same_request_id_same_payload_returns_original(client, gateway):
    key = gateway.key("alice")
    request = trade(unique("dedup", client))
    first, _ = await client.unary("ExecuteTrade", request, key)
    again, _ = await client.unary("ExecuteTrade", request, key)
    assert again == first


async def test_reused_request_id_with_different_payload_is_already_exists(client, gateway):
    key = gateway.key("alice")
    request_id = unique("reuse", client)
    await client.unary("ExecuteTrade", trade(request_id, amount="0.1"), key)
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTrade", trade(request_id, amount="0.2"), key)
    assert failure.value.code == "ALREADY_EXISTS"
    assert failure.value.reason == "DUPLICATE_REQUEST_MISMATCH"
    assert "request_id" in failure.value.fields
    assert "(amount differs)" in failure.value.message  # which recorded field is not the same
    if client.name == "http":
        assert failure.value.http_status == 409


async def test_status_stream_delivers_ordered_events_to_terminal(client, gateway):
    key = gateway.key("alice")
    request_id = unique("stream", client)
    await client.unary("ExecuteTrade", trade(request_id), key)
    events = await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id), key)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    stages = [e.stage for e in events]
    assert stages[0] == pb.TRADE_STATUS_RECEIVED and stages[-1] == pb.TRADE_STATUS_FILLED
    assert stages == sorted(stages)
    percents = [e.percent_complete for e in events]
    assert percents == sorted(percents) and percents[-1] == 100
    assert events[-1].terminal and events[-1].result.status == pb.TRADE_STATUS_FILLED
    assert not any(e.terminal for e in events[:-1])

    resumed = await client.stream("StreamExecutionStatus",
                                  spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=4), key)
    assert [e.sequence for e in resumed] == [e.sequence for e in events][3:]


async def test_positions_reflect_fills(client, gateway):
    key = gateway.key("bob")
    before, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
    sol_before = Decimal(next(p.amount for p in before.positions if p.mint == SOL))
    result, _ = await client.unary("ExecuteTrade", trade(unique("pos", client), amount="1"), key)
    after, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
    sol_after = Decimal(next(p.amount for p in after.positions if p.mint == SOL))
    fee_sol = Decimal(result.fees.total_lamports) / Decimal(10**9)
    assert sol_before - sol_after == Decimal("1") + fee_sol


async def test_health_answers_without_credentials_and_describes_caller_with_them(client, gateway):
    anonymous, _ = await client.unary("HealthCheck", spb.HealthCheckRequest())
    assert anonymous.status == spb.SERVING_STATUS_SERVING
    assert {c.name for c in anonymous.components} >= {"store", "paper_executor", "live_executor"}
    assert not anonymous.HasField("caller")
    described, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), gateway.key("reader"))
    assert described.caller.scopes == ["read"]
    assert (described.caller.principal, described.caller.owner) == (gateway.key("reader")[:11], "reader")
    assert described.caller.rate_limit_limit > 0
    # what components say (load figures, store and executor details) only for a caller with
    # credentials; the statuses are the same for both
    load = {"in_flight": "trades running", "streams": "open streams", "store": "sqlite",
            "paper_executor": "simulating fills", "live_executor": "not configured"}
    for name, words in load.items():
        assert words in next(c.message for c in described.components if c.name == name)
        assert next(c.message for c in anonymous.components if c.name == name) == ""


async def test_principal_cannot_see_another_principals_trade(client, gateway):
    request_id = unique("private", client)
    await client.unary("ExecuteTrade", trade(request_id), gateway.key("alice"))
    with pytest.raises(RpcFailure) as failure:
        await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), gateway.key("bob"))
    assert failure.value.code == "NOT_FOUND"
    with pytest.raises(RpcFailure) as failure:
        await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                            gateway.key("bob"))
    assert failure.value.code == "NOT_FOUND"


async def test_live_is_refused_until_configured(client, gateway):
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTrade", trade(unique("live", client), mode=pb.TRADING_MODE_LIVE),
                           gateway.key("trader"))
    assert failure.value.code == "FAILED_PRECONDITION"
    assert failure.value.reason == "LIVE_NOT_CONFIGURED"
    assert "live executor not configured" in failure.value.message


async def test_paper_only_key_cannot_trade_live(client, gateway):
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTrade", trade(unique("perm", client), mode=pb.TRADING_MODE_LIVE),
                           gateway.key("alice"))
    assert failure.value.code == "PERMISSION_DENIED"


async def test_cancel_of_an_unknown_trade_is_not_found(client, gateway):
    with pytest.raises(RpcFailure) as failure:
        await client.unary("CancelTrade", spb.CancelTradeRequest(request_id="x"), gateway.key("alice"))
    assert failure.value.code == "NOT_FOUND"
    assert failure.value.reason == "TRADE_NOT_FOUND"


async def test_market_lists_the_configured_mints_and_pairs(client, gateway):
    from tradewire.core.config import MarketConfig

    market, _ = await client.unary("GetMarket", spb.GetMarketRequest(), gateway.key("reader"))
    config = MarketConfig()
    assert [(m.symbol, m.address, m.decimals) for m in market.mints] == \
        [(m.symbol, m.address, m.decimals) for m in config.mints]
    by_symbol = {m.symbol: m.address for m in config.mints}
    assert [(p.base_mint, p.quote_mint) for p in market.pairs] == \
        [(by_symbol[p.base], by_symbol[p.quote]) for p in config.pools]
    assert market.valuation_mint == USDC
    sol, sol_config = next(m for m in market.mints if m.address == SOL), by_symbol_config(config, "SOL")
    # the effective bounds: at least one atomic unit (1 lamport)
    assert Decimal(sol.min_amount) == max(sol_config.min_amount, Decimal("0.000000001"))
    assert Decimal(sol.max_amount) == sol_config.max_amount
    with pytest.raises(RpcFailure) as refused:
        await client.unary("GetMarket", spb.GetMarketRequest(), None)
    assert refused.value.code == "UNAUTHENTICATED"


def by_symbol_config(config, symbol: str):
    return next(m for m in config.mints if m.symbol == symbol)
