"""TradeExecutionService, transport-neutral: one method per RPC, named like the RPC.

Each takes a protobuf request and a CallContext and returns a protobuf response (an async
iterator for streams). The gateway's adapters call these and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal

from tradewire.core.errors import FieldViolation, TradewireError
from tradewire.core.executors.base import Executor
from tradewire.core.lifecycle import now_timestamp
from tradewire.core.market import Market, format_units
from tradewire.core.pipeline import Pipeline
from tradewire.core.quotes import QuoteSource
from tradewire.core.store.base import HistoryQuery, TradeStore
from tradewire.core.trades import TradeRunner, trade_not_found
from tradewire.core.context import CallContext
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

VERSION = "0.1.0"
DEFAULT_PAGE_SIZE = 50
HEARTBEAT_S = 15.0


class TradeService:
    def __init__(self, pipeline: Pipeline, runner: TradeRunner, store: TradeStore, market: Market,
                 quotes: QuoteSource, executors: dict[int, Executor]) -> None:
        self.pipeline = pipeline
        self.runner = runner
        self.store = store
        self.market = market
        self.quotes = quotes
        self.executors = executors

    async def ExecuteTrade(self, request: pb.TradeRequest, ctx: CallContext) -> pb.TradeResult:
        async with self.pipeline.call(ctx, request) as call:
            return await self.runner.execute(call.orders[0])

    async def StreamExecutionStatus(self, request: spb.StreamExecutionStatusRequest,
                                    ctx: CallContext) -> AsyncIterator[pb.ExecutionStatus]:
        async with self.pipeline.call(ctx, request):
            events = self.runner.events(ctx.principal.id, request.request_id, request.from_sequence)
            metrics = self.pipeline.recorder.metrics
            metrics.stream_subscribers.inc()
            try:
                async for event in events:
                    yield event
            finally:
                metrics.stream_subscribers.dec()
                await events.aclose()

    async def GetTrade(self, request: spb.GetTradeRequest, ctx: CallContext) -> pb.TradeResult:
        async with self.pipeline.call(ctx, request):
            result = self.runner.current(ctx.principal.id, request.request_id)
            if result is None:
                raise trade_not_found(request.request_id)
            return result

    async def GetTradeHistory(self, request: spb.GetTradeHistoryRequest,
                              ctx: CallContext) -> spb.GetTradeHistoryResponse:
        async with self.pipeline.call(ctx, request):
            query = HistoryQuery(
                mode=request.mode,
                mint=request.mint,
                statuses=tuple(sorted(set(request.statuses))),
                start_ns=request.start_time.ToNanoseconds() if request.HasField("start_time") else None,
                end_ns=request.end_time.ToNanoseconds() if request.HasField("end_time") else None,
            )
            after = _decode_page_token(request.page_token, query) if request.page_token else None
            page = self.store.history(ctx.principal.id, query, request.page_size or DEFAULT_PAGE_SIZE, after)
            token = _encode_page_token(page.last_cursor, query) if page.last_cursor is not None else ""
            return spb.GetTradeHistoryResponse(trades=page.trades, next_page_token=token)

    async def GetPositions(self, request: spb.GetPositionsRequest, ctx: CallContext) -> spb.GetPositionsResponse:
        async with self.pipeline.call(ctx, request):
            valuation = self.market.valuation
            modes = [request.mode] if request.mode else [pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE]
            positions, total_value, total_pnl = [], 0, 0
            for mode in modes:
                paper = self.executors.get(pb.TRADING_MODE_PAPER)
                if mode == pb.TRADING_MODE_PAPER and paper is not None:
                    self.store.ensure_wallet(ctx.principal.id, mode, await paper.starting_wallet())
                for mint_address, holding in sorted(self.store.holdings(ctx.principal.id, mode).items()):
                    if request.mint and mint_address != request.mint:
                        continue
                    if holding.amount == 0 and holding.realized_pnl == 0:
                        continue
                    mint = self.market.mint(mint_address, "mint")
                    unit_price = await self.quotes.value(mint, 10 ** mint.decimals)
                    value = await self.quotes.value(mint, holding.amount)
                    unrealized = value - holding.cost_basis
                    average = (Decimal(holding.cost_basis) / Decimal(holding.amount).scaleb(-mint.decimals)
                               if holding.amount else Decimal(0))
                    positions.append(spb.Position(
                        mode=mode, mint=mint_address, symbol=mint.symbol,
                        amount=mint.to_units(holding.amount) if holding.amount else "0",
                        average_cost=_val(average.quantize(Decimal(1)), valuation.decimals),
                        cost_basis=_val(holding.cost_basis, valuation.decimals),
                        market_price=_val(unit_price, valuation.decimals),
                        market_value=_val(value, valuation.decimals),
                        realized_pnl=_val(holding.realized_pnl, valuation.decimals),
                        unrealized_pnl=_val(unrealized, valuation.decimals),
                        updated_at=now_timestamp(),
                    ))
                    total_value += value
                    total_pnl += holding.realized_pnl + unrealized
            return spb.GetPositionsResponse(
                positions=positions, valuation_mint=valuation.address,
                total_market_value=_val(total_value, valuation.decimals),
                total_pnl=_val(total_pnl, valuation.decimals),
            )

    async def HealthCheck(self, request: spb.HealthCheckRequest, ctx: CallContext) -> spb.HealthCheckResponse:
        async with self.pipeline.call(ctx, request):
            components = [spb.ComponentHealth(name="store", status=spb.SERVING_STATUS_SERVING, message="sqlite")]
            for mode, name in ((pb.TRADING_MODE_PAPER, "paper_executor"), (pb.TRADING_MODE_LIVE, "live_executor")):
                executor = self.executors.get(mode)
                if executor is None:
                    components.append(spb.ComponentHealth(name=name, status=spb.SERVING_STATUS_NOT_SERVING,
                                                          message="not configured"))
                else:
                    health = executor.health()
                    components.append(spb.ComponentHealth(
                        name=name, message=health.message,
                        status=spb.SERVING_STATUS_SERVING if health.ok else spb.SERVING_STATUS_NOT_SERVING))
            response = spb.HealthCheckResponse(status=spb.SERVING_STATUS_SERVING, components=components,
                                               version=VERSION, server_time=now_timestamp())
            if ctx.principal is not None:
                decision = self.pipeline.limits.principal.peek(f"principal:{ctx.principal.id}")
                response.caller.CopyFrom(spb.CallerStatus(
                    principal=ctx.principal.label, scopes=sorted(ctx.principal.scopes),
                    rate_limit_remaining=int(decision.remaining), rate_limit_limit=int(decision.limit),
                    in_flight=self.runner.in_flight()))
            return response

    async def CancelTrade(self, request: spb.CancelTradeRequest, ctx: CallContext) -> spb.CancelTradeResponse:
        async with self.pipeline.call(ctx, request):
            raise _not_yet("CancelTrade")

    async def ExecuteTradeBatch(self, request: spb.ExecuteTradeBatchRequest,
                                ctx: CallContext) -> spb.ExecuteTradeBatchResponse:
        async with self.pipeline.call(ctx, request):
            raise _not_yet("ExecuteTradeBatch")

    async def TradeSession(self, requests: AsyncIterator[spb.TradeSessionRequest],
                           ctx: CallContext) -> AsyncIterator[spb.TradeSessionResponse]:
        async with self.pipeline.call(ctx, None):
            raise _not_yet("TradeSession")
            yield  # pragma: no cover - makes this an async generator like the other streams


def _not_yet(method: str) -> TradewireError:
    return TradewireError("UNIMPLEMENTED", f"{method} is part of the contract but not implemented yet")


def _val(atomic: int | Decimal, decimals: int) -> str:
    return format_units(Decimal(atomic).scaleb(-decimals))


def _filter_digest(query: HistoryQuery) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def _encode_page_token(cursor: int, query: HistoryQuery) -> str:
    return base64.urlsafe_b64encode(f"1:{cursor}:{_filter_digest(query)}".encode()).decode().rstrip("=")


def _decode_page_token(token: str, query: HistoryQuery) -> int:
    bad = TradewireError("VALIDATION_FAILED", "page_token: not a token from this query",
                         field_violations=(FieldViolation("page_token", "invalid or from a different query"),))
    try:
        version, cursor, digest = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if version != "1" or digest != _filter_digest(query) or not cursor.isdigit():
        raise bad
    return int(cursor)
