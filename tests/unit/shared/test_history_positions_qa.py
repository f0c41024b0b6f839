"""History and positions as a caller relies on them, on both stores (SQLite and Redis): pages
that hold every trade once while trades keep landing, newest first — a trade that runs again
included —, time bounds anywhere in the contract's range, page tokens that only fit their own
query, and average-cost books through buys, partial sells, sells to zero and re-buys."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import pytest
import redis
from google.protobuf import timestamp_pb2

from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance
from tradewire.core.retry import RetryPolicy
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.base import HistoryQuery
from tradewire.core.store.retention import FillIdRetention
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb
from unit.lifecycle.lifecycle_support import FILLS, ScriptedExecutor, order, runner

PAPER, LIVE = pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
REDIS_DB = 13  # (7–11 are other tests')
KEY = "tw_histqa01_" + "h" * 40
YEAR_1_NS = -62_135_596_800 * 10**9  # 0001-01-01T00:00:00Z, the contract's earliest timestamp
YEAR_9999_NS = 253_402_300_799 * 10**9  # 9999-12-31T23:59:59Z, its latest


def redis_url(redis_server) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / "trades.db")
        yield made
        made.close()
        return
    client = redis.Redis.from_url(redis_url(request.getfixturevalue("redis_server")))
    client.flushdb()
    yield RedisTradeStore(client, "replica-qa")
    client.close()


def someone() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def result(request_id: str, status: int = pb.TRADE_STATUS_UNSPECIFIED, created_ns: int = 0, mode: int = PAPER,
           reason: str = "") -> pb.TradeResult:
    made = pb.TradeResult(request_id=request_id, trade_id=uuid.uuid4().hex, mode=mode, status=status,
                          input_mint=SOL, output_mint=USDC)
    made.created_at.FromNanoseconds(created_ns)
    if reason:
        made.error.reason = reason
    return made


def land(store, principal: str, request_id: str, created_ns: int, status: int = pb.TRADE_STATUS_FILLED,
         reason: str = "") -> None:
    """Claim a trade and store its end."""
    assert store.claim(principal, request_id, "fp", result(request_id, created_ns=created_ns)) is None
    store.save(principal, result(request_id, status, created_ns, reason=reason))


def ids(page) -> list[str]:
    return [t.request_id for t in page.trades]


def read_all(store, principal: str, query: HistoryQuery, limit: int, between_pages=lambda: None) -> list[str]:
    seen, after = [], None
    while True:
        page = store.history(principal, query, limit, after)
        assert len(page.trades) <= limit
        seen += ids(page)
        if page.last_cursor is None:
            return seen
        assert len(page.trades) == limit  # only the last page may be short
        after = page.last_cursor
        between_pages()


# -- history on the store ------------------------------------------------------------------


def test_a_trade_that_runs_again_is_listed_first_as_its_new_created_at_says(store):
    who = someone()
    land(store, who, "dropped", 1_000, pb.TRADE_STATUS_CANCELLED, reason="CANCELLED")  # its caller went away
    land(store, who, "later", 2_000)
    # The retry (same payload) runs it again, as a new trade: a new id, a new created_at.
    assert store.claim(who, "dropped", "fp", result("dropped", created_ns=3_000)) is None
    store.save(who, result("dropped", pb.TRADE_STATUS_FILLED, 3_000))

    page = store.history(who, HistoryQuery(), 10, None)
    assert ids(page) == ["dropped", "later"]  # newest first (it was listed after "later")
    assert [t.created_at.ToNanoseconds() for t in page.trades] == [3_000, 2_000]
    assert read_all(store, who, HistoryQuery(), 1) == ["dropped", "later"]  # once each, page by page
    assert ids(store.history(who, HistoryQuery(start_ns=2_500), 10, None)) == ["dropped"]


def test_a_trade_that_does_not_run_again_keeps_its_place(store):
    who = someone()
    land(store, who, "cancelled", 1_000, pb.TRADE_STATUS_CANCELLED, reason="TRADE_CANCELLED")  # CancelTrade: final
    land(store, who, "later", 2_000)
    existing = store.claim(who, "cancelled", "fp", result("cancelled", created_ns=3_000))
    assert existing is not None and existing.result.status == pb.TRADE_STATUS_CANCELLED
    assert ids(store.history(who, HistoryQuery(), 10, None)) == ["later", "cancelled"]


@pytest.mark.parametrize(("start_ns", "end_ns", "expected"), [
    (YEAR_1_NS, None, ["b", "a"]),
    (None, YEAR_9999_NS, ["b", "a"]),
    (YEAR_1_NS, YEAR_9999_NS, ["b", "a"]),
    (YEAR_9999_NS - 1, None, []),
    (None, YEAR_1_NS + 1, []),
    (1_000, 2_000, ["a"]),  # from start_time included, to end_time excluded
    (1_001, 2_001, ["b"]),
])
def test_time_bounds_anywhere_in_the_contracts_range_select_as_documented(store, start_ns, end_ns, expected):
    who = someone()
    land(store, who, "a", 1_000)
    land(store, who, "b", 2_000)
    assert ids(store.history(who, HistoryQuery(start_ns=start_ns, end_ns=end_ns), 10, None)) == expected


@pytest.mark.parametrize("limit", [0, -1])
def test_a_page_holds_at_least_one_trade(store, limit):
    who = someone()
    land(store, who, "a", 1_000)
    land(store, who, "b", 2_000)
    with pytest.raises(ValueError):
        store.history(who, HistoryQuery(), limit, None)


def test_pages_read_while_trades_keep_landing_hold_every_earlier_trade_once_newest_first(store):
    who = someone()
    for i in range(23):
        land(store, who, f"t{i:02d}", 1_000 + i, pb.TRADE_STATUS_FILLED if i % 3 else pb.TRADE_STATUS_FAILED)
    landed = iter(range(100, 200))

    def more_trades():  # two more land between every two pages
        for _ in range(2):
            i = next(landed)
            land(store, who, f"t{i}", 1_000 + i)

    seen = read_all(store, who, HistoryQuery(), 4, more_trades)
    assert seen == [f"t{i:02d}" for i in reversed(range(23))]
    failed = read_all(store, who, HistoryQuery(statuses=(pb.TRADE_STATUS_FAILED,)), 2, more_trades)
    assert failed == [f"t{i:02d}" for i in reversed(range(0, 23, 3))]


def test_trades_landing_in_the_same_nanosecond_are_each_listed_once(store):
    who = someone()
    for i in range(9):
        land(store, who, f"same-{i}", 5_000)
    assert read_all(store, who, HistoryQuery(), 2) == [f"same-{i}" for i in reversed(range(9))]
    assert read_all(store, who, HistoryQuery(start_ns=5_000, end_ns=5_001), 4) == \
        [f"same-{i}" for i in reversed(range(9))]


def test_one_caller_never_reads_another_callers_history(store):
    alice, bob = someone(), someone()
    land(store, alice, "shared-id", 1_000)
    land(store, alice, "alice-only", 2_000)
    assert store.history(bob, HistoryQuery(), 10, None).trades == []
    assert store.get(bob, "shared-id") is None
    land(store, bob, "shared-id", 3_000, pb.TRADE_STATUS_REJECTED)  # the same request id is bob's own trade
    assert [t.status for t in store.history(bob, HistoryQuery(), 10, None).trades] == [pb.TRADE_STATUS_REJECTED]
    assert ids(store.history(alice, HistoryQuery(), 10, None)) == ["alice-only", "shared-id"]


# -- a trade that runs again, through the runner -----------------------------------------------


async def test_a_retried_trade_tops_the_history_once_it_fills(store):
    refused = [pb.TRADE_STATUS_QUOTED, TradewireError("UPSTREAM_UNAVAILABLE", "quote API down")]
    trades = runner(ScriptedExecutor(refused, FILLS, FILLS), store, RetryPolicy(max_attempts=1))
    who = someone()
    with pytest.raises(TradewireError):  # REJECTED, UNAVAILABLE: nothing was sent, the caller may retry
        await trades.execute(order("first", who))
    await trades.execute(order("second", who))
    retried = await trades.execute(order("first", who))  # the same request id and payload runs again
    assert retried.status == pb.TRADE_STATUS_FILLED
    page = store.history(who, HistoryQuery(), 1, None)
    assert ids(page) == ["first"] and page.trades[0].trade_id == retried.trade_id
    assert ids(store.history(who, HistoryQuery(), 10, None)) == ["first", "second"]


# -- through the service (the embedded store: the default) ------------------------------------


def _stamp(ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "hana", paper={"latency_ms": 0, "drift_bps_per_s": "0"}) as made:
        for i in range(5):
            filled = await made.service.ExecuteTrade(pb.TradeRequest(
                request_id=f"h-{i}", mode=PAPER, input_mint=SOL, output_mint=USDC, amount="0.1", slippage_bps=100),
                call_with_key(KEY, "ExecuteTrade"))
            assert filled.status == pb.TRADE_STATUS_FILLED
        yield made


async def history(core, **fields) -> spb.GetTradeHistoryResponse:
    return await core.service.GetTradeHistory(spb.GetTradeHistoryRequest(**fields),
                                              call_with_key(KEY, "GetTradeHistory"))


@pytest.mark.parametrize("bounds", [
    {"end_time": _stamp(YEAR_9999_NS)},
    {"start_time": _stamp(YEAR_1_NS)},
    {"start_time": _stamp(YEAR_1_NS), "end_time": _stamp(YEAR_9999_NS)},
])
async def test_an_open_ended_time_range_lists_every_trade_not_an_internal_error(core, bounds):
    answer = await history(core, **bounds)
    assert [t.request_id for t in answer.trades] == [f"h-{i}" for i in reversed(range(5))]


async def test_a_time_range_after_2262_is_empty_not_an_internal_error(core):
    assert not (await history(core, start_time=_stamp(300 * 365 * 86400 * 10**9))).trades


def _forged(token: str, cursor: str | None = None, digest: str | None = None) -> str:
    version, real_cursor, real_digest = base64.urlsafe_b64decode(token + "==").decode().split(":")
    text = f"{version}:{cursor or real_cursor}:{digest or real_digest}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_a_page_token_fits_only_its_own_query(core):
    first = await history(core, page_size=2)
    token = first.next_page_token
    assert token
    for bad, fields in [
        (token[:-3], {}),  # truncated
        (token + "x", {}),
        (_forged(token, digest="0" * 16), {}),  # another query's
        (_forged(token, cursor="-1"), {}),
        ("not base64 ~~", {}),
        (token, {"mode": PAPER}),  # from a query with other filters
        (token, {"mint": SOL}),
        (token, {"statuses": [pb.TRADE_STATUS_FILLED]}),
        (token, {"start_time": _stamp(0)}),
    ]:
        with pytest.raises(TradewireError) as refused:
            await history(core, page_size=2, page_token=bad, **fields)
        assert refused.value.reason == "VALIDATION_FAILED", bad
        assert [v.field for v in refused.value.field_violations] == ["page_token"], bad
    second = await history(core, page_size=2, page_token=token)
    assert [t.request_id for t in second.trades] == ["h-2", "h-1"]


async def test_page_sizes_at_the_edges(core):
    assert len((await history(core)).trades) == 5  # 0: the default, 50
    assert [t.request_id for t in (await history(core, page_size=1)).trades] == ["h-4"]
    assert len((await history(core, page_size=500)).trades) == 5
    with pytest.raises(TradewireError) as refused:
        await history(core, page_size=501)
    assert [v.field for v in refused.value.field_violations] == ["page_size"]


async def test_a_token_read_again_after_new_trades_continues_where_it_was(core):
    first = await history(core, page_size=2)
    filled = await core.service.ExecuteTrade(pb.TradeRequest(
        request_id="h-new", mode=PAPER, input_mint=USDC, output_mint=SOL, amount="10", slippage_bps=100),
        call_with_key(KEY, "ExecuteTrade"))
    assert filled.status == pb.TRADE_STATUS_FILLED
    rest, token = [], first.next_page_token
    while token:
        page = await history(core, page_size=2, page_token=token)
        rest += [t.request_id for t in page.trades]
        token = page.next_page_token
    assert [t.request_id for t in first.trades] + rest == [f"h-{i}" for i in reversed(range(5))]
    assert [t.request_id for t in (await history(core, page_size=1)).trades] == ["h-new"]


async def test_filters_that_match_nothing_answer_an_empty_last_page(core):
    for fields in [{"mode": LIVE}, {"mint": "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"},
                   {"statuses": [pb.TRADE_STATUS_CANCELLED]}, {"end_time": _stamp(1)}]:
        answer = await history(core, **fields)
        assert not answer.trades and not answer.next_page_token, fields


# -- positions: average cost on the store --------------------------------------------------

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"  # 5 decimals (SOL 9, USDC 6)


def swap(input_mint: str, amount_in: int, output_mint: str, amount_out: int, value: int, fee: int = 0) -> FillLegs:
    return FillLegs(input_mint=input_mint, amount_in=amount_in, output_mint=output_mint, amount_out=amount_out,
                    fee_mint=SOL, fee_lamports=fee, trade_value=value)


def test_average_cost_through_buys_partial_sells_a_sell_to_zero_and_a_re_buy(store):
    who = someone()
    store.ensure_wallet(who, PAPER, [Holding(USDC, 1_000_000_000, 1_000_000_000), Holding(SOL, 10**9, 150_000_000)])
    book = lambda legs: store.apply_fill(who, PAPER, legs)  # noqa: E731
    book(swap(USDC, 30_000_000, BONK, 3_000_000, 30_000_000))  # 30 BONK for 30 USDC
    after = book(swap(USDC, 60_000_000, BONK, 3_000_000, 60_000_000))  # 30 more for 60
    assert after[BONK] == Holding(BONK, 6_000_000, 90_000_000, 0)  # 60 BONK at 1.5 USDC
    after = book(swap(BONK, 1_000_000, USDC, 20_000_000, 20_000_000))  # 10 sold at 2 USDC
    assert after[BONK] == Holding(BONK, 5_000_000, 75_000_000, 5_000_000)  # 15 of cost out: 5 realised
    after = book(swap(BONK, 3, USDC, 1, 1))  # dust: three atomic units sold for one
    assert after[BONK] == Holding(BONK, 4_999_997, 74_999_955, 4_999_956)  # 45 of cost out
    after = book(swap(BONK, 4_999_997, USDC, 40_000_000, 40_000_000))  # the rest: all of its cost goes
    assert after[BONK] == Holding(BONK, 0, 0, -29_999_999)  # 60 in, 30.000001 back
    after = book(swap(USDC, 7_000_000, BONK, 700_000, 7_000_000))  # a re-buy starts a fresh average
    assert after[BONK] == Holding(BONK, 700_000, 7_000_000, -29_999_999)
    assert after[USDC] == Holding(USDC, 963_000_001, 963_000_001, 0)  # the valuation mint: cost is amount
    assert after[SOL] == Holding(SOL, 10**9, 150_000_000, 0)  # no fee in these fills: untouched
    assert store.holdings(who, PAPER) == after


def test_fees_are_a_realised_loss_at_the_sols_average_cost(store):
    who = someone()
    store.ensure_wallet(who, PAPER, [Holding(SOL, 2 * 10**9, 300_000_000), Holding(USDC, 10**9, 10**9)])
    after = store.apply_fill(who, PAPER, swap(SOL, 10**9, USDC, 151_000_000, 151_000_000, fee=5_000))
    # 1 SOL sold at 151 against 150 of cost: +1 USDC; 5,000 lamports of fee cost 750 atomic units.
    assert after[SOL] == Holding(SOL, 10**9 - 5_000, 150_000_000 - 750, 1_000_000 - 750)


def test_a_fill_the_wallet_cannot_pay_changes_nothing(store):
    who = someone()
    store.ensure_wallet(who, PAPER, [Holding(SOL, 10_000, 1), Holding(USDC, 10, 10)])
    before = store.holdings(who, PAPER)
    with pytest.raises(InsufficientBalance):
        store.apply_fill(who, PAPER, swap(SOL, 6_000, USDC, 1, 1, fee=5_000))  # the fee on top: short
    with pytest.raises(InsufficientBalance):
        store.apply_fill(who, PAPER, swap(USDC, 11, SOL, 1, 11))
    assert store.holdings(who, PAPER) == before


def test_paper_and_live_books_and_callers_are_apart(store):
    alice, bob = someone(), someone()
    store.ensure_wallet(alice, PAPER, [Holding(USDC, 100, 100)])
    store.ensure_wallet(alice, LIVE, [Holding(USDC, 7, 7)])
    store.ensure_wallet(alice, PAPER, [Holding(USDC, 999, 999)])  # given once only
    store.apply_fill(alice, PAPER, swap(USDC, 40, BONK, 4, 40))
    assert store.holdings(alice, PAPER) == {USDC: Holding(USDC, 60, 60), BONK: Holding(BONK, 4, 40)}
    assert store.holdings(alice, LIVE) == {USDC: Holding(USDC, 7, 7)}
    assert store.holdings(bob, PAPER) == {} and store.holdings(bob, LIVE) == {}
    store.apply_fill(alice, PAPER, swap(USDC, 1, BONK, 1, 1), fill_id="paper:x")
    store.apply_fill(alice, PAPER, swap(USDC, 1, BONK, 1, 1), fill_id="paper:x")  # applied once
    store.apply_fill(alice, LIVE, swap(USDC, 1, BONK, 1, 1), fill_id="paper:x")  # another book's ids
    assert store.holdings(alice, PAPER)[USDC].amount == 59 and store.holdings(alice, LIVE)[USDC].amount == 6


async def test_concurrent_fills_on_one_position_all_count(tmp_path):
    async with core_with_key(tmp_path, KEY, "hana", paper={"latency_ms": 0, "drift_bps_per_s": "0"},
                             limits={"requests_per_s": 1000, "burst": 1000}) as made:
        ctx = call_with_key(KEY, "ExecuteTrade")
        results = await asyncio.gather(*(made.service.ExecuteTrade(pb.TradeRequest(
            request_id=f"c-{i}", mode=PAPER, input_mint=USDC if i % 2 else SOL, output_mint=SOL if i % 2 else USDC,
            amount="3" if i % 2 else "0.02", slippage_bps=100), ctx) for i in range(40)))
        holdings = await made.service.executors[PAPER].wallet("hana")
    units = {SOL: 10**9, USDC: 10**6}

    def atomic(mint: str, text: str) -> int:
        whole, _, fraction = text.partition(".")
        decimals = len(str(units[mint])) - 1
        return int(whole) * units[mint] + int((fraction or "0").ljust(decimals, "0"))

    moved = {SOL: 100 * 10**9, USDC: 100_000 * 10**6}  # the starting wallet
    for r in results:
        assert r.status == pb.TRADE_STATUS_FILLED
        moved[r.input_mint] -= atomic(r.input_mint, r.amount_in)
        moved[r.output_mint] += atomic(r.output_mint, r.amount_out)
        moved[SOL] -= r.fees.total_lamports
    assert {m: h.amount for m, h in holdings.items()} == moved


# -- retention -------------------------------------------------------------------------------


async def test_retention_forgets_old_fill_ids_and_nothing_of_history_or_books(store):
    who = someone()
    store.ensure_wallet(who, PAPER, [Holding(USDC, 100, 100)])
    land(store, who, "kept", 1_000)
    store.apply_fill(who, PAPER, swap(USDC, 10, BONK, 1, 10), fill_id="paper:kept", receipt="booked")
    history_before, books_before = ids(store.history(who, HistoryQuery(), 10, None)), store.holdings(who, PAPER)
    month_later = time.time() + 31 * 86400
    assert await FillIdRetention(store, keep_s=30 * 86400, clock=lambda: month_later).prune() >= 1
    assert store.fill_receipt(who, PAPER, "paper:kept") is None
    assert ids(store.history(who, HistoryQuery(), 10, None)) == history_before == ["kept"]
    assert store.holdings(who, PAPER) == books_before
