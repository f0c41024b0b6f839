"""The LIVE reservation book shared in Redis by replicas trading one wallet: a trade admitted on
one replica counts on every other, two admissions never both pass on the same room, a release
after a balance read still counts for that read, and the holds of a replica that stops
renewing lapse a lease later."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from support.redis_server import RedisServer
from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.reservations import InFlight, LocalReservations, Reservation
from tradewire.core.shared.redis_reservations import SharedReservations

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SOL = "So11111111111111111111111111111111111111112"
WALLET = "WaLLet1111111111111111111111111111111111111"


def spending(usdc: int, loss: int = 0) -> Reservation:
    return Reservation({USDC: usdc, SOL: 5000}, SOL, usdc * 10, loss)


def seen_by(book, key=("alice", "probe"), since: int = 0, settled: frozenset = frozenset()) -> InFlight:
    """What a check on ``book`` counts besides ``key`` (the probe is refused: nothing held)."""
    seen: list[InFlight] = []

    def check(others: InFlight) -> str:
        seen.append(others)
        return "probe only"

    assert book.admit(key, since, settled, check, lambda: spending(0)) == "probe only"
    return seen[0]


def admit_within(book, key, budget: int, usdc: int) -> bool:
    """Admit a trade spending ``usdc`` when the others' spend leaves room for it in ``budget``."""
    def check(others: InFlight) -> str | None:
        return None if others.spend.get(USDC, 0) + usdc <= budget else "no room"

    return book.admit(key, 0, frozenset(), check, lambda: spending(usdc)) is None


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def books(own_redis):
    """Two replicas' books on one wallet, each with its own connection."""
    return (SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="a"),
            SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="b"))


def test_a_trade_admitted_on_one_replica_counts_on_the_other(books):
    a, b = books
    assert admit_within(a, ("alice", "t1"), 100, 60)
    others = seen_by(b)
    assert (others.spend[USDC], others.buys[SOL], others.trades) == (60, 600, 1)
    assert not admit_within(b, ("alice", "t2"), 100, 60)  # the room is taken on A
    assert a.holds(("alice", "t1")) and not b.holds(("alice", "t1"))
    # Another wallet's book is another book.
    assert seen_by(SharedReservations(b._r, "another-wallet", lease_s=30, replica_id="b")).trades == 0
    # A local book (one process) never sees it: what the shared one is for.
    assert seen_by(LocalReservations()).trades == 0


def test_two_replicas_admitting_at_once_never_both_pass_on_the_same_room(books):
    a, b = books
    both_checked = threading.Barrier(2, timeout=10)
    checks = {"a": 0, "b": 0}
    results = {}

    def admit(name, book):
        def check(others: InFlight) -> str | None:
            checks[name] += 1
            if checks[name] == 1:
                both_checked.wait()  # each has read the book before either writes it
            return None if others.spend.get(USDC, 0) + 60 <= 100 else "no room"

        results[name] = book.admit(("alice", name), 0, frozenset(), check, lambda: spending(60))

    threads = [threading.Thread(target=admit, args=(name, book)) for name, book in zip("ab", books)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results.values(), key=str) == [None, "no room"], results
    # The one that lost the race checked again, on the book with the winner's hold.
    assert sorted(checks.values()) == [1, 2]
    assert seen_by(a).spend[USDC] == 60


def test_many_admissions_from_two_replicas_fill_the_room_exactly(books):
    admitted = {"a": 0, "b": 0}

    def run(name, book):
        for i in range(40):
            admitted[name] += admit_within(book, ("alice", f"{name}-{i}"), 1000, 50)

    threads = [threading.Thread(target=run, args=(name, book)) for name, book in zip("ab", books)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert admitted["a"] + admitted["b"] == 20  # 1,000 of room, 50 each
    assert seen_by(books[0]).spend[USDC] == 1000


def test_a_release_after_a_balance_read_still_counts_for_that_read(books):
    a, b = books
    admit_within(a, ("alice", "t1"), 100, 60)
    before = b.epoch()  # a balance read starts
    a.release(("alice", "t1"))  # final: its effect may or may not be in what that read saw
    assert not a.holds(("alice", "t1"))
    assert seen_by(b, since=before).spend[USDC] == 60
    assert seen_by(b, since=b.epoch()).trades == 0  # a read that started after it shows it


def test_a_trade_whose_transaction_the_balances_show_counts_only_its_loss(books):
    a, b = books
    a.admit(("alice", "t1"), 0, frozenset(), lambda others: None, lambda: spending(60, loss=7))
    others = seen_by(b, settled=frozenset({("alice", "t1")}))
    assert (others.spend, others.buys, others.loss, others.trades) == ({}, {}, 7, 1)


def test_a_trade_held_again_by_an_adopting_replica_counts_once(books, own_redis):
    a, b = books
    admit_within(a, ("alice", "t1"), 1000, 60)
    b.hold(("alice", "t1"), spending(60))  # A presumed dead: B follows its transaction
    c = SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="c")
    assert seen_by(c).spend[USDC] == 60
    b.release(("alice", "t1"))
    assert seen_by(c, since=c.epoch()).trades == 0


def test_a_replica_that_lets_go_of_a_trade_another_took_over_leaves_the_others_hold(books, own_redis):
    a, b = books
    admit_within(a, ("alice", "t1"), 1000, 60)  # A admitted it, then stalled: presumed dead
    b.hold(("alice", "t1"), spending(60))  # B took the trade over (its transaction, or a fresh admission)
    a.release(("alice", "t1"))  # A wakes, finds the trade is not its own any more, lets go
    c = SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="c")
    assert seen_by(c, since=c.epoch()).spend[USDC] == 60  # still held, by B
    b.release(("alice", "t1"))
    assert seen_by(c, since=c.epoch()).trades == 0


def test_the_holds_of_a_replica_that_stops_renewing_lapse_after_its_lease(own_redis):
    gone = SharedReservations(own_redis.client(), WALLET, lease_s=0.3, replica_id="gone")
    alive = SharedReservations(own_redis.client(), WALLET, lease_s=0.3, replica_id="alive")
    admit_within(gone, ("alice", "from-gone"), 1000, 60)
    admit_within(alive, ("alice", "from-alive"), 1000, 40)
    deadline = time.monotonic() + 10
    # While `alive` renews its hold, only the other one lapses.
    while seen_by(alive, key=("bob", "probe")).spend.get(USDC) != 40:
        assert time.monotonic() < deadline, "the hold of the replica that stopped renewing did not lapse"
        alive.renew()
    probe = SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="probe")
    assert seen_by(probe).spend[USDC] == 40
    assert admit_within(probe, ("alice", "later"), 1000, 10)  # the lapsed hold is dropped with it
    assert sorted(own_redis.client().hkeys(f"tw:live:held:{WALLET}")) == [b"alice\x00from-alive", b"alice\x00later"]


def test_while_redis_does_not_answer_nothing_is_admitted_and_holds_are_written_after(own_redis):
    book = SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="a")
    own_redis.halt(keep_data=True)
    with pytest.raises(TradewireError) as refused:
        book.admit(("alice", "t1"), 0, frozenset(), lambda others: None, lambda: spending(60))
    assert refused.value.reason == "STORE_UNAVAILABLE"
    with pytest.raises(TradewireError) as unread:
        book.epoch()
    assert unread.value.reason == "STORE_UNAVAILABLE"
    book.hold(("alice", "sent"), spending(30))  # a sent transaction found at start-up: not lost
    assert book.holds(("alice", "sent"))
    own_redis.start()
    assert book.renew() == 1
    assert seen_by(SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="b")).spend[USDC] == 30


def test_a_check_that_cannot_read_the_daily_loss_refuses_the_trade(own_redis):
    book = SharedReservations(own_redis.client(), WALLET, lease_s=30, replica_id="a")

    def check(others: InFlight):
        raise redis.ConnectionError("the daily loss total is in Redis too")

    with pytest.raises(TradewireError) as refused:
        book.admit(("alice", "t1"), 0, frozenset(), check, lambda: spending(60))
    assert refused.value.reason == "STORE_UNAVAILABLE" and not book.holds(("alice", "t1"))
