"""Fills on the Redis store are compare-and-set on the holdings' version: two replicas booking
the same caller never lose an update, and a refused fill writes nothing."""

import uuid

import pytest
import redis

from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance
from tradewire.core.shared.redis_store import RedisTradeStore
from unit.shared.shared_support import SOL, funded_replicas

USDC = "usdc-mint"
PAPER = 1


def legs(amount_in: int, amount_out: int) -> FillLegs:
    return FillLegs(input_mint=SOL, output_mint=USDC, amount_in=amount_in, amount_out=amount_out,
                    fee_mint=SOL, fee_lamports=5, trade_value=amount_out)


@pytest.fixture
def replicas(tmp_path, redis_server):
    return funded_replicas(redis.Redis.from_url(redis_server.url), PAPER)


def racing(store: RedisTradeStore, race) -> list[bool]:
    """Make ``race()`` run once between ``store``'s next holdings read and its write."""
    real_read, raced = store._read_holdings, []

    def read_then_race(principal_id: str, mode: int):
        read = real_read(principal_id, mode)
        if not raced:
            raced.append(True)
            race()
        return read

    store._read_holdings = read_then_race
    return raced


def test_a_fill_racing_another_replicas_fill_is_retried_not_lost(replicas):
    a, b, principal = replicas
    raced = racing(a, lambda: b.apply_fill(principal, PAPER, legs(100_000, 15)))
    after = a.apply_fill(principal, PAPER, legs(200_000, 30))
    assert raced and after[SOL].amount == 1_000_000 - 300_000 - 2 * 5 and after[USDC].amount == 45
    assert b.holdings(principal, PAPER) == after


def test_interleaved_fills_from_two_replicas_all_count(replicas):
    a, b, principal = replicas
    for _ in range(25):
        racing(a, lambda: b.apply_fill(principal, PAPER, legs(1_000, 1)))
        a.apply_fill(principal, PAPER, legs(1_000, 1))
    final = a.holdings(principal, PAPER)
    assert final[SOL].amount == 1_000_000 - 50 * (1_000 + 5) and final[USDC].amount == 50


def test_a_refused_fill_writes_nothing(replicas):
    a, _, principal = replicas
    before = a.holdings(principal, PAPER)
    with pytest.raises(InsufficientBalance):
        a.apply_fill(principal, PAPER, legs(2_000_000, 1))
    assert a.holdings(principal, PAPER) == before


def test_a_fill_computed_before_the_wallet_was_given_is_retried(tmp_path, redis_server):
    client = redis.Redis.from_url(redis_server.url)
    a = RedisTradeStore(client, "replica-a")
    b = RedisTradeStore(client, "replica-b")
    principal = f"p-{uuid.uuid4().hex[:8]}"
    client.hset(f"tw:hold:{principal}:{PAPER}", USDC, "10:10:0")  # USDC arrived before any wallet
    raced = racing(a, lambda: b.ensure_wallet(principal, PAPER, [Holding(SOL, 500, 0, 0)]))
    buy_sol = FillLegs(input_mint=USDC, output_mint=SOL, amount_in=5, amount_out=7, fee_mint=SOL,
                       fee_lamports=0, trade_value=5)
    after = a.apply_fill(principal, PAPER, buy_sol)  # computed on "no SOL", then retried on the wallet
    assert raced and after[SOL].amount == 507 and after[USDC].amount == 5
    assert b.holdings(principal, PAPER) == after


def test_a_fill_right_after_a_read_writes_against_that_read(replicas):
    a, _, principal = replicas
    before = a.holdings(principal, PAPER)  # the paper executor's dry run
    reads = racing(a, lambda: None)  # records any further read
    after = a.apply_fill(principal, PAPER, legs(1_000, 1))
    assert reads == [] and after[SOL].amount == before[SOL].amount - 1_005  # booked without reading again


def test_a_fill_after_a_stale_read_is_applied_to_fresh_holdings(replicas):
    a, b, principal = replicas
    a.holdings(principal, PAPER)  # read, then another replica books
    b.apply_fill(principal, PAPER, legs(100_000, 40))
    after = a.apply_fill(principal, PAPER, legs(1_000, 1))
    assert after[SOL].amount == 1_000_000 - 101_000 - 2 * 5 and after[USDC].amount == 41


def test_a_balance_short_only_in_a_stale_read_is_not_refused(replicas):
    a, b, principal = replicas
    assert USDC not in a.holdings(principal, PAPER)  # no USDC when a read
    b.apply_fill(principal, PAPER, legs(100_000, 40))  # then 40 arrived
    sell_usdc = FillLegs(input_mint=USDC, output_mint=SOL, amount_in=30, amount_out=1_000, fee_mint=SOL,
                         fee_lamports=5, trade_value=30)
    after = a.apply_fill(principal, PAPER, sell_usdc)
    assert after[USDC].amount == 10


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_each_store_says_when_each_holding_last_changed(backend, tmp_path, redis_server):
    import time

    from tradewire.core.store.sqlite import SqliteStore

    if backend == "sqlite":
        store = SqliteStore(tmp_path / "trades.db")
    else:
        store = RedisTradeStore(redis.Redis.from_url(redis_server.url), "replica-t")
    principal, first = f"p-{uuid.uuid4().hex[:8]}", time.time_ns()
    store.ensure_wallet(principal, PAPER, [Holding(SOL, 1_000_000, 0), Holding("bonk-mint", 7, 0)])
    given = store.holdings_changed_ns(principal, PAPER)
    assert set(given) == {SOL, "bonk-mint"} and all(first - 10**9 <= ns <= time.time_ns() + 10**9
                                                     for ns in given.values())  # (Redis's clock: a little slack)
    store.apply_fill(principal, PAPER, legs(100_000, 15), fill_id=f"f-{uuid.uuid4().hex}")
    filled = store.holdings_changed_ns(principal, PAPER)
    assert filled["bonk-mint"] == given["bonk-mint"]  # not part of the fill
    assert filled[SOL] > given[SOL] and USDC in filled
