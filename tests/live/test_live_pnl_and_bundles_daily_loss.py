"""The realised PnL of LIVE bookings (what the DAILY_LOSS check adds up) counts each fill once, as
the store applied it, however the bookings of one principal interleave across replicas or
processes: each booking's change is the one the trade store recorded with the fill's id, in the
same write as the fill, on SQLite and on Redis alike.

(The change read as "the principal's realised PnL after the fill minus before it", in separate
store calls, counted into one booking the fills another replica booked in between.)"""

from __future__ import annotations

import pytest
import pytest_asyncio
from live_support import LAMPORTS, SOL, USDC, eventually, fund

from support.redis_server import RedisServer
from tradewire.core.portfolio import FillLegs, Holding
from tradewire.core.shared.redis_live_orders import SharedLiveOrders
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb

LIVE = pb.TRADING_MODE_LIVE


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def backend(request, tmp_path):
    """Which store two replicas (or two processes) of one test share: a SQLite file, or a Redis
    of the test's own (the daily counts in Redis are global: the session's Redis has others')."""
    if request.param == "sqlite":
        yield None
        return
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def replicas(backend, make_live, tmp_path):
    """replicas(wallet) → two started Harnesses booking one principal's LIVE fills in one store
    (each its own journal; on Redis, the day's realised PnL counted there for both)."""
    async def make(wallet):
        made = []
        for name in ("a", "b"):
            if backend is None:
                store, orders = SqliteStore(tmp_path / "trades.db"), None  # (each its own connection)
            else:
                store = RedisTradeStore(backend.client(), name)
                orders = SharedLiveOrders(tmp_path / name / "live_orders.db", backend.client(), name)
            made.append(await make_live(wallet, directory=tmp_path / name, store=store, orders=orders))
        return made
    return make


def counted(a, b) -> int:
    """The day's realised PnL the DAILY_LOSS check reads: on SQLite each journal's own (summed
    here), on Redis every replica's (the same for both)."""
    if isinstance(a.orders, SharedLiveOrders):
        assert a.orders.realized_since(0) == b.orders.realized_since(0)
        return a.orders.realized_since(0)
    return a.orders.realized_since(0) + b.orders.realized_since(0)


def realized(h) -> int:
    """The principal's realised PnL in the LIVE book (seeded from the wallet with none)."""
    return sum(x.realized_pnl for x in h.store.holdings(h.principal, LIVE).values())


async def landed_unbooked(h, request_id: str, *trade: str):
    """A trade whose transaction landed and is final, its booking not started yet (the booking's
    claim is skipped, as a process stopping between the two leaves it); with what booking it needs."""
    h.orders.claim_booking = lambda *args, **kwargs: False
    try:
        run = await h.run(h.order(request_id, *trade))
    finally:
        del h.orders.claim_booking
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    row = h.orders.get(run.signature)
    assert row.booked == 0
    return row, await h.executor._booking_inputs(row)


async def test_bookings_of_one_principal_on_two_replicas_count_each_fill_once(replicas, host, rules) -> None:
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    a, b = await replicas(wallet)
    # Two fills on B (each realises its fees as a loss), their bookings still to come.
    held = [await landed_unbooked(b, f"pnl-b{i}", USDC, SOL, "20") for i in (1, 2)]

    # A books its own fill; B books one of its fills right before A's fill is applied, the
    # other right after (B's bookings on another replica, deterministically interleaved).
    real_apply = a.store.apply_fill

    def apply_fill(principal_id, mode, legs, fill_id=None, **kwargs):
        mine = fill_id is not None and fill_id == getattr(a.orders.for_request(a.principal, "pnl-a"), "signature", "")
        if mine:
            b.executor._book(held[0][0], *held[0][1])
        holdings = real_apply(principal_id, mode, legs, fill_id=fill_id, **kwargs)
        if mine:
            b.executor._book(held[1][0], *held[1][1])
        return holdings

    a.store.apply_fill = apply_fill
    run = await a.run(a.order("pnl-a", SOL, USDC, "0.5"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome

    rows = [a.orders.get(run.signature), *(b.orders.get(row.signature) for row, _ in held)]
    assert [row.booked for row in rows] == [2, 2, 2]
    assert all(row.pnl_delta < 0 for row in rows[1:])  # B's fills: their fees, as losses
    assert counted(a, b) == realized(a) < 0  # every fill once, as the book shows


async def test_a_booking_run_again_after_a_crash_counts_its_own_fill_only(replicas, host, rules) -> None:
    """A stops after its fill was applied, before the booking was marked (run again: the fill id
    is applied already); B books a fill in between. A's re-run records A's fill's change only."""
    wallet = fund(host.devnet, 10 * LAMPORTS, {"USDC": 10_000 * 10**6})
    a, b = await replicas(wallet)
    held_row, held_inputs = await landed_unbooked(b, "rerun-b", USDC, SOL, "20")

    real_booked = a.orders.booked
    stopped: list[str] = []

    def booked(signature: str, pnl_delta: int) -> None:
        if not stopped:  # the first time: A's fill is in the book; the booking is left claimed
            stopped.append(signature)
            b.executor._book(held_row, *held_inputs)
            raise RuntimeError("the process stopped here")
        real_booked(signature, pnl_delta)

    a.orders.booked = booked
    run = await a.run(a.order("rerun-a", SOL, USDC, "0.5"))
    assert run.outcome.status == pb.TRADE_STATUS_FILLED, run.outcome
    assert stopped == [run.signature]
    await eventually(lambda: a.orders.get(run.signature).booked == 2)  # the claimed booking, run again

    assert b.orders.get(held_row.signature).booked == 2
    assert counted(a, b) == realized(a) < 0


async def test_an_interrupted_booking_an_earlier_version_claimed_is_finished_from_its_realized_before(
        make_live, host, rules, tmp_path) -> None:
    """Its fill was applied by a version that recorded no change with the fill id: the change is
    what the realised PnL moved since its claim noted it (as that version counted it)."""
    h = await make_live()
    row, inputs = await landed_unbooked(h, "legacy", USDC, SOL, "20")
    before = realized(h)
    assert h.orders.claim_booking(row.signature, realized_before=before)  # the earlier version's claim
    h.executor._apply_booking(h.orders.get(row.signature), *inputs)
    change = h.store.fill_realized_change(h.principal, LIVE, row.signature)
    assert change == realized(h) - before < 0
    # As that version left it: the fill applied, no change recorded, the booking not marked.
    h.store._db.execute("UPDATE applied_fills SET realized_change = NULL WHERE fill_id = ?", (row.signature,))
    h.orders._db.execute("UPDATE live_orders SET booked = 1, pnl_delta = NULL WHERE signature = ?", (row.signature,))

    await h.executor._finish_booking(h.orders.get(row.signature))
    assert h.orders.get(row.signature).booked == 2 and h.orders.realized_since(0) == change


# -- the stores: a fill's realised change recorded with its id ----------------------------------------


def test_redis_records_a_fills_change_on_the_holdings_it_was_written_over(tmp_path) -> None:
    """Another replica's fill lands between this fill's read and its write: the write is refused
    (the version moved), and the change recorded is the one computed on the holdings read again."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        mine, other = RedisTradeStore(server.client(), "a"), RedisTradeStore(server.client(), "b")
        mine.ensure_wallet("alice", LIVE, [Holding(SOL, 10, 1000)])
        real_write = mine._write_if_unchanged
        writes: list[int] = []

        def write(keys, args):
            if not writes:  # B buys 10 more at a higher price: the average cost doubles
                other.apply_fill("alice", LIVE, FillLegs(USDC, 0, SOL, 10, SOL, 0, 3000), fill_id="other")
            writes.append(1)
            return real_write(keys=keys, args=args)

        mine._write_if_unchanged = write
        mine.apply_fill("alice", LIVE, FillLegs(SOL, 10, USDC, 2000, SOL, 0, 2000), fill_id="mine")
        assert len(writes) == 2  # refused once, written on the holdings read again
        assert mine.fill_realized_change("alice", LIVE, "mine") == 2000 - 2000  # not 2000 - 1000
        assert mine.fill_realized_change("alice", LIVE, "other") == 0
        assert mine.fill_realized_change("alice", LIVE, "never") is None
        # Re-applied: nothing changes, the first change stays; pruned: forgotten with the id.
        mine.apply_fill("alice", LIVE, FillLegs(SOL, 1, USDC, 1, SOL, 0, 1), fill_id="mine")
        assert mine.fill_realized_change("alice", LIVE, "mine") == 0
        assert mine.prune_fill_ids(2**62, 10) == 2
        assert mine.fill_realized_change("alice", LIVE, "mine") is None
    finally:
        server.stop()


def test_sqlite_records_a_fills_change_and_an_old_database_gains_the_column(tmp_path) -> None:
    path = tmp_path / "trades.db"
    old = SqliteStore(path)
    old._db.execute("ALTER TABLE applied_fills DROP COLUMN realized_change")  # the earlier schema
    old.ensure_wallet("alice", LIVE, [Holding(SOL, 10, 1000)])
    old._db.execute("INSERT INTO applied_fills (principal, mode, fill_id, applied_ns) VALUES ('alice', ?, 'old', 1)",
                    (LIVE,))
    old.close()
    store = SqliteStore(path)
    assert store.fill_realized_change("alice", LIVE, "old") is None  # applied before changes were recorded
    store.apply_fill("alice", LIVE, FillLegs(SOL, 5, USDC, 900, SOL, 0, 900), fill_id="sell")
    assert store.fill_realized_change("alice", LIVE, "sell") == 900 - 500
    store.apply_fill("alice", LIVE, FillLegs(SOL, 5, USDC, 1, SOL, 0, 1), fill_id="sell")  # applied: skipped
    assert store.fill_realized_change("alice", LIVE, "sell") == 400
    assert store.fill_realized_change("alice", LIVE, "never") is None
    assert store.prune_fill_ids(2**62, 10) == 2 and store.fill_realized_change("alice", LIVE, "sell") is None
