"""History paging: 1,000 trades read 37 at a time return every trade once, newest first,
with filters applied — over gRPC, Connect and HTTP/JSON."""

import asyncio
import base64
import uuid

import pytest
from google.protobuf import timestamp_pb2

from support.clients import make_client
from support.gateway_process import GatewayProcess
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
TRADES = 1000
PAGE = 37


@pytest.fixture(scope="module")
async def history(tmp_path_factory):
    """A gateway holding 1,000 of alice's trades: two thirds SOL→USDC, one third USDC→JUP."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("history"), env={
        "TRADEWIRE_LIMITS__REQUESTS_PER_S": "100000", "TRADEWIRE_LIMITS__BURST": "100000",
        "TRADEWIRE_PAPER__STARTING_BALANCES": '{"SOL": "100000", "USDC": "10000000"}'}).start()
    client = make_client("grpc", gateway)
    run = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> pb.TradeResult:
        pair = (USDC, JUP) if i % 3 == 0 else (SOL, USDC)
        request = pb.TradeRequest(request_id=f"h{run}-{i:04d}", mode=pb.TRADING_MODE_PAPER, input_mint=pair[0],
                                  output_mint=pair[1], amount="0.01", slippage_bps=100)
        async with gate:
            result, _ = await client.unary("ExecuteTrade", request, gateway.key("alice"))
        return result

    results = await asyncio.gather(*(one(i) for i in range(TRADES)))
    await client.close()
    yield gateway, results
    assert gateway.stop() == 0


async def read_all(client, key: str, **filters) -> list[pb.TradeResult]:
    trades, token, pages = [], "", 0
    while True:
        page, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(
            page_size=PAGE, page_token=token, **filters), key)
        assert len(page.trades) <= PAGE
        trades += page.trades
        pages += 1
        token = page.next_page_token
        if not token:
            return trades
        assert len(page.trades) == PAGE  # only the last page may be short
        assert pages <= TRADES // PAGE + 2


def newest_first(trades: list[pb.TradeResult]) -> bool:
    stamps = [t.created_at.ToNanoseconds() for t in trades]
    return stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("protocol", ["grpc", "connect-json", "http"])
async def test_every_trade_once_in_order(history, protocol):
    gateway, results = history
    client = make_client(protocol, gateway)
    try:
        trades = await read_all(client, gateway.key("alice"))
        ids = [t.request_id for t in trades]
        assert len(ids) == TRADES and set(ids) == {r.request_id for r in results}
        assert newest_first(trades)

        jup = await read_all(client, gateway.key("alice"), mint=JUP)
        assert {t.request_id for t in jup} == {r.request_id for r in results if r.output_mint == JUP}
        assert newest_first(jup)

        filled = await read_all(client, gateway.key("alice"), statuses=[pb.TRADE_STATUS_FILLED],
                                mode=pb.TRADING_MODE_PAPER)
        assert len(filled) == TRADES

        middle = sorted(r.created_at.ToNanoseconds() for r in results)[TRADES // 2]
        start = timestamp_pb2.Timestamp()
        start.FromNanoseconds(middle)
        later = await read_all(client, gateway.key("alice"), start_time=start)
        assert {t.request_id for t in later} == {r.request_id for r in results
                                                 if r.created_at.ToNanoseconds() >= middle}
        assert not await read_all(client, gateway.key("bob"))  # another principal sees none of it
    finally:
        await client.close()


async def test_a_token_is_refused_with_other_filters(history):
    gateway, _ = history
    client = make_client("grpc", gateway)
    try:
        first, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=PAGE),
                                      gateway.key("alice"))
        with pytest.raises(Exception) as caught:
            await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(
                page_size=PAGE, page_token=first.next_page_token, mint=JUP), gateway.key("alice"))
        assert caught.value.code == "INVALID_ARGUMENT" and "page_token" in caught.value.fields
    finally:
        await client.close()


@pytest.mark.parametrize("cursor", ["99999999999999999999999", "\u00b2", "9223372036854775808"])
async def test_a_token_whose_cursor_was_tampered_with_is_refused_not_an_internal_error(history, cursor):
    gateway, _ = history
    client = make_client("grpc", gateway)
    try:
        first, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=PAGE),
                                      gateway.key("alice"))
        version, _, digest = base64.urlsafe_b64decode(first.next_page_token + "==").decode().split(":")
        forged = base64.urlsafe_b64encode(f"{version}:{cursor}:{digest}".encode()).decode().rstrip("=")
        with pytest.raises(Exception) as caught:
            await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=PAGE, page_token=forged),
                               gateway.key("alice"))
        assert caught.value.code == "INVALID_ARGUMENT" and "page_token" in caught.value.fields, caught.value
    finally:
        await client.close()
