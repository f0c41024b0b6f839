"""The embedded store (SQLite) and the shared one (Redis) answer alike: the same trades and fills
give the same history — every filter, every page size, page by page —, the same records, the same
unfinished trades and the same books, on the store interface and through the service."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
import redis

from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.base import HistoryQuery
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

REDIS_DB = 13  # (7–11 are other tests')
PAPER, LIVE = pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE
TERMINAL = (pb.TRADE_STATUS_FILLED, pb.TRADE_STATUS_FAILED, pb.TRADE_STATUS_REJECTED, pb.TRADE_STATUS_CANCELLED,
            pb.TRADE_STATUS_EXPIRED)
RUNNING = (pb.TRADE_STATUS_UNSPECIFIED, pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SUBMITTED)
MINTS = ("mint-a", "mint-b", "mint-c", "fee-sol")


def redis_client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}")
    client.flushdb()
    return client


# -- the store interface ---------------------------------------------------------------------


class Both:
    """Every call made on both stores; the answers (or the exceptions' types) must agree."""

    def __init__(self, sqlite: SqliteStore, shared: RedisTradeStore) -> None:
        self.stores = (sqlite, shared)

    def __getattr__(self, name: str):
        def both(*args, **kwargs):
            answers = []
            for store in self.stores:
                try:
                    answers.append(getattr(store, name)(*args, **kwargs))
                except (InsufficientBalance, ValueError) as exc:
                    answers.append(type(exc))
            assert answers[0] == answers[1], (name, args, answers)
            return answers[0]
        return both


def _result(request_id: str, mode: int, pair: tuple[str, str], created_ns: int, status: int,
            reason: str = "") -> pb.TradeResult:
    made = pb.TradeResult(request_id=request_id, trade_id=f"id-{request_id}-{created_ns}", mode=mode, status=status,
                          input_mint=pair[0], output_mint=pair[1], amount_in="1")
    made.created_at.FromNanoseconds(created_ns)
    if reason:
        made.error.reason = reason
    return made


def _queries(times: list[int]) -> list[HistoryQuery]:
    middle = sorted(times)[len(times) // 2]
    return [HistoryQuery(), HistoryQuery(mode=PAPER), HistoryQuery(mode=LIVE), HistoryQuery(mint="mint-a"),
            HistoryQuery(mint="mint-c", mode=PAPER), HistoryQuery(statuses=(pb.TRADE_STATUS_FILLED,)),
            HistoryQuery(statuses=tuple(sorted({*RUNNING, pb.TRADE_STATUS_CANCELLED}))),
            HistoryQuery(start_ns=middle), HistoryQuery(end_ns=middle),
            HistoryQuery(start_ns=middle, end_ns=middle + 1), HistoryQuery(start_ns=-(2**70), end_ns=2**70),
            HistoryQuery(mint="nowhere")]


def _pages(store, principal: str, query: HistoryQuery, limit: int) -> list[list[tuple[str, int, str]]]:
    pages, after = [], None
    while True:
        page = store.history(principal, query, limit, after)
        pages.append([(t.request_id, t.status, t.trade_id) for t in page.trades])
        if page.last_cursor is None:
            return pages
        after = page.last_cursor


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_run_of_trades_and_fills_reads_the_same_on_both_stores(tmp_path, redis_server, seed):
    rng = random.Random(seed)
    both = Both(SqliteStore(tmp_path / "trades.db"), RedisTradeStore(redis_client(redis_server), "replica-parity"))
    principals = [f"p{seed}-{uuid.uuid4().hex[:6]}", f"jwt:p{seed}-{uuid.uuid4().hex[:6]}"]
    trades: dict[tuple[str, str], tuple[int, tuple[str, str]]] = {}
    times: list[int] = []
    for principal in principals:
        for mode in (PAPER, LIVE):
            both.ensure_wallet(principal, mode, [Holding(m, 10_000, 10_000) for m in MINTS])

    for step in range(300):
        principal = rng.choice(principals)
        action = rng.random()
        if action < 0.4 or not trades:  # a new trade, ended at once or left running
            request_id = f"r:{step}"
            mode, pair = rng.choice((PAPER, LIVE)), tuple(rng.sample(MINTS[:3], 2))
            created = rng.choice((1_000, 2_000, 3_000)) + step // 50  # ties on purpose
            times.append(created)
            assert both.claim(principal, request_id, "fp", _result(request_id, mode, pair, created, 0)) is None
            trades[(principal, request_id)] = (mode, pair)
            status = rng.choice(TERMINAL + RUNNING[1:])
            # Stopped because its call went away (it may run again), or for good.
            reason = rng.choice(("CANCELLED", "DEADLINE_EXCEEDED", "TRADE_CANCELLED")) \
                if status in (pb.TRADE_STATUS_CANCELLED, pb.TRADE_STATUS_EXPIRED) else ""
            both.save(principal, _result(request_id, mode, pair, created, status, reason))
        elif action < 0.55:  # a retry of a known request id: runs again when it may, else the record
            principal, request_id = rng.choice(sorted(trades))
            mode, pair = trades[(principal, request_id)]
            created = 4_000 + step
            times.append(created)
            existing = both.claim(principal, request_id, "fp", _result(request_id, mode, pair, created, 0))
            if existing is None:
                both.save(principal, _result(request_id, mode, pair, created, pb.TRADE_STATUS_FILLED))
        else:  # a fill, perhaps under an id seen before, perhaps more than the book holds
            mode = rng.choice((PAPER, LIVE))
            sold, bought = rng.sample(MINTS[:3], 2)
            legs = FillLegs(input_mint=sold, amount_in=rng.randint(0, 3_000), output_mint=bought,
                            amount_out=rng.randint(1, 3_000), fee_mint="fee-sol", fee_lamports=rng.randint(0, 50),
                            trade_value=rng.randint(0, 4_000))
            fill_id = rng.choice((None, f"f{rng.randint(0, 20)}"))
            both.apply_fill(principal, mode, legs, fill_id=fill_id)

    for principal in principals:
        for query in _queries(times):
            for limit in (1, 3, 50, 500):
                both_pages = [_pages(store, principal, query, limit) for store in both.stores]
                assert both_pages[0] == both_pages[1], (query, limit)
        for mode in (PAPER, LIVE):
            both.holdings(principal, mode)
        for _, request_id in trades:
            both.get(principal, request_id)  # (another caller's id reads None on both)
            both.request_of(principal, request_id)
    unfinished = [[(u.record.principal_id, u.record.request_id, u.record.result.trade_id) for u in store.unfinished()]
                  for store in both.stores]
    assert unfinished[0] == unfinished[1] and unfinished[0]


# -- through the service ---------------------------------------------------------------------

KEY = "tw_parity01_" + "x" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
ALL = "all"  # sell the whole position
# Buys, partial sells, a sell to zero and a re-buy, across 9, 6 and 5 decimals; a refusal (more
# SOL than the wallet holds) and a request the contract refuses.
SCRIPT = [(USDC, BONK, "1000"), (BONK, USDC, "10000000"), (USDC, BONK, "10"), (BONK, USDC, ALL), (USDC, JUP, "500"),
          (JUP, SOL, "100"), (SOL, USDC, "1.5"), (SOL, USDC, "5000"), (USDC, SOL, "99999999"), (USDC, BONK, "5"),
          (SOL, JUP, "0.25"), (JUP, USDC, ALL)]
# Deterministic fills (no drift, no latency): both gateways fill alike.
PAPER_SETTINGS = {"latency_ms": 0, "drift_bps_per_s": "0", "starting_balances": {"SOL": "10", "USDC": "20000"}}


async def _run_script(core) -> list:
    service, seen = core.service, []
    for i, (sold, bought, amount) in enumerate(SCRIPT):
        if amount == ALL:
            held = await service.GetPositions(spb.GetPositionsRequest(mode=PAPER, mint=sold),
                                              call_with_key(KEY, "GetPositions"))
            amount = held.positions[0].amount
        request = pb.TradeRequest(request_id=f"s-{i}", mode=PAPER, input_mint=sold, output_mint=bought, amount=amount,
                                  slippage_bps=100)
        try:
            result = await service.ExecuteTrade(request, call_with_key(KEY, "ExecuteTrade"))
            seen.append((i, result.status, result.amount_in, result.amount_out))
        except TradewireError as exc:
            seen.append((i, exc.reason))
    return seen


async def _answers(core) -> dict:
    service = core.service
    positions = await service.GetPositions(spb.GetPositionsRequest(), call_with_key(KEY, "GetPositions"))
    for position in positions.positions:
        position.ClearField("updated_at")  # (when it was read)
    histories = {}
    for name, fields in {"all": {}, "paper": {"mode": PAPER}, "live": {"mode": LIVE}, "bonk": {"mint": BONK},
                         "filled": {"statuses": [pb.TRADE_STATUS_FILLED]},
                         "refused": {"statuses": [pb.TRADE_STATUS_REJECTED, pb.TRADE_STATUS_FAILED]}}.items():
        pages, token = [], ""
        while True:
            page = await service.GetTradeHistory(spb.GetTradeHistoryRequest(page_size=3, page_token=token, **fields),
                                                 call_with_key(KEY, "GetTradeHistory"))
            for trade in page.trades:  # (made on each gateway: its own ids and clock)
                for field in ("trade_id", "created_at", "updated_at"):
                    trade.ClearField(field)
            pages.append(list(page.trades))
            token = page.next_page_token
            if not token:
                break
        histories[name] = pages
    return {"positions": positions, "histories": histories}


async def test_the_same_trades_give_the_same_positions_and_history_on_both_stores(tmp_path: Path, redis_server):
    client = redis_client(redis_server)
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    async with core_with_key(tmp_path / "sqlite", KEY, "parity", paper=PAPER_SETTINGS) as embedded:
        embedded_trades = await _run_script(embedded)
        embedded_answers = await _answers(embedded)
    async with core_with_key(tmp_path / "redis", KEY, "parity", paper=PAPER_SETTINGS,
                             shared={"redis_url": url}) as shared:
        shared_trades = await _run_script(shared)
        shared_answers = await _answers(shared)
    client.close()

    assert embedded_trades == shared_trades
    statuses = [step[1] for step in embedded_trades]
    assert statuses.count(pb.TRADE_STATUS_FILLED) == 10 and "INSUFFICIENT_FUNDS" in statuses and \
        "VALIDATION_FAILED" in statuses, embedded_trades
    assert embedded_answers["positions"] == shared_answers["positions"]
    assert embedded_answers["histories"] == shared_answers["histories"]
    by_mint = {p.mint: p for p in embedded_answers["positions"].positions}
    assert by_mint[JUP].amount == "0" and by_mint[JUP].realized_pnl != "0"  # sold to zero: its PnL stays
    assert by_mint[BONK].cost_basis == "5"  # re-bought after a sale to zero: a fresh cost
    assert [len(page) for page in embedded_answers["histories"]["all"]] == [3, 3, 3, 2]
