"""A history read on Redis examines a bounded number of the caller's trades: a filter that
matches little answers what it found so far (perhaps nothing) with a token that goes on exactly
where the read stopped, so following tokens gives every matching trade once — as SQLite does in
one call —, also while trades keep landing. Work is counted (trades read from Redis, round
trips), never timed: timings belong in bench/."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
import redis

from support.in_process import core_with_key
from tradewire.core.shared.redis_store import HISTORY_SCAN_BUDGET, RedisTradeStore
from tradewire.core.store.base import HistoryQuery
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb
from unit.core.test_positions_parity import (KEY, MINTS, PAPER_SETTINGS, RUNNING, TERMINAL, Both, _answers,
                                             _queries, _result, _run_script)

REDIS_DB = 15  # (7–14 are other tests')
PAPER, LIVE = pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
MINUTE_NS = 60 * 10**9
T0 = 1_700_000_000 * 10**9


class CountingRedis(redis.Redis):
    """Counts the round trips it makes: commands (a script call is one) and pipelines."""

    round_trips = 0

    def execute_command(self, *args, **options):
        self.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, *args, **kwargs):
        pipe = super().pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a, **k):
            self.round_trips += 1
            return execute(*a, **k)
        pipe.execute = counted
        return pipe


def redis_url(redis_server) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


@pytest.fixture
def client(redis_server):
    made = CountingRedis.from_url(redis_url(redis_server))
    made.flushdb()
    yield made
    made.close()


def someone() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def land(store, principal: str, request_id: str, created_ns: int, pair=(SOL, USDC),
         status: int = pb.TRADE_STATUS_FILLED, mode: int = PAPER) -> None:
    """Claim a trade and store its end, as a trade is written."""
    assert store.claim(principal, request_id, "fp", _result(request_id, mode, pair, created_ns, 0)) is None
    store.save(principal, _result(request_id, mode, pair, created_ns, status))


def trades_read(client: redis.Redis) -> int:
    """Trade hashes Redis has been asked for so far (by any client: tests run one at a time)."""
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_hget", "cmdstat_hmget", "cmdstat_hgetall"))


def counted(client: CountingRedis, call):
    """(call's answer, trades it read, round trips it made)."""
    read = trades_read(client)
    trips = client.round_trips
    answer = call()
    trips = client.round_trips - trips
    return answer, trades_read(client) - read, trips


def read_all(store, principal: str, query: HistoryQuery, limit: int, between_pages=lambda: None):
    """Every page, token to token: (request ids in order, page sizes)."""
    seen, sizes, after = [], [], None
    while True:
        page = store.history(principal, query, limit, after)
        assert len(page.trades) <= limit
        seen += [t.request_id for t in page.trades]
        sizes.append(len(page.trades))
        if page.last_cursor is None:
            return seen, sizes
        after = page.last_cursor
        between_pages()


# -- the budget ------------------------------------------------------------------------------


def test_a_filter_matching_nothing_stops_at_the_budget_with_a_token_and_tokens_reach_the_end(client):
    store, who = RedisTradeStore(client, "replica-budget"), someone()
    total = HISTORY_SCAN_BUDGET + 500
    for i in range(total):
        land(store, who, f"t{i:05d}", T0 + i)
    store.history(who, HistoryQuery(), 1, None)  # (the script loaded)

    nothing = HistoryQuery(mint=JUP)
    page, read, trips = counted(client, lambda: store.history(who, nothing, 50, None))
    assert page.trades == [] and page.last_cursor is not None  # not the end: the rest is for the next page
    assert read <= HISTORY_SCAN_BUDGET  # (it read every trade before)
    assert trips <= HISTORY_SCAN_BUDGET // 256 + 4  # batches of 256 at most, fewer at first
    page, read, _ = counted(client, lambda: store.history(who, nothing, 50, page.last_cursor))
    assert page.trades == [] and page.last_cursor is None
    assert read <= total - HISTORY_SCAN_BUDGET + 1  # where the first call stopped, not from the top

    seen, sizes = read_all(store, who, HistoryQuery(mint=SOL), 500)
    assert seen == [f"t{i:05d}" for i in reversed(range(total))]
    assert sizes == [500] * (total // 500) + [total % 500]  # a filter matching every trade: full pages


def test_the_first_page_reads_what_it_shows_in_one_round_trip(client):
    store, who = RedisTradeStore(client, "replica-budget"), someone()
    for i in range(600):
        land(store, who, f"t{i:03d}", T0 + i)
    store.history(who, HistoryQuery(), 1, None)  # (the script loaded)

    page, read, trips = counted(client, lambda: store.history(who, HistoryQuery(), 50, None))
    assert [t.request_id for t in page.trades] == [f"t{i:03d}" for i in range(599, 549, -1)]
    assert page.last_cursor is not None
    assert read <= 51 and trips == 1  # the page and one more, to tell there is another (it read 256 before)


def test_tokens_give_every_matching_trade_once_while_trades_keep_landing(client):
    store, who = RedisTradeStore(client, "replica-budget"), someone()
    store.history_budget = 40
    rng = random.Random(7)
    matching = []
    for i in range(400):  # some buy JUP, none in every other run of 60 (longer than the budget)
        pair = (USDC, JUP) if rng.random() < (0.3 if (i // 60) % 2 else 0.0) else (SOL, USDC)
        land(store, who, f"t{i:03d}", T0 + i, pair, rng.choice(TERMINAL))
        if JUP in pair:
            matching.append(f"t{i:03d}")
    landed = iter(range(1000, 2000))

    def more_trades() -> None:  # matching and not, newer than every page read so far
        for _ in range(3):
            i = next(landed)
            land(store, who, f"t{i}", T0 + i, rng.choice(((USDC, JUP), (SOL, USDC))))

    reads = []
    original = store.history

    def history(*args):
        page, read, _ = counted(client, lambda: original(*args))
        reads.append(read)
        return page
    store.history = history
    seen, sizes = read_all(store, who, HistoryQuery(mint=JUP), 7, more_trades)
    assert seen == matching[::-1]  # newest first, each once, none skipped
    assert max(reads) <= 40
    assert 0 in sizes[:-1] and any(0 < size < 7 for size in sizes[:-1])  # empty and short pages, with tokens


# -- start_time ------------------------------------------------------------------------------


def test_start_time_ends_the_read_once_trades_are_older_than_it_by_the_slack(client):
    store, who = RedisTradeStore(client, "replica-budget"), someone()
    for i in range(400):  # a trade a minute
        land(store, who, f"t{i:03d}", T0 + i * MINUTE_NS)
    store.history(who, HistoryQuery(), 1, None)  # (the script loaded)

    since = HistoryQuery(start_ns=T0 + 380 * MINUTE_NS)
    page, read, _ = counted(client, lambda: store.history(who, since, 50, None))
    assert [t.request_id for t in page.trades] == [f"t{i:03d}" for i in range(399, 379, -1)]
    assert page.last_cursor is None  # the end, not a token to read the rest for nothing
    assert read <= 51  # the first batch (20 trades, 5 minutes' slack, the one that ended it): not all 400

    page, read, _ = counted(client, lambda: store.history(who, HistoryQuery(start_ns=T0 + 600 * MINUTE_NS), 50, None))
    assert page.trades == [] and page.last_cursor is None and read <= 51  # (one batch)


def test_a_trade_claimed_later_by_a_replica_whose_clock_is_behind_does_not_hide_older_ones(client):
    store, who = RedisTradeStore(client, "replica-budget"), someone()
    land(store, who, "first", T0)  # on a replica whose clock is right
    land(store, who, "second", T0 - 2 * MINUTE_NS)  # claimed after it, on a replica 2 minutes behind
    page = store.history(who, HistoryQuery(start_ns=T0 - MINUTE_NS), 50, None)
    assert [t.request_id for t in page.trades] == ["first"] and page.last_cursor is None


# -- the same answers as SQLite --------------------------------------------------------------


@pytest.mark.parametrize("seed", [4, 5])
def test_pages_token_to_token_hold_what_sqlite_answers_whatever_the_budget(tmp_path: Path, client, seed):
    rng = random.Random(seed)
    shared = RedisTradeStore(client, "replica-budget")
    both = Both(SqliteStore(tmp_path / "trades.db"), shared)
    who, made, times = someone(), {}, []
    for step in range(250):
        if rng.random() < 0.85 or not made:  # a new trade, ended at once or left running
            request_id, mode, pair = f"r:{step}", rng.choice((PAPER, LIVE)), tuple(rng.sample(MINTS[:3], 2))
            created = T0 + step * MINUTE_NS // 10
            assert both.claim(who, request_id, "fp", _result(request_id, mode, pair, created, 0)) is None
            status = rng.choice(TERMINAL + RUNNING[1:])
            reason = "CANCELLED" if status == pb.TRADE_STATUS_CANCELLED and rng.random() < 0.5 else ""
            both.save(who, _result(request_id, mode, pair, created, status, reason))
            made[request_id] = (mode, pair)
        else:  # a retry of a known request id: runs again (listed anew) when it may
            request_id = rng.choice(sorted(made))
            mode, pair = made[request_id]
            created = T0 + step * MINUTE_NS // 10
            if both.claim(who, request_id, "fp", _result(request_id, mode, pair, created, 0)) is None:
                both.save(who, _result(request_id, mode, pair, created, pb.TRADE_STATUS_FILLED))
        times.append(created)
    queries = _queries(times) + [HistoryQuery(start_ns=times[200]), HistoryQuery(start_ns=times[-1] + 1)]
    for budget in (1, 13, 100, HISTORY_SCAN_BUDGET):
        shared.history_budget = budget
        for query in queries:
            for limit in (1, 3, 50):
                answers = [read_all(store, who, query, limit) for store in both.stores]
                assert answers[0][0] == answers[1][0], (budget, query, limit)
                if budget == HISTORY_SCAN_BUDGET:
                    assert answers[0][1] == answers[1][1], (budget, query, limit)  # page by page too


async def test_the_service_answers_what_it_answers_on_sqlite_with_short_pages_in_between(tmp_path: Path, client,
                                                                                         redis_server):
    async with core_with_key(tmp_path / "sqlite", KEY, "parity", paper=PAPER_SETTINGS) as embedded:
        await _run_script(embedded)
        embedded_answers = await _answers(embedded)
    async with core_with_key(tmp_path / "redis", KEY, "parity", paper=PAPER_SETTINGS,
                             shared={"redis_url": redis_url(redis_server)}) as shared:
        await _run_script(shared)
        shared.service.store.history_budget = 2
        shared_answers = await _answers(shared)
    for name, pages in embedded_answers["histories"].items():
        flat = [trade for page in pages for trade in page]
        assert flat == [trade for page in shared_answers["histories"][name] for trade in page], name
    # (a filter that matches no trade in a read of 2 gives an empty page, with a token)
    assert [] in shared_answers["histories"]["bonk"][:-1]
