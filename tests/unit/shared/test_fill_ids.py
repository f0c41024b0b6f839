"""apply_fill with a fill id applies that fill at most once, on both stores: the id is recorded
in the same transaction (SQLite) or script (Redis) as the holdings change, so a booking that a
crash interrupted can be run again with the same id. Without an id nothing changes. A fill id
can also be voided (settling a trade whose runner stopped): no booking with it lands after. A
booking's receipt is kept with its id, in the same write, for whoever settles the trade. Ids
past their retention are forgotten, receipts with them."""

import asyncio
import sqlite3
import time
import uuid

import pytest
import redis

from tradewire.core.config import Settings
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.base import VOIDED_RECEIPT, FillIdUsed
from tradewire.core.store.retention import BATCH, FillIdRetention
from tradewire.core.store.sqlite import SqliteStore
from tradewire.gateway.assembly import build_core
from tradewire.v1 import trade_pb2 as pb
from unit.shared.shared_support import SOL, funded_replicas

USDC = "usdc-mint"
LIVE = pb.TRADING_MODE_LIVE


def sell_sol(amount_in: int, amount_out: int) -> FillLegs:
    return FillLegs(input_mint=SOL, output_mint=USDC, amount_in=amount_in, amount_out=amount_out,
                    fee_mint=SOL, fee_lamports=5, trade_value=amount_out)


def deposit_sol(amount: int) -> FillLegs:
    return FillLegs(input_mint=SOL, output_mint=SOL, amount_in=0, amount_out=amount,
                    fee_mint=SOL, fee_lamports=0, trade_value=0)


@pytest.fixture(params=["sqlite", "redis"])
def two_stores(request, tmp_path):
    """Two stores over the same data (two connections to one file, or two Redis replicas),
    and a fresh principal holding 1,000,000 SOL units."""
    if request.param == "sqlite":
        a, b = SqliteStore(tmp_path / "trades.db"), SqliteStore(tmp_path / "trades.db")
    else:
        url = request.getfixturevalue("redis_server").url
        a = RedisTradeStore(redis.Redis.from_url(url), "replica-a")
        b = RedisTradeStore(redis.Redis.from_url(url), "replica-b")
    principal = f"p-{uuid.uuid4().hex[:8]}"
    a.ensure_wallet(principal, LIVE, [Holding(SOL, 1_000_000, 0, 0)])
    yield a, b, principal
    a.close()
    b.close()


def test_the_same_fill_id_twice_is_applied_once(two_stores):
    a, b, principal = two_stores
    first = a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1")
    assert first[SOL].amount == 1_000_000 - 100_005 and first[USDC].amount == 15
    assert a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1") == first
    assert b.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1") == first  # another connection
    assert a.holdings(principal, LIVE) == b.holdings(principal, LIVE) == first


def test_different_fill_ids_are_each_applied(two_stores):
    a, b, principal = two_stores
    a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1")
    b.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-2")
    after = a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1:deposit:0")
    assert after[SOL].amount == 1_000_000 - 3 * 100_005 and after[USDC].amount == 45


def test_without_a_fill_id_every_call_is_applied(two_stores):
    a, b, principal = two_stores
    a.apply_fill(principal, LIVE, sell_sol(100_000, 15))
    after = b.apply_fill(principal, LIVE, sell_sol(100_000, 15))
    assert after[SOL].amount == 1_000_000 - 2 * 100_005 and after[USDC].amount == 30
    # ... and an id used later is not mistaken for one of them.
    assert a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1")[USDC].amount == 45


def test_an_applied_fill_id_is_a_no_op_even_when_the_fill_no_longer_fits(two_stores):
    """Run again after the holdings already changed, the fill would overdraw: it must not be
    re-checked (a refusal there would stop the re-run from completing the booking)."""
    a, _, principal = two_stores
    after = a.apply_fill(principal, LIVE, sell_sol(999_995, 15), fill_id="sig-all")
    assert after[SOL].amount == 0
    assert a.apply_fill(principal, LIVE, sell_sol(999_995, 15), fill_id="sig-all") == after


def test_a_refused_fill_records_no_id(two_stores):
    """The id and the holdings change are one atomic write: a refusal records neither."""
    a, b, principal = two_stores
    before = a.holdings(principal, LIVE)
    with pytest.raises(InsufficientBalance):
        a.apply_fill(principal, LIVE, sell_sol(2_000_000, 15), fill_id="sig-big")
    assert a.holdings(principal, LIVE) == b.holdings(principal, LIVE) == before
    b.apply_fill(principal, LIVE, deposit_sol(1_500_000), fill_id="sig-big:deposit:0")
    after = a.apply_fill(principal, LIVE, sell_sol(2_000_000, 15), fill_id="sig-big")  # not taken as applied
    assert after[SOL].amount == 2_500_000 - 2_000_005 and after[USDC].amount == 15


def test_a_replica_applying_the_same_fill_id_between_read_and_write_is_not_doubled(tmp_path, redis_server):
    a, b, principal = funded_replicas(redis.Redis.from_url(redis_server.url), LIVE)
    real_read, raced = a._read_holdings_and_fill, []

    def read_then_race(*args):
        read = real_read(*args)
        if not raced:  # b books the very same fill after a read it, before a writes
            raced.append(b.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1"))
        return read

    a._read_holdings_and_fill = read_then_race
    after = a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="sig-1")
    assert raced and after == raced[0] == b.holdings(principal, LIVE)
    assert after[SOL].amount == 1_000_000 - 100_005 and after[USDC].amount == 15


def test_a_voided_fill_id_is_never_booked(two_stores):
    a, b, principal = two_stores
    before = a.holdings(principal, LIVE)
    assert b.void_fill(principal, LIVE, "paper:t-1")
    with pytest.raises(FillIdUsed):  # the stalled runner's booking, after the settlement
        a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-1", once=True)
    assert a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-1") == before  # a replay: no-op
    assert a.holdings(principal, LIVE) == b.holdings(principal, LIVE) == before
    assert not b.void_fill(principal, LIVE, "paper:t-1")  # voided once


def test_a_booked_fill_id_cannot_be_voided_or_booked_again(two_stores):
    a, b, principal = two_stores
    booked = a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-2", once=True)
    assert not b.void_fill(principal, LIVE, "paper:t-2")
    with pytest.raises(FillIdUsed):
        b.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-2", once=True)
    assert a.holdings(principal, LIVE) == booked


def test_a_bookings_receipt_is_kept_with_its_fill_id_and_only_then(two_stores):
    a, b, principal = two_stores
    a.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-5", once=True, receipt='{"booked": 15}')
    assert b.fill_receipt(principal, LIVE, "paper:t-5") == '{"booked": 15}'
    with pytest.raises(FillIdUsed):  # a second booking leaves the first one's receipt
        b.apply_fill(principal, LIVE, sell_sol(100_000, 99), fill_id="paper:t-5", once=True, receipt='{"booked": 99}')
    assert a.fill_receipt(principal, LIVE, "paper:t-5") == '{"booked": 15}'

    assert a.void_fill(principal, LIVE, "paper:t-6")  # voided: kept as such, and no booking can come
    with pytest.raises(FillIdUsed):
        b.apply_fill(principal, LIVE, sell_sol(100_000, 15), fill_id="paper:t-6", once=True, receipt="{}")
    with pytest.raises(InsufficientBalance):  # refused: no id, no receipt
        a.apply_fill(principal, LIVE, sell_sol(2_000_000, 15), fill_id="paper:t-7", once=True, receipt="{}")
    a.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="sig-8")  # booked without one
    assert b.fill_receipt(principal, LIVE, "paper:t-6") == VOIDED_RECEIPT
    assert [b.fill_receipt(principal, LIVE, f) for f in ("paper:t-7", "sig-8", "never")] == [None] * 3


def test_fill_ids_past_their_retention_are_forgotten_with_their_receipts(two_stores):
    a, b, principal = two_stores
    a.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:old", once=True, receipt='{"old": 1}')
    assert a.void_fill(principal, LIVE, "paper:old-void")
    cut = time.time_ns()
    a.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:new", once=True, receipt='{"new": 1}')
    while b.prune_fill_ids(cut, 1):  # one at a time: each call is one bounded batch
        pass
    assert b.fill_receipt(principal, LIVE, "paper:old") is None
    assert a.void_fill(principal, LIVE, "paper:old") and a.void_fill(principal, LIVE, "paper:old-void")  # forgotten
    assert b.fill_receipt(principal, LIVE, "paper:new") == '{"new": 1}'  # within the retention: kept
    with pytest.raises(FillIdUsed):
        b.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:new", once=True)
    assert b.prune_fill_ids(cut, 10) == 0


def test_the_retention_forgets_in_batches_and_keeps_the_rest(two_stores):
    a, _, principal = two_stores
    for i in range(BATCH + 2):
        a.void_fill(principal, LIVE, f"paper:v-{i}")
    cut = time.time()
    a.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:kept", once=True, receipt="{}")
    keep_s = 86_400
    retention = FillIdRetention(a, keep_s, clock=lambda: cut + keep_s)  # a day on: the voided ids are old

    async def started_and_stopped() -> None:
        retention.start()
        async with asyncio.timeout(10):
            while not a.void_fill(principal, LIVE, f"paper:v-{BATCH + 1}"):
                await asyncio.sleep(0.01)
        await retention.stop()

    asyncio.run(started_and_stopped())
    assert a.fill_receipt(principal, LIVE, "paper:kept") == "{}"
    assert all(a.void_fill(principal, LIVE, f"paper:v-{i}") for i in range(BATCH + 1))


async def test_the_gateway_forgets_fill_ids_past_their_retention_once_started(tmp_path):
    seeded = SqliteStore(tmp_path / "trades.db")
    seeded.ensure_wallet("alice", LIVE, [Holding(SOL, 1_000_000, 0, 0)])
    seeded.apply_fill("alice", LIVE, sell_sol(1_000, 1), fill_id="paper:last-month", receipt="{}")
    seeded.apply_fill("alice", LIVE, sell_sol(1_000, 1), fill_id="paper:today", receipt="{}")
    month_ago = time.time_ns() - 31 * 86_400 * 10**9
    with sqlite3.connect(tmp_path / "trades.db") as db:
        db.execute("UPDATE applied_fills SET applied_ns = ? WHERE fill_id = 'paper:last-month'", (month_ago,))
    seeded.close()
    core = build_core(Settings.model_validate({"storage": {"data_dir": str(tmp_path), "fill_ids_keep_s": 30 * 86_400},
                                               "webhooks": {"enabled": False}}))
    await core.start()
    try:
        async with asyncio.timeout(10):
            while core.store.fill_receipt("alice", LIVE, "paper:last-month") is not None:
                await asyncio.sleep(0.01)
        assert core.store.fill_receipt("alice", LIVE, "paper:today") == "{}"
    finally:
        await core.close()


def test_redis_paper_fill_right_after_its_dry_run_read_is_one_script(redis_server):
    """A paper booking (with its fill id) right after the executor's read: one round trip."""
    client = redis.Redis.from_url(redis_server.url)
    store = RedisTradeStore(client, "replica-a")
    principal = f"p-{uuid.uuid4().hex[:8]}"
    store.ensure_wallet(principal, LIVE, [Holding(SOL, 1_000_000, 0, 0)])
    store.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:warm")  # the script is loaded now
    store.holdings(principal, LIVE)
    commands, real_execute = [], client.execute_command

    def counting(*args, **options):
        commands.append(args[0])
        return real_execute(*args, **options)

    client.execute_command = counting
    after = store.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:t-3", once=True, receipt="{}")
    assert commands == ["EVALSHA"] and after[SOL].amount == 1_000_000 - 2 * 1_005


def test_redis_a_fill_id_voided_after_the_dry_run_read_is_refused(redis_server):
    a, b, principal = funded_replicas(redis.Redis.from_url(redis_server.url), LIVE)
    before = a.holdings(principal, LIVE)  # the dry run; then another replica settles the trade
    assert b.void_fill(principal, LIVE, "paper:t-4")
    with pytest.raises(FillIdUsed):
        a.apply_fill(principal, LIVE, sell_sol(1_000, 1), fill_id="paper:t-4", once=True)
    assert b.holdings(principal, LIVE) == before


def test_redis_fill_without_an_id_costs_what_it_did(tmp_path, redis_server):
    """A fill without an id: one read and one script, no fill-id set touched."""
    client = redis.Redis.from_url(redis_server.url)
    store = RedisTradeStore(client, "replica-a")
    principal = f"p-{uuid.uuid4().hex[:8]}"
    store.ensure_wallet(principal, LIVE, [Holding(SOL, 1_000_000, 0, 0)])
    store.apply_fill(principal, LIVE, sell_sol(1_000, 1))  # the script is loaded now
    commands, real_execute = [], client.execute_command

    def counting(*args, **options):
        commands.append(args[0])
        return real_execute(*args, **options)

    client.execute_command = counting
    store.apply_fill(principal, LIVE, sell_sol(1_000, 1))
    assert commands == ["HGETALL", "EVALSHA"]
    assert not client.exists(f"tw:fills:{principal}:{LIVE}")


def test_an_old_database_gains_fill_receipts(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE applied_fills (principal TEXT NOT NULL, mode INTEGER NOT NULL,"
                      " fill_id TEXT NOT NULL, applied_ns INTEGER NOT NULL, PRIMARY KEY (principal, mode, fill_id));"
                      "INSERT INTO applied_fills VALUES ('alice', 2, 'paper:old', 1);")
    old.close()
    store = SqliteStore(path)
    store.ensure_wallet("alice", LIVE, [Holding(SOL, 1_000_000, 0, 0)])
    store.apply_fill("alice", LIVE, sell_sol(1_000, 1), fill_id="paper:new", once=True, receipt='{"new": 1}')
    assert store.fill_receipt("alice", LIVE, "paper:old") is None
    assert store.fill_receipt("alice", LIVE, "paper:new") == '{"new": 1}'
    assert not store.void_fill("alice", LIVE, "paper:old")
    assert store.prune_fill_ids(2, 10) == 1  # the time index covers the old rows too
    assert store.void_fill("alice", LIVE, "paper:old")
    store.close()
