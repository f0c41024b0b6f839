"""The audit trail in a real QuestDB, written by a real gateway under mixed traffic on every
protocol, counted with SQL over the PG wire: exactly one row per request, per auth attempt
and per transition — also when QuestDB is stopped mid-run and started again, and when the
gateway is killed before its rows went out."""

import asyncio
import time
import uuid

import psycopg
import pytest

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually
from tradewire.core.audit.journal import read_journal
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
FILLED_TRANSITIONS = 9  # RECEIVED … FILLED


@pytest.fixture(scope="module")
def audited_gateway(tmp_path_factory, questdb):
    process = GatewayProcess(tmp_path_factory.mktemp("audited"), env={
        "TRADEWIRE_AUDIT__QUESTDB_CONF": questdb.conf,
        "TRADEWIRE_AUDIT__FLUSH_INTERVAL_S": "0.05",
    }).start()
    yield process
    assert process.stop() == 0


class Tally:
    """What the test did, to compare with what QuestDB holds."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.requests = 0
        self.auth_attempts = 0
        self.transitions = 0
        self.n = 0

    def headers(self) -> dict[str, str]:
        self.n += 1
        return {"x-correlation-id": f"{self.run}-c{self.n}"}


async def mixed_traffic(gateway, tally: Tally) -> None:
    """On each protocol: fills, a validation failure, a bad key, a missing trade, anonymous health."""
    for protocol in PROTOCOLS:
        client = make_client(protocol, gateway)
        try:
            for i in range(2):
                request = pb.TradeRequest(request_id=f"{tally.run}-{protocol}-{i}-{uuid.uuid4().hex[:4]}",
                                          mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                                          amount="0.01", slippage_bps=100)
                await client.unary("ExecuteTrade", request, gateway.key("alice"), headers=tally.headers())
                tally.requests += 1
                tally.auth_attempts += 1
                tally.transitions += FILLED_TRANSITIONS
            failures = [
                ("ExecuteTrade", pb.TradeRequest(request_id=f"{tally.run}-bad", mode=1, input_mint="x",
                                                 output_mint=USDC, amount="1"), gateway.key("alice")),
                ("GetTrade", spb.GetTradeRequest(request_id="nope"), "tw_alice001_" + "q" * 40),
                ("GetTrade", spb.GetTradeRequest(request_id="nope"), gateway.key("alice")),
            ]
            for method, request, key in failures:
                with pytest.raises(RpcFailure):
                    await client.unary(method, request, key, headers=tally.headers())
                tally.requests += 1
                tally.auth_attempts += 1
            await client.unary("HealthCheck", spb.HealthCheckRequest(), None, headers=tally.headers())
            tally.requests += 1  # no credentials: no auth attempt
        finally:
            await client.close()


def pg_counts(questdb, run: str) -> dict[str, tuple[int, int]]:
    queries = {
        "tw_requests": f"SELECT count(), count_distinct(event_id) FROM tw_requests WHERE correlation_id LIKE '{run}-%'",
        "tw_auth_attempts": ("SELECT count(), count_distinct(event_id) FROM tw_auth_attempts "
                             f"WHERE correlation_id LIKE '{run}-%'"),
        "tw_transitions": ("SELECT count(), count_distinct(event_id) FROM tw_transitions "
                           f"WHERE request_id LIKE '{run}-%'"),
    }
    with psycopg.connect(host="127.0.0.1", port=questdb.pg_port, user="admin", password="quest",
                         dbname="qdb", autocommit=True) as conn:
        return {table: tuple(conn.execute(sql).fetchone()) for table, sql in queries.items()}


def expected(tally: Tally) -> dict[str, tuple[int, int]]:
    return {"tw_requests": (tally.requests, tally.requests),
            "tw_auth_attempts": (tally.auth_attempts, tally.auth_attempts),
            "tw_transitions": (tally.transitions, tally.transitions)}


async def settle(questdb, tally: Tally, timeout_s: float = 90) -> dict:
    """Poll (with a deadline) until the counts reach what was sent; then they must be exact."""
    want = expected(tally)
    deadline = time.monotonic() + timeout_s
    counts: dict = {}
    while time.monotonic() < deadline:
        try:
            counts = await asyncio.to_thread(pg_counts, questdb, tally.run)
        except psycopg.Error:
            counts = {}
        if counts and all(counts[t][0] >= want[t][0] for t in want):
            break
        await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
    return counts


async def test_one_row_per_request_auth_attempt_and_transition(audited_gateway, questdb):
    tally = Tally(f"e2e{uuid.uuid4().hex[:8]}")
    await mixed_traffic(audited_gateway, tally)
    assert await settle(questdb, tally) == expected(tally)
    # Every table names a caller alike (the key's owner), so they join; the key id is kept beside it.
    trades = await questdb.query(
        f"SELECT principal, key_label FROM tw_requests WHERE correlation_id LIKE '{tally.run}-%' "
        "AND method = 'ExecuteTrade' AND code = 'OK'")
    assert trades and {tuple(row) for row in trades} == {("alice", "tw_alice001")}
    transitions = await questdb.query(
        f"SELECT DISTINCT principal FROM tw_transitions WHERE request_id LIKE '{tally.run}-%'")
    assert transitions == [["alice"]]
    # A trade joins the call that placed it: its transitions and fill, with that call's protocol and key.
    joined = await questdb.query(
        "SELECT r.protocol, r.key_label, count() FROM tw_requests r JOIN tw_fills f "
        "ON r.principal = f.principal AND r.trade_request_id = f.request_id "
        f"WHERE r.correlation_id LIKE '{tally.run}-%' AND r.method = 'ExecuteTrade' AND r.code = 'OK'")
    placed = sum(count for _, _, count in joined)
    assert placed == len(trades) and {row[1] for row in joined} == {"tw_alice001"}, joined


async def audit_component(gateway) -> spb.ComponentHealth:
    client = make_client("grpc", gateway)
    try:
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), gateway.key("alice"))
    finally:
        await client.close()
    return next(c for c in health.components if c.name == "audit")


async def test_questdb_outage_mid_run_ends_with_the_same_counts(audited_gateway, questdb):
    tally = Tally(f"out{uuid.uuid4().hex[:8]}")
    await mixed_traffic(audited_gateway, tally)
    await asyncio.to_thread(questdb.stop)
    try:
        await mixed_traffic(audited_gateway, tally)  # spooled while QuestDB is down
        down = await audit_component(audited_gateway)  # health says so, and that nothing is lost
        assert down.status == spb.SERVING_STATUS_DEGRADED and "spooled locally" in down.message, down
    finally:
        await asyncio.to_thread(questdb.start)
    await mixed_traffic(audited_gateway, tally)
    assert await settle(questdb, tally, timeout_s=120) == expected(tally)
    assert (await audit_component(audited_gateway)).status == spb.SERVING_STATUS_SERVING


def rows_of_the_run(journal, run: str) -> list:
    """The rows of ``journal`` that a Tally's calls made (not, e.g., the start-up health probe's)."""
    return [event for event in read_journal(journal)
            if str(event.columns.get("correlation_id") or event.columns.get("request_id") or "").startswith(run)]


async def test_a_killed_gateways_unflushed_rows_land_once_after_its_restart(tmp_path, questdb):
    # Rows wait a minute for their batch here, so none has reached QuestDB when the process is
    # killed: every one of them has to come back from the write-ahead file, and only once.
    gateway = GatewayProcess(tmp_path, env={"TRADEWIRE_AUDIT__QUESTDB_CONF": questdb.conf,
                                            "TRADEWIRE_AUDIT__FLUSH_INTERVAL_S": "60"}).start()
    tally = Tally(f"kill{uuid.uuid4().hex[:8]}")
    try:
        await mixed_traffic(gateway, tally)
        fills = tally.transitions // FILLED_TRANSITIONS  # (a fill row per trade, beside the counted tables)
        rows = sum(want for want, _ in expected(tally).values()) + fills
        ahead = tmp_path / "data" / "audit.spool.jsonl.ahead"
        await eventually(lambda: len(rows_of_the_run(ahead, tally.run)) == rows,
                         what="the run's rows in the write-ahead file")
        gateway.proc.kill()  # SIGKILL: nothing of the shutdown runs
        gateway.wait_exit(10)
        assert await asyncio.to_thread(pg_counts, questdb, tally.run) == {t: (0, 0) for t in expected(tally)}
        gateway.start()
        assert await settle(questdb, tally, timeout_s=120) == expected(tally)
    finally:
        gateway.stop()
