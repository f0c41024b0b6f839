"""A trade recovered after its gateway crashed publishes only sequences above every one it may
have published before — a runner publishes some transitions before it stores them (SUBMITTED and
CONFIRMED past the point of no return, every stage before it) — on the embedded store and on the
shared one alike: a stream resuming at its last-seen + 1 gets the outcome, and no two audit rows
of a trade share a sequence."""

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aredis

from lifecycle_support import FILL, FILLS, Gate, ScriptedExecutor, order, runner
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import Outcome, Progress
from tradewire.core.shared.redis_events import RedisEventBus
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.sqlite import SqliteStore
from tradewire.v1 import trade_pb2 as pb

SENDING = [pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SIGNED, pb.TRADE_STATUS_SIMULATED, pb.TRADE_STATUS_SUBMITTED]


class Settling(ScriptedExecutor):
    """Settles a trade left past its point of no return as the paper executor does: EXPIRED
    when its fill never landed, else FILLED (CONFIRMED first)."""

    def __init__(self, *attempts, landed: bool = False) -> None:
        super().__init__(*attempts, name="paper")
        self.landed = landed

    async def reconcile(self, order, result):
        if self.landed:
            return Outcome(pb.TRADE_STATUS_FILLED, FILL, progress=(Progress(pb.TRADE_STATUS_CONFIRMED, "landed"),))
        return Outcome(pb.TRADE_STATUS_EXPIRED, error=TradewireError("TRADE_EXPIRED", "nothing was booked"))


class Gateway:
    """Processes of one gateway on the same data, each started after the previous one crashed:
    one SQLite file, or one replica id on Redis. With Redis, a process that crashes published its
    events to its own streams only (it died before they reached the shared status stream, as a
    crash during a Redis outage leaves them): only the last one ``shares_stream``."""

    def __init__(self, kind: str, tmp_path, redis_url: str | None) -> None:
        self.kind, self.tmp_path, self.redis_url = kind, tmp_path, redis_url
        self.replica = f"replica-{uuid.uuid4().hex[:8]}"
        self.principal = f"alice-{uuid.uuid4().hex[:8]}"
        self.buses: list[RedisEventBus] = []
        self.clients: list = []
        self.processes: list = []

    def start(self, executor, *, shares_stream: bool):
        if self.kind == "sqlite":
            store, hub = SqliteStore(self.tmp_path / "trades.db"), StatusHub()
        else:
            client = redis.Redis.from_url(self.redis_url)
            self.clients.append(client)
            store, hub = RedisTradeStore(client, self.replica), StatusHub()
            if shares_stream:
                async_client = aredis.Redis.from_url(self.redis_url)
                self.clients.append(async_client)
                hub = StatusHub(bus=RedisEventBus(async_client))
                self.buses.append(hub.bus)
        process = runner(executor, store, hub=hub)
        self.processes.append(process)
        return process

    async def close(self) -> None:
        for process in self.processes:  # the crashed ones' tasks still wait in their executors
            for trade in list(process.inflight):
                if trade.task is not None:
                    trade.task.cancel()
                    await asyncio.gather(trade.task, return_exceptions=True)
        for bus in self.buses:
            await bus.close()
        for client in self.clients:
            await client.aclose() if isinstance(client, aredis.Redis) else client.close()


@pytest.fixture(params=["sqlite", "redis"])
async def gateway(request, tmp_path):
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    g = Gateway(request.param, tmp_path, url)
    yield g
    await g.close()


def sequences(process) -> list[int]:
    """The sequences of the transitions ``process`` published (its audit rows)."""
    return [e.sequence for e in process.recorder.transitions]


async def ended(process, key) -> pb.TradeResult:
    return await asyncio.wait_for(asyncio.shield(process.inflight.get(key).done), 5)


async def resumed_stream(process, key, from_sequence: int) -> list[pb.ExecutionStatus]:
    """What a stream resuming at ``from_sequence`` gets, up to the trade's end."""
    async with asyncio.timeout(5):
        return [e async for e in process.events(*key, from_sequence)]


@pytest.mark.parametrize("landed", [False, True], ids=["expired", "filled"])
async def test_a_trade_recovered_past_its_point_of_no_return_ends_after_every_sequence_it_published(gateway, landed):
    gate = Gate()
    # published unstored: SUBMITTED, and CONFIRMED too when the fill landed before the crash
    crashed = gateway.start(Settling([*SENDING, *([pb.TRADE_STATUS_CONFIRMED] if landed else []), gate]),
                            shares_stream=False)
    key = crashed.admit(order("kill-2", gateway.principal)).key
    await gate.reached.wait()
    seen = sequences(crashed)
    assert seen == list(range(1, 8 + landed))  # ... 6 SIMULATED (stored), 7 SUBMITTED (8 CONFIRMED), never stored

    restarted = gateway.start(Settling(landed=landed), shares_stream=True)
    assert await restarted.recover() == {"resumed": 0, "reconciled": 1, "failed": 0}
    result = await ended(restarted, key)
    assert result.status == (pb.TRADE_STATUS_FILLED if landed else pb.TRADE_STATUS_EXPIRED)
    assert min(sequences(restarted)) > max(seen)  # no audit row shares a sequence with one before the crash
    rest = await resumed_stream(restarted, key, max(seen) + 1)  # the client resumes after the last it saw
    assert rest and rest[-1].terminal and rest[-1].result.status == result.status
    stored = [e.sequence for e in restarted.store.get(*key).events]
    assert stored == sorted(set(stored)) and stored[-1] == sequences(restarted)[-1]


async def test_a_trade_that_crashes_again_while_it_resumes_never_reuses_a_sequence(gateway):
    first_gate, second_gate = Gate(), Gate()
    first = gateway.start(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, first_gate], name="paper"), shares_stream=False)
    key = first.admit(order("twice", gateway.principal)).key
    await first_gate.reached.wait()  # 1–4 published, none stored

    second = gateway.start(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SIGNED, second_gate],
                                            name="paper"), shares_stream=False)
    assert await second.recover() == {"resumed": 1, "reconciled": 0, "failed": 0}
    await second_gate.reached.wait()  # it started over after 1–4 (and more), and crashed again unstored
    assert min(sequences(second)) > max(sequences(first))

    third = gateway.start(ScriptedExecutor(FILLS, name="paper"), shares_stream=True)
    assert await third.recover() == {"resumed": 1, "reconciled": 0, "failed": 0}
    assert (await ended(third, key)).status == pb.TRADE_STATUS_FILLED
    assert min(sequences(third)) > max(sequences(second))
    rest = await resumed_stream(third, key, max(sequences(second)) + 1)
    assert rest[-1].terminal and rest[-1].stage == pb.TRADE_STATUS_FILLED


async def test_a_trade_resumed_after_a_clean_stop_continues_exactly_and_a_crash_then_reuses_nothing(gateway):
    first_gate, second_gate = Gate(), Gate()
    first = gateway.start(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, first_gate], name="paper"), shares_stream=False)
    key = first.admit(order("stopped", gateway.principal)).key
    await first_gate.reached.wait()
    assert await first.interrupt_all() == 1  # a clean stop: 1–4 stored, all it published

    second = gateway.start(ScriptedExecutor([pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_SIGNED, second_gate],
                                            name="paper"), shares_stream=False)
    assert await second.recover() == {"resumed": 1, "reconciled": 0, "failed": 0}
    await second_gate.reached.wait()
    assert sequences(second) == [5]  # SIGNED right after what was stored; then a crash, unstored

    third = gateway.start(ScriptedExecutor(FILLS, name="paper"), shares_stream=True)
    assert await third.recover() == {"resumed": 1, "reconciled": 0, "failed": 0}
    assert (await ended(third, key)).status == pb.TRADE_STATUS_FILLED
    assert min(sequences(third)) > 5
    rest = await resumed_stream(third, key, 6)
    assert rest[-1].terminal and rest[-1].stage == pb.TRADE_STATUS_FILLED
