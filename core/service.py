"""TradeExecutionService, transport-neutral: one method per RPC, named like the RPC.

Each takes a protobuf request and a CallContext and returns a protobuf response (an async
iterator for streams). The gateway's adapters call these and nothing else.

Every call is admitted by the pipeline and then, while the gateway shuts down, refused
with UNAVAILABLE (SHUTTING_DOWN) — HealthCheck excepted, which reports NOT_SERVING — so
the refusal is the same on every protocol.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from tradewire.core.auth.permissions import authorize
from tradewire.core.context import CallContext
from tradewire.core.errors import Code, FieldViolation, TradewireError, invalid, invalid_fields, nested_under
from tradewire.core.executors.base import Executor
from tradewire.core.lifecycle import is_terminal, now_timestamp, timestamp_of
from tradewire.core.market import Market, Mint, format_units
from tradewire.core.order import Order, mode_name
from tradewire.core.pipeline import CredentialWatch, Pipeline, recordable_trade_id, shutting_down
from tradewire.core.portfolio import Holding
from tradewire.core.quotes import QuoteSource
from tradewire.core.session import Session
from tradewire.core.store.base import HistoryQuery, TradeStore
from tradewire.core.trades import TradeRunner, ended_as, trade_error, trade_not_found
from tradewire.core.validation import timestamp_ns, validate_trade
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.service")

VERSION = "0.1.0"
DEFAULT_PAGE_SIZE = 50
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class ServiceOptions:
    """The service's knobs (core.config: streams, execution, limits.max_batch_items)."""

    heartbeat_s: float = HEARTBEAT_S
    await_trade_s: float = 10.0
    session_max_lag: int = 1024
    max_batch_items: int = 100
    batch_concurrency: int = 8


class TradeService:
    def __init__(self, pipeline: Pipeline, runner: TradeRunner, store: TradeStore, market: Market,
                 quotes: QuoteSource, executors: dict[int, Executor], options: ServiceOptions | None = None,
                 webhooks=None) -> None:
        self.pipeline = pipeline
        self.runner = runner
        self.store = store
        self.market = market
        self.quotes = quotes
        self.executors = executors
        self.options = options or ServiceOptions()
        self.webhooks = webhooks  # core.webhooks.WebhookDispatcher | None
        self.hub = runner.hub
        self.draining = False
        pipeline.is_draining = lambda: self.draining  # the pipeline refuses new calls right after the context

    # -- admission and shutdown ------------------------------------------------------------

    @asynccontextmanager
    async def _call(self, ctx: CallContext, request: object):
        """The pipeline (whose first step refuses new calls but HealthCheck while shutting down)."""
        async with self.pipeline.call(ctx, request) as call:
            yield call

    def begin_drain(self) -> None:
        """Shutdown, step 1: HealthCheck says NOT_SERVING and new calls are refused."""
        self.draining = True
        metrics = getattr(self.pipeline.recorder, "metrics", None)
        if metrics is not None:
            metrics.draining.set(1)

    def check_webhook(self, order: Order, prefix: str = "") -> None:
        if order.webhook_url:
            if self.webhooks is None:
                raise invalid(prefix + "webhook_url", "webhooks are not enabled on this gateway")
            self.webhooks.check_request_url(order.webhook_url, prefix + "webhook_url")

    # -- the RPCs ----------------------------------------------------------------------------

    async def ExecuteTrade(self, request: pb.TradeRequest, ctx: CallContext) -> pb.TradeResult:
        async with self._call(ctx, request) as call:
            order = call.orders[0]
            self.check_webhook(order)
            return await self.runner.execute(order, deadline=ctx.deadline)

    async def StreamExecutionStatus(self, request: spb.StreamExecutionStatusRequest,
                                    ctx: CallContext) -> AsyncIterator[pb.ExecutionStatus]:
        async with self._call(ctx, request):
            sub = self.hub.subscribe("status", ctx.principal.id)
            # (a trade that does not exist yet is awaited: with heartbeats meanwhile, as while it runs)
            events = self.hub.awaiting((ctx.principal.id, request.request_id), self.runner.events(
                ctx.principal.id, request.request_id, request.from_sequence, heartbeat_s=self.options.heartbeat_s,
                await_s=self.options.await_trade_s, subscription=sub), self.options.heartbeat_s, sub)
            credential = CredentialWatch(self.pipeline, ctx)
            ended, last_kind = "client_gone", 0
            try:
                async for event in events:
                    credential.check()  # a key revoked (a token expired) meanwhile ends the stream
                    last_kind = event.kind
                    yield event
                ended = "shutdown" if last_kind == pb.STATUS_KIND_SHUTDOWN else "completed"
            except TradewireError:
                ended = "error"
                raise
            finally:
                try:
                    await events.aclose()
                finally:  # (closing may wait, e.g. for the shared bus: a second cancellation must not skip this)
                    self.hub.unsubscribe(sub, ctx.cut_off_as() if ended == "client_gone" else ended)

    async def GetTrade(self, request: spb.GetTradeRequest, ctx: CallContext) -> pb.TradeResult:
        async with self._call(ctx, request):
            result = await self.runner.current(ctx.principal.id, request.request_id)
            if result is None:
                raise trade_not_found(request.request_id)
            return result

    async def GetTradeHistory(self, request: spb.GetTradeHistoryRequest,
                              ctx: CallContext) -> spb.GetTradeHistoryResponse:
        async with self._call(ctx, request):
            query = HistoryQuery(
                mode=request.mode,
                mint=request.mint,
                statuses=tuple(sorted(set(request.statuses))),
                start_ns=timestamp_ns(request, "start_time"),
                end_ns=timestamp_ns(request, "end_time"),
            )
            owner = ctx.principal.id
            after = _decode_page_token(request.page_token, query, owner) if request.page_token else None
            page = self.store.history(owner, _as_stored(query), request.page_size or DEFAULT_PAGE_SIZE, after)
            token = _encode_page_token(page.last_cursor, query, owner) if page.last_cursor is not None else ""
            # A running trade is stored only at its claim, point of no return and end: show it as it is.
            trades = [t if is_terminal(t.status)
                      else await self.runner.current(ctx.principal.id, t.request_id) or t for t in page.trades]
            if query.statuses:  # on the status it is at now, not the one stored
                trades = [t for t in trades if t.status in query.statuses]
            return spb.GetTradeHistoryResponse(trades=trades, next_page_token=token)

    async def GetPositions(self, request: spb.GetPositionsRequest, ctx: CallContext) -> spb.GetPositionsResponse:
        async with self._call(ctx, request):
            valuation = self.market.valuation
            modes = [request.mode] if request.mode else [pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE]
            positions, total_value, total_pnl, unvalued = [], 0, 0, 0
            source_down: TradewireError | None = None  # once the price source is down, not asked again
            paper = self.executors.get(pb.TRADING_MODE_PAPER)
            for mode in modes:
                holdings = (await paper.wallet(ctx.principal.id) if mode == pb.TRADING_MODE_PAPER and paper
                            else self.store.holdings(ctx.principal.id, mode))
                changed_ns = self.store.holdings_changed_ns(ctx.principal.id, mode) if holdings else {}
                for mint_address, holding in sorted(holdings.items()):
                    if request.mint and mint_address != request.mint:
                        continue
                    if holding.amount == 0 and holding.realized_pnl == 0:
                        continue
                    mint = self.market.find(mint_address)
                    if mint is None:  # (bought before the operator took it off the market)
                        positions.append(_unlisted_position(mode, mint_address, holding, valuation.decimals,
                                                            changed_ns.get(mint_address)))
                        unvalued += 1
                        continue
                    average = (Decimal(holding.cost_basis) / Decimal(holding.amount).scaleb(-mint.decimals)
                               if holding.amount else Decimal(0))
                    position = spb.Position(
                        mode=mode, mint=mint_address, symbol=mint.symbol,
                        amount=mint.to_units(holding.amount) if holding.amount else "0",
                        average_cost=_val(_to_token_precision(average, mint), valuation.decimals),
                        cost_basis=_val(holding.cost_basis, valuation.decimals),
                        realized_pnl=_val(holding.realized_pnl, valuation.decimals),
                        updated_at=_timestamp(changed_ns.get(mint_address)),
                    )
                    positions.append(position)
                    # Balances are the store's and always shown; their valuation needs the price
                    # source, whose outage leaves the position unvalued rather than failing the call.
                    try:
                        if source_down is not None:
                            raise source_down
                        unit_price = await self._unit_price(mint)
                        value = await self.quotes.value(mint, holding.amount)
                    except TradewireError as exc:
                        if exc.code == Code.UNAVAILABLE:
                            source_down = exc
                        position.valuation_error = f"{exc.reason}: {exc.message}"
                        unvalued += 1
                        continue
                    unrealized = value - holding.cost_basis
                    position.market_price = _val(unit_price, valuation.decimals)
                    position.market_value = _val(value, valuation.decimals)
                    position.unrealized_pnl = _val(unrealized, valuation.decimals)
                    total_value += value
                    total_pnl += holding.realized_pnl + unrealized
            return spb.GetPositionsResponse(
                positions=positions, valuation_mint=valuation.address,
                total_market_value=_val(total_value, valuation.decimals),
                total_pnl=_val(total_pnl, valuation.decimals), unvalued_positions=unvalued,
            )

    async def _unit_price(self, mint: Mint) -> Decimal:
        """Valuation atomic units per whole token, to the token's own precision: valued as a lot
        of 10^decimals whole tokens (a cheap token's whole-token value is a few atomic units,
        and amount × a price rounded to them is far from its value)."""
        lot = 10 ** mint.decimals
        return Decimal(await self.quotes.value(mint, lot * 10 ** mint.decimals)) / lot

    async def GetMarket(self, request: spb.GetMarketRequest, ctx: CallContext) -> spb.GetMarketResponse:
        async with self._call(ctx, request):
            market = self.market
            return spb.GetMarketResponse(
                mints=[spb.MarketMint(symbol=m.symbol, address=m.address, decimals=m.decimals,
                                      min_amount=m.to_units(m.min_atomic), max_amount=m.to_units(m.max_atomic))
                       for m in market.mints()],
                pairs=[spb.MarketPair(base_mint=base.address, quote_mint=quote.address) for base, quote in market.pairs()],
                valuation_mint=market.valuation.address,
            )

    async def HealthCheck(self, request: spb.HealthCheckRequest, ctx: CallContext) -> spb.HealthCheckResponse:
        async with self._call(ctx, request):
            serving, not_serving = spb.SERVING_STATUS_SERVING, spb.SERVING_STATUS_NOT_SERVING
            # What each component says (load figures, replica ids, upstream errors) is for callers
            # with credentials; an anonymous probe (a load balancer) gets each one's status only.
            identified = ctx.principal is not None
            store_ok, store_kind = self.store.health()
            components = [spb.ComponentHealth(name="store", status=serving if store_ok else not_serving,
                                              message=store_kind if identified else "")]
            impaired = False  # a configured executor that cannot trade now: the service is DEGRADED
            for mode, name in ((pb.TRADING_MODE_PAPER, "paper_executor"), (pb.TRADING_MODE_LIVE, "live_executor")):
                executor = self.executors.get(mode)
                if executor is None:
                    components.append(spb.ComponentHealth(name=name, status=not_serving,
                                                          message="not configured" if identified else ""))
                else:
                    health = executor.health()
                    impaired = impaired or not health.ok
                    components.append(spb.ComponentHealth(
                        name=name, message=health.message if identified else "",
                        status=serving if health.ok else not_serving))
            inflight = self.runner.inflight
            running = len(inflight)
            components.append(spb.ComponentHealth(
                name="in_flight", status=spb.SERVING_STATUS_DEGRADED if running >= inflight.max_total else serving,
                message=f"{running} trades running (limits: {inflight.max_per_principal} per caller, "
                        f"{inflight.max_total} in total)" if identified else ""))
            components.append(spb.ComponentHealth(
                name="streams", status=serving, message=f"{self.hub.open_streams} open streams" if identified else ""))
            if self.webhooks is not None:
                counts = self.store.outbox_counts() if store_ok else None
                components.append(spb.ComponentHealth(
                    name="webhooks", status=serving if counts is not None else not_serving,
                    message="outbox unknown: the store does not answer" if counts is None
                    else f"{counts.get('pending', 0)} pending, {counts.get('dead', 0)} dead-lettered" if identified
                    else ""))
            recorder = self.pipeline.recorder
            if recorder.audit_enabled:  # a backend that takes no rows loses none (they are spooled): DEGRADED
                audit_ok, audit_state = recorder.audit.health()
                impaired = impaired or not audit_ok
                components.append(spb.ComponentHealth(
                    name="audit", status=serving if audit_ok else spb.SERVING_STATUS_DEGRADED,
                    message=audit_state if identified else ""))
            if self.draining:
                components.append(spb.ComponentHealth(name="server", status=not_serving,
                                                      message="shutting down: no new calls"))
            status = (not_serving if self.draining or not store_ok
                      else spb.SERVING_STATUS_DEGRADED if impaired else serving)
            response = spb.HealthCheckResponse(status=status, components=components, version=VERSION,
                                               server_time=now_timestamp(), credentials_refused=ctx.credentials_refused)
            if ctx.principal is not None and store_ok:  # (its bucket is in the store)
                decision = self.pipeline.limits.principal.peek(f"principal:{ctx.principal.id}")
                response.caller.CopyFrom(spb.CallerStatus(
                    principal=ctx.principal.label, owner=ctx.principal.id, scopes=sorted(ctx.principal.scopes),
                    # (the peek says what one more call would leave: this call's caller has that call)
                    rate_limit_remaining=decision.remaining + 1 if decision.allowed else 0,
                    rate_limit_limit=int(decision.limit),
                    in_flight=self.runner.in_flight(ctx.principal.id)))
            return response

    async def CancelTrade(self, request: spb.CancelTradeRequest, ctx: CallContext) -> spb.CancelTradeResponse:
        async with self._call(ctx, request):
            result = await self.runner.cancel(ctx.principal.id, request.request_id, request.reason,
                                              self.cancel_scope(ctx))
            return spb.CancelTradeResponse(request_id=request.request_id, status=result.status)

    @staticmethod
    def cancel_scope(ctx: CallContext) -> Callable[[int], None]:
        """Cancelling a trade takes the scope trading in its mode takes: a paper key stops no
        LIVE trade (the call's own check knew no mode, so it applied PAPER's)."""
        return lambda mode: authorize(ctx.principal, "CancelTrade", mode_name(mode))

    async def ExecuteTradeBatch(self, request: spb.ExecuteTradeBatchRequest,
                                ctx: CallContext) -> spb.ExecuteTradeBatchResponse:
        # The pipeline admits the call (authentication, the scope of its strictest mode — so a
        # missing one costs no rate-limit token —, rate limit, the item count); the items are
        # validated here one by one, so one bad item does not sink the others.
        async with self._call(ctx, request):
            items = list(request.trades)
            limit = self.options.max_batch_items
            if len(items) > limit:
                raise invalid("trades", f"at most {limit} trades per batch")
            principal = ctx.principal
            outcomes: list[Order | TradewireError] = []
            first_index: dict[str, int] = {}
            for i, item in enumerate(items):
                prefix = f"trades[{i}]."
                try:
                    if item.request_id and item.request_id in first_index:
                        raise invalid(prefix + "request_id",
                                      f"duplicates trades[{first_index[item.request_id]}].request_id")
                    order = validate_trade(item, principal.id, self.market, prefix)
                    self.check_webhook(order, prefix)
                    outcomes.append(order)
                except TradewireError as exc:
                    outcomes.append(exc)
                first_index.setdefault(item.request_id, i)
            refused = [o for o in outcomes if isinstance(o, TradewireError)]
            if request.atomic_validation and refused:
                raise invalid_fields(v for err in refused for v in (
                    err.field_violations or (FieldViolation("trades", err.message),)))
            results: list[spb.BatchItemResult | None] = [None] * len(items)
            slots = asyncio.Semaphore(self.options.batch_concurrency)
            metrics = getattr(self.pipeline.recorder, "metrics", None)
            taken_up = time.monotonic()

            def answer(index: int, outcome: pb.TradeResult | TradewireError, started: float) -> None:
                if isinstance(outcome, TradewireError):
                    results[index] = spb.BatchItemResult(index=index, error=trade_error(outcome))
                    recorded = (outcome.code, outcome.reason)
                else:
                    results[index] = spb.BatchItemResult(index=index, result=outcome)
                    recorded = ended_as(outcome)
                self.record_item(ctx, "trades", items[index].request_id, recorded, started)

            async def run(index: int, order: Order) -> None:
                async with slots:
                    started = time.monotonic()
                    try:
                        if self.draining:  # (an item still waiting for a slot is not started by a gateway
                            raise shutting_down()  # that shuts down: the drain would not wait for it)
                        # each trade takes what an ExecuteTrade would: a batch is no way around the limits
                        self.pipeline.limit_trade(principal.id, order.mode, ctx.response_headers)
                        result = await self.runner.result_of(order, ctx.deadline)
                    except TradewireError as exc:  # (its fields named inside the batch, as validation's are)
                        answer(index, nested_under(f"trades[{index}].", exc), started)
                    except Exception as exc:  # (the store not answering, a fault): this item's, not the batch's
                        answer(index, self.pipeline.caller_error(ctx, exc), started)
                    else:
                        answer(index, result, started)

            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, TradewireError):
                    answer(index, outcome, taken_up)
            await asyncio.gather(*(run(i, o) for i, o in enumerate(outcomes) if isinstance(o, Order)))
            if metrics is not None:
                ran = sum(1 for r in results if r is not None and r.HasField("result"))
                metrics.batch_items.labels("ran").inc(ran)
                metrics.batch_items.labels("refused").inc(len(results) - ran)
            return spb.ExecuteTradeBatchResponse(results=results)

    def record_item(self, ctx: CallContext, part: str, request_id: str, outcome: tuple[Code, str],
                     started: float) -> None:
        """A batch item's or a session message's own record (Recorder.item_finished): ``outcome``
        is (code, reason), as an ExecuteTrade of it would have been recorded."""
        self.pipeline.recorder.item_finished(ctx, part, recordable_trade_id(request_id), *outcome, started)

    async def TradeSession(self, requests: AsyncIterator[spb.TradeSessionRequest],
                           ctx: CallContext) -> AsyncIterator[spb.TradeSessionResponse]:
        async with self._call(ctx, None):  # the PAPER scope to open; each trade is authorized by its mode
            # (closed with the call, not when collected: its reader and followers stop at once)
            async with aclosing(Session(self, ctx, requests).run()) as responses:
                async for response in responses:
                    yield response


def _to_token_precision(per_whole_token: Decimal, mint: Mint) -> Decimal:
    """A price in valuation atomic units per whole token, rounded to one per atomic unit of the token."""
    return per_whole_token.quantize(Decimal(1).scaleb(-mint.decimals))


def _unlisted_position(mode: int, mint_address: str, holding: Holding, valuation_decimals: int,
                       changed_ns: int | None) -> spb.Position:
    """A position in a mint this gateway's market no longer lists: still the caller's, but
    neither its decimals (for the amount) nor a price are known here. (Listing it keeps the
    caller's other positions served: the whole call failed UNSUPPORTED_PAIR.)"""
    return spb.Position(
        mode=mode, mint=mint_address, cost_basis=_val(holding.cost_basis, valuation_decimals),
        realized_pnl=_val(holding.realized_pnl, valuation_decimals), updated_at=_timestamp(changed_ns),
        valuation_error=f"MINT_NOT_LISTED: mint {mint_address} is no longer in this gateway's market; it holds "
                        f"{holding.amount} of the mint's smallest units")


def _timestamp(ns: int | None) -> Timestamp | None:
    """A position's updated_at: unset when the store does not know when its holding changed."""
    return None if ns is None else timestamp_of(ns)


def _val(atomic: int | Decimal, decimals: int) -> str:
    return format_units(Decimal(atomic).scaleb(-decimals))


_NOT_TERMINAL = tuple(s for s in pb.TradeStatus.values() if not is_terminal(s))


def _as_stored(query: HistoryQuery) -> HistoryQuery:
    """The store query behind ``query``: a running trade's stored status lags the one it is at
    (it is saved at its claim, point of no return and end), so filtering on any running status
    reads every running trade and the caller filters on their current status."""
    if not query.statuses or all(is_terminal(s) for s in query.statuses):
        return query
    return dataclasses.replace(query, statuses=tuple(sorted(set(query.statuses) | set(_NOT_TERMINAL))))


def _filter_digest(query: HistoryQuery, owner: str) -> str:
    """Whose query and which: a token fits only the caller and the filters it was given for."""
    return hashlib.sha256(repr((owner, query)).encode()).hexdigest()[:16]


def _encode_page_token(cursor: int, query: HistoryQuery, owner: str) -> str:
    return base64.urlsafe_b64encode(f"2:{cursor}:{_filter_digest(query, owner)}".encode()).decode().rstrip("=")


_CURSOR = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit() takes "²" too)


def _decode_page_token(token: str, query: HistoryQuery, owner: str) -> int:
    bad = TradewireError("VALIDATION_FAILED", "page_token: not a token from this query",
                         field_violations=(FieldViolation("page_token", "not a token from this query"),))
    try:
        version, cursor, digest = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if version != "2" or digest != _filter_digest(query, owner) or not _CURSOR.fullmatch(cursor) or int(cursor) >= 2**63:
        raise bad  # (a cursor is a stored row's position: a non-negative signed 64-bit integer)
    return int(cursor)
