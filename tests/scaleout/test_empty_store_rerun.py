"""Redis restarts EMPTY while replica A's paper trade is past its point of no return, and the
caller retries the same request id on replica B, as the error told it to: B runs it again and it
ends FILLED, booked once. A stops its own run without writing anything about it into the emptied
store — neither its settlement (the voiding of its fill id) nor a late booking lands there, and
neither can touch the fill id of B's run — so B's run is never refused and never left SUBMITTED
while its owner is alive (nobody adopts the trades of a live replica). Two replicas in this
process on one redis-server of this module's own."""

import asyncio
import contextlib
from decimal import Decimal

import pytest

from support.in_process import call_with_key, core_with_key
from support.redis_server import RedisServer
from support.trading import eventually, trade
from tradewire.core.errors import TradewireError
from tradewire.core.executors.paper import paper_fill_id
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_emptyrer_" + "e" * 40
OWNER = "erin"
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
PAPER = pb.TRADING_MODE_PAPER


@pytest.fixture
def redis_store(tmp_path):
    server = RedisServer(tmp_path / "redis").start()  # its own: one test restarts it empty
    yield server
    server.stop()


@pytest.fixture
async def replicas(tmp_path, redis_store):
    """Replicas A and B (started cores) on one Redis."""
    shared = {"redis_url": redis_store.url, "store_cooldown_s": 0.2}
    async with contextlib.AsyncExitStack() as cores:
        a, b = [await cores.enter_async_context(core_with_key(
            tmp_path / name, KEY, OWNER, shared=shared, paper={"assume_accounts_exist": True}))
            for name in ("a", "b")]
        assert a.shared.replica_id != b.shared.replica_id
        yield a, b


class Landing:
    """Holds a replica's paper trades where they land — after SUBMITTED (stored: past the point of
    no return), before their fill is booked — until the test lets them through."""

    def __init__(self, core) -> None:
        self.runner = core.runner
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()
        core.service.executors[pb.TRADING_MODE_PAPER]._wait_half_latency = self._wait

    async def _wait(self) -> None:
        if any(t.stage == pb.TRADE_STATUS_SUBMITTED for t in self.runner.inflight):  # (the landing half)
            self.reached.set()
            await self.opened.wait()

    def open(self) -> None:
        self.opened.set()


def ctx(method: str = "ExecuteTrade"):
    return call_with_key(KEY, method)


async def get_trade(core, request_id: str) -> pb.TradeResult:
    return await core.service.GetTrade(spb.GetTradeRequest(request_id=request_id), ctx("GetTrade"))


async def execute_once_the_store_answers(core, request: pb.TradeRequest) -> pb.TradeResult:
    """ExecuteTrade retried, as a caller does, while it is refused STORE_UNAVAILABLE (its cool-down)."""
    async def attempt():
        try:
            return await asyncio.wait_for(core.service.ExecuteTrade(request, ctx()), 20)
        except TradewireError as refused:
            if refused.reason != "STORE_UNAVAILABLE":
                raise
            return None
    return await eventually(attempt, timeout=20, what="ExecuteTrade answered")


async def starting(core) -> dict[str, int]:
    return {h.mint: h.amount for h in await core.service.executors[pb.TRADING_MODE_PAPER].starting_wallet()}


async def booked_once(core, filled: pb.TradeResult) -> None:
    """The positions are the starting wallet moved by this one fill (and its fees)."""
    start = await starting(core)
    wallet = {mint: h.amount for mint, h in core.store.holdings(OWNER, pb.TRADING_MODE_PAPER).items()}
    assert wallet[SOL] == start[SOL] - int(Decimal(filled.amount_in).scaleb(9)) - filled.fees.total_lamports
    assert wallet[USDC] == start[USDC] + int(Decimal(filled.amount_out).scaleb(6))


async def the_same_end_everywhere(a, b, redis_store, request: pb.TradeRequest, filled: pb.TradeResult) -> None:
    """GetTrade agrees on both replicas, a replay on either answers the same, and Redis holds the
    trade FILLED with no replica still listing it as running."""
    on_a, on_b = await get_trade(a, request.request_id), await get_trade(b, request.request_id)
    assert on_a == on_b == filled
    replays = [await asyncio.wait_for(core.service.ExecuteTrade(request, ctx()), 10) for core in (a, b)]
    assert replays == [filled, filled]
    client = redis_store.client()
    stored = pb.TradeResult.FromString(client.hget(f"tw:trade:{OWNER}:{request.request_id}", "result"))
    assert stored.status == pb.TRADE_STATUS_FILLED and stored.trade_id == filled.trade_id
    assert [k for k in client.scan_iter("tw:running:*") if client.scard(k)] == []
    assert a.runner.in_flight() == 0 and b.runner.in_flight() == 0


async def test_a_trade_cut_off_by_an_empty_redis_restart_and_retried_on_another_replica_fills_once(
        replicas, redis_store):
    a, b = replicas
    request = trade("empty-rerun-1", amount="0.2")
    held_on_a = Landing(a)
    first = asyncio.create_task(a.service.ExecuteTrade(request, ctx()))
    await asyncio.wait_for(held_on_a.reached.wait(), 10)  # SUBMITTED on A, its fill about to land
    run_on_a = a.runner.inflight.get((OWNER, request.request_id)).result.trade_id

    redis_store.halt()  # Redis goes away with everything it held...
    held_on_a.open()  # ...so A's booking does not get through: its caller is told to retry
    with pytest.raises(TradewireError) as cut_off:
        await asyncio.wait_for(first, 10)
    assert cut_off.value.reason == "STORE_UNAVAILABLE"
    redis_store.start()  # back, empty

    # A stops the run the store forgot, once the store answers, without writing anything of it back
    await eventually(lambda: a.runner.in_flight() == 0, timeout=20, what="A giving its run up")
    client = redis_store.client()
    assert not client.exists(f"tw:trade:{OWNER}:{request.request_id}")

    filled = await execute_once_the_store_answers(b, request)  # the retry, on B: it runs it again
    assert filled.status == pb.TRADE_STATUS_FILLED and filled.trade_id != run_on_a
    # the only fill id in the store is B's run's: A's settlement wrote none
    assert client.smembers(f"tw:fills:{OWNER}:{PAPER}") == {paper_fill_id(request.request_id, filled.trade_id).encode()}
    await booked_once(b, filled)
    await the_same_end_everywhere(a, b, redis_store, request, filled)


async def test_a_late_landing_of_a_run_the_emptied_store_forgot_books_nothing_and_leaves_the_rerun_alone(
        replicas, redis_store):
    """The restart falls between two of A's store calls (A sees no outage at all): the rerun on B
    claims the request id afresh, and A's fill lands after B's run took its starting wallet."""
    a, b = replicas
    request = trade("empty-rerun-2", amount="0.2")
    held_on_a, held_on_b = Landing(a), Landing(b)
    first = asyncio.create_task(a.service.ExecuteTrade(request, ctx()))
    await asyncio.wait_for(held_on_a.reached.wait(), 10)

    redis_store.client().flushdb()  # Redis restarted empty while A waited for its fill to land
    retry = asyncio.create_task(b.service.ExecuteTrade(request, ctx()))
    await asyncio.wait_for(held_on_b.reached.wait(), 10)  # B's run: SUBMITTED, its fill about to land
    # Meanwhile A's GetTrade still answers its own run (it does not know yet); B's, B's.
    assert (await get_trade(a, request.request_id)).trade_id != (await get_trade(b, request.request_id)).trade_id

    held_on_a.open()  # A's fill lands: refused, nothing booked, and A gives its run up
    await eventually(lambda: a.runner.in_flight() == 0, timeout=10, what="A giving its run up")
    assert not redis_store.client().keys("tw:fills:*")  # booked nothing, voided nothing

    held_on_b.open()
    filled = await asyncio.wait_for(retry, 10)
    assert filled.status == pb.TRADE_STATUS_FILLED
    await booked_once(b, filled)
    await the_same_end_everywhere(a, b, redis_store, request, filled)
    with pytest.raises(TradewireError) as lost:  # A's caller is invited to retry (it gets B's end then)
        await asyncio.wait_for(first, 10)
    assert (lost.value.reason, lost.value.retry_after_s) == ("STORE_UNAVAILABLE", 1.0)
    assert "lost trade" in lost.value.message
