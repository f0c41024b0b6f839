"""The PAPER executor against the devnet's Jupiter-compatible market: realistic impact, the
fee schedule to the lamport, slippage and funds failures, and exact positions and PnL."""

import json
import re
import uuid
from decimal import Decimal

import httpx
import pytest

from support.clients import GrpcClient, RpcFailure
from support.devnet_process import DevnetProcess
from support.gateway_process import GatewayProcess
from support.trading import eventually
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
ATA_RENT = 2_039_280


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    process = DevnetProcess(tmp_path_factory.mktemp("devnet")).start()
    yield process
    process.stop()


def market_gateway(tmp_path_factory, devnet, name: str, **paper) -> GatewayProcess:
    return market_gateway_at(tmp_path_factory.mktemp(name), devnet,
                             **{f"TRADEWIRE_PAPER__{k.upper()}": str(v) for k, v in paper.items()})


def market_gateway_at(workdir, devnet, **env) -> GatewayProcess:
    env = {"TRADEWIRE_MARKET_DATA__JUPITER_URL": devnet.url,
           "TRADEWIRE_PAPER__STARTING_BALANCES": json.dumps({"SOL": "5000", "USDC": "1000000"}), **env}
    return GatewayProcess(workdir, env=env).start()


@pytest.fixture(scope="module")
def exact_gateway(tmp_path_factory, devnet):
    """No price drift: a fill is exactly its quote, so results can be computed by hand."""
    process = market_gateway(tmp_path_factory, devnet, "exact", drift_bps_per_s=0)
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def volatile_gateway(tmp_path_factory, devnet):
    """A wild market (20 %/s drift) so that a zero-slippage trade fails on price."""
    process = market_gateway(tmp_path_factory, devnet, "volatile", drift_bps_per_s=2000)
    yield process
    assert process.stop() == 0


@pytest.fixture
async def grpc_client(exact_gateway):
    client = GrpcClient(exact_gateway.grpc_target)
    yield client
    await client.close()


def trade(input_mint=SOL, output_mint=USDC, amount="1", **kw) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=f"pm-{uuid.uuid4().hex[:12]}", mode=pb.TRADING_MODE_PAPER,
                           input_mint=input_mint, output_mint=output_mint, amount=amount,
                           slippage_bps=kw.pop("slippage_bps", 100), **kw)


async def test_fill_is_the_market_quote_for_the_exact_size(grpc_client, exact_gateway, devnet):
    result, _ = await grpc_client.unary("ExecuteTrade", trade(amount="3"), exact_gateway.key("alice"))
    quote = devnet.quote(SOL, USDC, 3 * 10**9)
    assert Decimal(result.amount_out) == Decimal(quote["outAmount"]) / 10**6
    assert result.quoted_amount_out == result.amount_out and result.realized_slippage_bps == 0


async def test_larger_orders_get_worse_prices(grpc_client, exact_gateway):
    prices, impacts = [], []
    for amount in ("1", "10", "100", "1000"):
        result, _ = await grpc_client.unary("ExecuteTrade", trade(amount=amount), exact_gateway.key("alice"))
        prices.append(Decimal(result.executed_price))
        impacts.append(Decimal(result.price_impact_pct))
    assert prices == sorted(prices, reverse=True) and len(set(prices)) == 4
    assert impacts == sorted(impacts) and len(set(impacts)) == 4


async def test_fees_are_itemised_and_sum_to_the_lamport(grpc_client, exact_gateway):
    request = trade(input_mint=USDC, output_mint=JUP, amount="10", mev_protection=pb.MevProtection(
        strategy=pb.MEV_STRATEGY_PRIORITY_FEE, compute_unit_price_micro_lamports=10_000,
        compute_unit_limit=300_000))
    result, _ = await grpc_client.unary("ExecuteTrade", request, exact_gateway.key("bob"))
    fees = result.fees
    assert fees.base_fee_lamports == 5_000
    assert fees.priority_fee_lamports == 3_000  # ceil(10,000 µlamports × 300,000 CU / 1e6)
    assert fees.jito_tip_lamports == 0
    assert fees.ata_rent_lamports == ATA_RENT  # bob never held JUP: the swap creates his account
    assert fees.total_lamports == 5_000 + 3_000 + ATA_RENT
    bundled, _ = await grpc_client.unary("ExecuteTrade", trade(
        input_mint=USDC, output_mint=JUP, amount="10",
        mev_protection=pb.MevProtection(strategy=pb.MEV_STRATEGY_JITO_BUNDLE, jito_tip_lamports=10_000)),
        exact_gateway.key("bob"))
    assert bundled.fees.ata_rent_lamports == 0  # the account exists now
    assert (bundled.fees.priority_fee_lamports, bundled.fees.jito_tip_lamports) == (0, 10_000)  # as LIVE pays
    assert bundled.fees.total_lamports == 5_000 + 10_000
    plain, _ = await grpc_client.unary("ExecuteTrade", trade(input_mint=USDC, output_mint=JUP, amount="10"),
                                       exact_gateway.key("bob"))
    assert plain.fees.total_lamports == 5_000


async def test_priority_fee_is_capped_by_the_request(grpc_client, exact_gateway):
    request = trade(amount="0.1", mev_protection=pb.MevProtection(
        strategy=pb.MEV_STRATEGY_PRIORITY_FEE, compute_unit_price_micro_lamports=1_000_000,
        compute_unit_limit=200_000, max_priority_fee_lamports=50_000))
    result, _ = await grpc_client.unary("ExecuteTrade", request, exact_gateway.key("alice"))
    assert result.fees.priority_fee_lamports == 50_000  # uncapped it would be 200,000


async def test_trade_larger_than_the_paper_balance_is_insufficient_funds(grpc_client, exact_gateway):
    before, _ = await grpc_client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER),
                                        exact_gateway.key("trader"))
    with pytest.raises(RpcFailure) as caught:
        await grpc_client.unary("ExecuteTrade", trade(amount="6000"), exact_gateway.key("trader"))
    assert caught.value.code == "FAILED_PRECONDITION" and caught.value.reason == "INSUFFICIENT_FUNDS"
    after, _ = await grpc_client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER),
                                       exact_gateway.key("trader"))
    assert [(p.mint, p.amount) for p in after.positions] == [(p.mint, p.amount) for p in before.positions]


@pytest.mark.parametrize("refusal", ["PRICE_IMPACT_TOO_HIGH", "INSUFFICIENT_FUNDS"])
async def test_a_trade_refused_on_its_quote_shows_the_quote_and_books_nothing(grpc_client, exact_gateway, devnet,
                                                                              refusal):
    key = exact_gateway.key("bob")
    request = trade(amount="50", max_price_impact_bps=1) if refusal == "PRICE_IMPACT_TOO_HIGH" \
        else trade(amount="6000")
    before, _ = await grpc_client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
    with pytest.raises(RpcFailure) as caught:
        await grpc_client.unary("ExecuteTrade", request, key)
    assert caught.value.code == "FAILED_PRECONDITION" and caught.value.reason == refusal

    stored, _ = await grpc_client.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
    quote = devnet.quote(SOL, USDC, int(Decimal(request.amount) * 10**9))
    assert stored.status == pb.TRADE_STATUS_REJECTED
    assert Decimal(stored.quoted_amount_out) == Decimal(quote["outAmount"]) / 10**6  # what it was refused on
    assert Decimal(stored.price_impact_pct) > 0 and stored.other_amount_threshold
    assert stored.amount_in == stored.amount_out == "" and not stored.HasField("fees")  # nothing was swapped
    after, _ = await grpc_client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
    assert [(p.mint, p.amount) for p in after.positions] == [(p.mint, p.amount) for p in before.positions]


async def test_slippage_failure_still_charges_fees(volatile_gateway):
    client = GrpcClient(volatile_gateway.grpc_target)
    key = volatile_gateway.key("alice")
    try:
        for _ in range(40):  # each zero-slippage trade fails with probability 1/2
            before, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mint=SOL), key)
            request = trade(amount="1", slippage_bps=0, mev_protection=pb.MevProtection(
                strategy=pb.MEV_STRATEGY_PRIORITY_FEE, compute_unit_price_micro_lamports=5_000,
                compute_unit_limit=200_000))
            try:
                await client.unary("ExecuteTrade", request, key)
                continue
            except RpcFailure as failure:
                assert failure.code == "ABORTED" and failure.reason == "SLIPPAGE_EXCEEDED"
            stored, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
            assert stored.status == pb.TRADE_STATUS_FAILED and stored.error.reason == "SLIPPAGE_EXCEEDED"
            assert stored.fees.base_fee_lamports == 5_000 and stored.fees.priority_fee_lamports == 1_000
            assert stored.fees.total_lamports == 6_000 and stored.amount_out == "0"
            # the message says by how much: what it would have bought against the least it had to
            would, least = re.search(r"would have bought ([0-9.]+) USDC, at least ([0-9.]+) required",
                                     stored.error.message).groups()
            assert Decimal(would) < Decimal(least) == Decimal(stored.other_amount_threshold), stored.error.message
            after, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mint=SOL), key)
            spent = Decimal(before.positions[0].amount) - Decimal(after.positions[0].amount)
            assert spent == Decimal("0.000006")  # only the fees; the swap itself rolled back
            return
        pytest.fail("no zero-slippage trade failed in 40 tries")
    finally:
        await client.close()


def _units(text: str, decimals: int) -> int:
    return int(Decimal(text).scaleb(decimals))


async def test_positions_and_pnl_match_a_hand_computation(exact_gateway, devnet):
    """Average-cost accounting, checked atomic unit by atomic unit.

    Starting wallet: 5,000 SOL and 1,000,000 USDC, valued at the market price then. The
    trades do not move the devnet's pools (paper), so the SOL price P stays constant.
    """
    client = GrpcClient(exact_gateway.grpc_target)
    key = exact_gateway.key("trader")  # a principal no other test here trades with
    try:
        price = int(devnet.quote(SOL, USDC, 10**9)["outAmount"])  # USDC atomic per 1 SOL
        sol = {"amount": 5000 * 10**9, "cost": 5000 * price, "realized": 0}
        usdc = {"amount": 1_000_000 * 10**6, "cost": 1_000_000 * 10**6, "realized": 0}

        def dispose(h, amount, proceeds):
            removed = h["cost"] * amount // h["amount"]
            h["amount"] -= amount
            h["cost"] -= removed
            h["realized"] += proceeds - removed

        # 1. sell 12.5 SOL for USDC
        r1, _ = await client.unary("ExecuteTrade", trade(amount="12.5"), key)
        out1 = _units(r1.amount_out, 6)
        dispose(sol, 12_500_000_000, out1)
        usdc["amount"] += out1
        usdc["cost"] += out1
        dispose(sol, r1.fees.total_lamports, 0)
        # 2. buy SOL with 3,000 USDC
        r2, _ = await client.unary("ExecuteTrade", trade(input_mint=USDC, output_mint=SOL, amount="3000"), key)
        out2 = _units(r2.amount_out, 9)
        dispose(usdc, 3_000 * 10**6, 3_000 * 10**6)
        sol["amount"] += out2
        sol["cost"] += 3_000 * 10**6
        dispose(sol, r2.fees.total_lamports, 0)
        # 3. sell 7 SOL exact-out for 1,000 USDC
        r3, _ = await client.unary("ExecuteTrade", trade(amount="1000", swap_mode=pb.SWAP_MODE_EXACT_OUT), key)
        in3 = _units(r3.amount_in, 9)
        dispose(sol, in3, 1_000 * 10**6)
        usdc["amount"] += 1_000 * 10**6
        usdc["cost"] += 1_000 * 10**6
        dispose(sol, r3.fees.total_lamports, 0)

        positions, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
        by_mint = {p.mint: p for p in positions.positions}
        for mint, expected, decimals in ((SOL, sol, 9), (USDC, usdc, 6)):
            p = by_mint[mint]
            assert _units(p.amount, decimals) == expected["amount"], mint
            assert _units(p.cost_basis, 6) == expected["cost"], mint
            assert _units(p.realized_pnl, 6) == expected["realized"], mint
        sol_position = by_mint[SOL]
        assert _units(sol_position.market_price, 6) == price
        market_value = sol["amount"] * price // 10**9
        assert _units(sol_position.market_value, 6) == market_value
        assert _units(sol_position.unrealized_pnl, 6) == market_value - sol["cost"]
    finally:
        await client.close()


async def test_positions_are_served_unvalued_while_the_quote_api_is_down(tmp_path):
    """Balances come from the store: an outage of the price source leaves them unvalued (saying
    why, out of the totals), where the call used to fail as a whole."""
    own_devnet = DevnetProcess(tmp_path / "devnet").start()
    gateway = market_gateway_at(tmp_path / "gw", own_devnet, TRADEWIRE_MARKET_DATA__VALUATION_CACHE_S="0")
    client = GrpcClient(gateway.grpc_target)
    try:
        key = gateway.key("trader")
        await client.unary("ExecuteTrade", trade(amount="2"), key)
        valued, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
        assert valued.unvalued_positions == 0
        assert all(p.market_value and not p.valuation_error for p in valued.positions)
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
        assert health.status == spb.SERVING_STATUS_SERVING

        own_devnet.stop()
        down, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER), key)
        by_mint = {p.mint: p for p in down.positions}
        assert by_mint[SOL].amount == {p.mint: p for p in valued.positions}[SOL].amount
        assert by_mint[SOL].valuation_error.startswith("UPSTREAM_UNAVAILABLE: quote API unreachable")
        assert (by_mint[SOL].market_price, by_mint[SOL].market_value, by_mint[SOL].unrealized_pnl) == ("", "", "")
        assert by_mint[SOL].cost_basis and by_mint[SOL].realized_pnl  # what the store knows is all there
        # USDC is the valuation mint itself: valued without asking anyone.
        assert by_mint[USDC].market_value and not by_mint[USDC].valuation_error
        assert down.unvalued_positions == 1
        assert _units(down.total_market_value, 6) == _units(by_mint[USDC].market_value, 6)
        # Paper trading cannot run without quotes: the service says it is degraded, and why.
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
        paper = next(c for c in health.components if c.name == "paper_executor")
        assert health.status == spb.SERVING_STATUS_DEGRADED
        assert paper.status == spb.SERVING_STATUS_NOT_SERVING and "quote API unreachable" in paper.message
        assert httpx.get(f"{gateway.http_url}/v1/health", timeout=10).status_code == 200  # still serving

        # The API comes back: health says so by itself, with no call needing a quote meanwhile.
        own_devnet = DevnetProcess(tmp_path / "devnet-again", port=own_devnet.port).start()

        async def serving() -> bool:
            health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
            return health.status == spb.SERVING_STATUS_SERVING
        await eventually(serving, what="health SERVING once the quote API answers", timeout=15)
        # one warning when the outage started, one when it ended (not one per refused call)
        warnings = [json.loads(line)["msg"] for line in gateway.log_text().splitlines()
                    if '"tradewire.quotes"' in line and '"warning"' in line]
        assert [w.split(":")[0] for w in warnings] == ["quote API unavailable", "quote API answers again"], warnings
    finally:
        await client.close()
        assert gateway.stop() == 0
        own_devnet.stop()
