"""Two gateway replicas on one Redis behave as one service: a request id executes once
whichever replica gets it, a caller's rate limit and in-flight limit hold across both, a
stream (or GetTrade) on one replica follows a trade running on the other to its end, a
CancelTrade on one stops a trade running on the other, a webhook left undelivered by a
replica that died goes out from the other, signed with the one key, and an API key made or
revoked once works or stops on both."""

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from support.clients import GrpcClient, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.redis_server import RedisServer
from support.trading import balance, equals, eventually, found, metric, reached, trade, unique
from support.webhook_receiver import WebhookReceiver
from tradewire.core import lifecycle
from tradewire.core.audit import read_journal
from tradewire.core.webhooks import verify
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, redis_server):
    env = {
        "TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
        "TRADEWIRE_PAPER__REALTIME": "true",
        "TRADEWIRE_PAPER__LATENCY_MS": "1200",
        "TRADEWIRE_LIMITS__REQUESTS_PER_S": "0.05",
        "TRADEWIRE_LIMITS__BURST": "40",
    }
    a = GatewayProcess(tmp_path_factory.mktemp("replica-a"), env=dict(env)).start()
    b = GatewayProcess(tmp_path_factory.mktemp("replica-b"), env=dict(env)).start()
    yield a, b
    assert a.stop() == 0 and b.stop() == 0


async def test_same_request_id_on_both_replicas_executes_once(replicas):
    a, b = replicas
    key = a.key("alice")
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    try:
        before = await balance(on_a, key)
        request = trade(unique("twice"), amount="0.5")
        (first, _), (second, _) = await asyncio.gather(on_a.unary("ExecuteTrade", request, key),
                                                       on_b.unary("ExecuteTrade", request, key))
        assert first == second and first.status == pb.TRADE_STATUS_FILLED
        history, _ = await on_b.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=500), key)
        assert [t.request_id for t in history.trades].count(request.request_id) == 1
        after = await balance(on_b, key)
        fees = Decimal(first.fees.total_lamports) / 10**9
        assert before - after == Decimal("0.5") + fees  # debited once, seen the same on both
    finally:
        await on_a.close()
        await on_b.close()


def keys_command(redis_url: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`tradewire keys ...` as an operator runs it, with the replicas' shared store (or none),
    auditing to the journal in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env["TRADEWIRE_STORAGE__DATA_DIR"] = str(data_dir)
    if redis_url:
        env["TRADEWIRE_SHARED__REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "keys", *args], capture_output=True,
                          text=True, timeout=30, env=env)


async def refusal_of(client, key: str) -> RpcFailure | None:
    """The refusal of a call with ``key``, None when it passed."""
    try:
        await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
    except RpcFailure as failure:
        return failure
    return None


@pytest.mark.parametrize("protocols", [("grpc", "http"), ("connect-proto", "grpc-web")])
async def test_a_key_made_or_revoked_once_works_or_stops_on_every_replica(replicas, redis_server, protocols,
                                                                          tmp_path):
    made = keys_command(redis_server.url, "create", "--owner", unique("carol"), "--scopes", "read",
                        data_dir=tmp_path / "operator")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    clients = [make_client(protocol, replica) for protocol, replica in zip(protocols, replicas)]
    try:
        for client in clients:  # at once, without a restart
            history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
            assert not history.trades
        revoked = keys_command(redis_server.url, "revoke", key[:11], data_dir=tmp_path / "operator")
        assert revoked.returncode == 0, revoked.stderr
        audited = [{**row.symbols, **row.columns} for row in read_journal(tmp_path / "operator" / "audit.jsonl")]
        assert [(row["action"], row["target"], row["store"]) for row in audited] == [
            ("key_created", key[:11], "redis"), ("key_revoked", key[:11], "redis")]
        for client in clients:  # once each replica's copy of the key is a second old
            refused = await eventually(lambda c=client: refusal_of(c, key), timeout=5,
                                       what="the revoked key refused")
            assert refused.code == "UNAUTHENTICATED" and refused.reason == "API_KEY_REVOKED", refused
    finally:
        for client in clients:
            await client.close()


async def test_a_replica_moved_to_redis_brings_the_keys_of_its_own_database(replicas, redis_server, tmp_path):
    """Its local keys are copied into Redis at its start, so every other replica knows them."""
    workdir = tmp_path / "moved"
    made = keys_command("", "create", "--db", str(workdir / "data" / "auth.db"), "--owner", unique("dora"),
                        "--scopes", "read", data_dir=workdir / "data")
    assert made.returncode == 0, made.stderr
    moved = GatewayProcess(workdir, env={"TRADEWIRE_SHARED__REDIS_URL": redis_server.url}).start()
    client = make_client("grpc", replicas[0])
    try:
        history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), made.stdout.strip())
        assert not history.trades
        assert "copied 1 API key(s)" in moved.log_text()
    finally:
        await client.close()
        assert moved.stop() == 0


async def test_rate_limit_holds_across_replicas(replicas):
    a, b = replicas
    key = a.key("reader")
    clients = [make_client("grpc", a), make_client("http", b)]
    try:
        allowed = 0
        for i in range(60):
            try:
                await clients[i % 2].unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
                allowed += 1
            except RpcFailure as failure:
                assert failure.code == "RESOURCE_EXHAUSTED"
        assert allowed == 40  # one burst of 40 for the caller, not 40 per replica
    finally:
        for client in clients:
            await client.close()


async def test_stream_on_one_replica_follows_a_trade_on_the_other(replicas):
    a, b = replicas
    key = a.key("bob")
    on_a, on_b = GrpcClient(a.grpc_target), make_client("connect-json", b)
    request = trade(unique("cross"), amount="0.1")
    try:
        running = asyncio.create_task(on_a.unary("ExecuteTrade", request, key))
        await eventually(lambda: found(on_b, key, request.request_id), timeout=10,
                         what="the trade visible on B once A claimed it")
        events = await on_b.stream("StreamExecutionStatus",
                                   spb.StreamExecutionStatusRequest(request_id=request.request_id), key)
        result, _ = await running
        transitions = [e for e in events if e.kind == pb.STATUS_KIND_TRANSITION]
        assert [e.sequence for e in transitions] == list(range(1, len(transitions) + 1))
        assert transitions[-1].terminal and transitions[-1].result == result
        assert not running.exception()
    finally:
        await on_a.close()
        await on_b.close()


@pytest.fixture
def patient_replica(tmp_path, redis_server, replicas):
    """One more replica whose streams wait 10 s for a trade not opened yet (as in production)."""
    env = {"TRADEWIRE_SHARED__REDIS_URL": redis_server.url, "TRADEWIRE_PAPER__REALTIME": "true",
           "TRADEWIRE_PAPER__LATENCY_MS": "1200"}
    c = GatewayProcess(tmp_path, env=env, streams_config="[streams]\nawait_trade_s = 10\n").start()
    yield c
    assert c.stop() == 0


async def test_a_stream_opened_before_the_trade_follows_it_live_from_another_replica(replicas, patient_replica):
    a, _ = replicas
    key = a.key("bob")
    on_a, on_c = GrpcClient(a.grpc_target), GrpcClient(patient_replica.grpc_target)
    request = trade(unique("early"), amount="0.1")
    arrivals: list[tuple[float, pb.ExecutionStatus]] = []

    async def follow() -> None:
        call = on_c._callable("StreamExecutionStatus")(
            spb.StreamExecutionStatusRequest(request_id=request.request_id),
            metadata=(("authorization", f"Bearer {key}"),))
        async for event in call:
            arrivals.append((asyncio.get_running_loop().time(), event))

    try:
        following = asyncio.create_task(follow())
        # A call answered on the same connection after the stream was sent: the stream is open on C
        # (HTTP/2 delivers its frames in order) before the trade is claimed on A.
        await on_c.unary("HealthCheck", spb.HealthCheckRequest(), key)
        assert not following.done()
        result, _ = await on_a.unary("ExecuteTrade", request, key)
        ended_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(following, 5)
    finally:
        await on_a.close()
        await on_c.close()
    transitions = [e for _, e in arrivals if e.kind == pb.STATUS_KIND_TRANSITION]
    assert transitions[-1].terminal and transitions[-1].result == result
    # Live, not replayed at the end of the stream's 10 s wait: the first event came while the
    # trade ran (it takes 1.2 s), the last right after it ended.
    first_at = next(t for t, e in arrivals if e.kind == pb.STATUS_KIND_TRANSITION)
    assert ended_at - first_at > 0.8, (ended_at, first_at)
    assert arrivals[-1][0] - ended_at < 1.0


async def test_get_trade_on_one_replica_shows_a_trade_running_on_the_other_as_it_is(replicas):
    a, b = replicas
    key = a.key("bob")
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    request = trade(unique("current"), amount="0.1")
    try:
        running = asyncio.create_task(on_a.unary("ExecuteTrade", request, key))
        # the trade reached QUOTED on A (not stored until it commits)
        event = await reached(on_b, key, request.request_id, pb.TRADE_STATUS_QUOTED)
        seen, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
        assert lifecycle.rank(seen.status) >= lifecycle.rank(pb.TRADE_STATUS_QUOTED)
        assert seen.updated_at.ToNanoseconds() >= event.timestamp.ToNanoseconds()
        result, _ = await running
        final, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
        assert final == result
    finally:
        await on_a.close()
        await on_b.close()


IN_FLIGHT_PER_CALLER = 2
QUIET_S = 6.5


@pytest.fixture(scope="module")
def held_replicas(tmp_path_factory, redis_server):
    """Two more replicas whose paper trades stay running (20 s of simulated latency, the first
    half cancellable) and whose callers may each run IN_FLIGHT_PER_CALLER trades at once."""
    env = {
        "TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
        "TRADEWIRE_PAPER__REALTIME": "true",
        "TRADEWIRE_PAPER__LATENCY_MS": "20000",
        "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_PER_PRINCIPAL": str(IN_FLIGHT_PER_CALLER),
        # Longer than redis-py's 5 s read timeout, shorter than the 10 s a trade builds quietly.
        "TRADEWIRE_STREAMS__HEARTBEAT_S": str(QUIET_S),
    }
    a = GatewayProcess(tmp_path_factory.mktemp("held-a"), env=dict(env)).start()
    b = GatewayProcess(tmp_path_factory.mktemp("held-b"), env=dict(env)).start()
    yield a, b
    assert a.stop() == 0 and b.stop() == 0


async def in_flight(client, key: str) -> int:
    health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
    return health.caller.in_flight


async def test_in_flight_limit_of_a_caller_holds_across_replicas(held_replicas):
    a, b = held_replicas
    key = a.key("trader")  # no other test here trades as this caller: its count is this test's
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    held = [trade(unique("held"), amount="0.01") for _ in range(IN_FLIGHT_PER_CALLER)]
    late = trade(unique("late"), amount="0.01")
    running = [asyncio.create_task(on_a.unary("ExecuteTrade", request, key)) for request in held]
    try:
        await eventually(lambda: equals(in_flight(on_a, key), IN_FLIGHT_PER_CALLER), what="trades running on A")
        with pytest.raises(RpcFailure) as refused:  # B runs none of them, yet the caller is at its limit
            await on_b.unary("ExecuteTrade", late, key)
        assert refused.value.code == "RESOURCE_EXHAUSTED" and refused.value.reason == "TOO_MANY_IN_FLIGHT"
        assert "across all replicas" in refused.value.message

        for request in held:  # they finish (cancelled while still building)
            cancelled, _ = await on_a.unary("CancelTrade", spb.CancelTradeRequest(request_id=request.request_id), key)
            assert cancelled.status == pb.TRADE_STATUS_CANCELLED
        await asyncio.gather(*running, return_exceptions=True)
        running.append(asyncio.create_task(on_b.unary("ExecuteTrade", late, key)))  # the same request id
        await eventually(lambda: equals(in_flight(on_b, key), 1), what="the late trade running on B")
        assert not running[-1].done()
    finally:
        for request, client in [*((r, on_a) for r in held), (late, on_b)]:
            try:
                await client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request.request_id), key)
            except RpcFailure:
                pass  # already ended, or never admitted
        await asyncio.gather(*running, return_exceptions=True)
        await on_a.close()
        await on_b.close()


async def test_cancel_on_one_replica_stops_a_trade_running_on_the_other(held_replicas):
    a, b = held_replicas
    key = a.key("alice")
    on_a, on_b = GrpcClient(a.grpc_target), make_client("http", b)
    request = trade(unique("cancel-across"), amount="0.01")
    running = asyncio.create_task(on_a.unary("ExecuteTrade", request, key))

    async def cancels_counted() -> float:
        return sum([await metric(g, "tradewire_cancel_requests_total", source="request", outcome="cancelled")
                    for g in (a, b)])

    try:
        await eventually(lambda: found(on_b, key, request.request_id), what="the trade claimed")
        counted_before = await cancels_counted()
        cancel = spb.CancelTradeRequest(request_id=request.request_id, reason="from the other replica")
        cancelled, _ = await on_b.unary("CancelTrade", cancel, key)  # B does not run it: A stops it
        assert cancelled.status == pb.TRADE_STATUS_CANCELLED
        assert await cancels_counted() == counted_before + 1  # one request (A counted it too)
        stored, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
        assert stored.status == pb.TRADE_STATUS_CANCELLED and "from the other replica" in stored.error.message
        with pytest.raises(RpcFailure) as stopped:
            await running
        assert stopped.value.reason == "TRADE_CANCELLED"
        again, _ = await on_b.unary("CancelTrade", cancel, key)
        assert again == cancelled  # stored: answered by B itself now
    finally:
        running.cancel()
        await on_a.close()
        await on_b.close()


async def test_a_stream_on_one_replica_outlasts_a_quiet_spell_of_a_trade_on_the_other(held_replicas):
    a, b = held_replicas
    key = a.key("alice")
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    request = trade(unique("quiet"), amount="0.01")
    running = asyncio.create_task(on_a.unary("ExecuteTrade", request, key))
    try:
        await eventually(lambda: reached(on_b, key, request.request_id, pb.TRADE_STATUS_QUOTED), what="quoted on A")
        follow = spb.StreamExecutionStatusRequest(request_id=request.request_id)
        events = on_b.iterate("StreamExecutionStatus", follow, key).__aiter__()
        while (await anext(events)).kind != pb.STATUS_KIND_HEARTBEAT:
            pass  # the trade's events so far; then nothing for QUIET_S, longer than a Redis read may block
        await on_a.unary("CancelTrade", spb.CancelTradeRequest(request_id=request.request_id), key)
        rest = [e async for e in events]
        assert rest[-1].stage == pb.TRADE_STATUS_CANCELLED
    finally:
        running.cancel()
        await on_a.close()
        await on_b.close()


async def test_a_dead_replicas_webhook_goes_out_from_the_other(tmp_path):
    # A Redis of its own: replicas share one outbox, and the module's other replicas (alive, with
    # no webhook configuration) must not take this test's deliveries.
    redis_server = RedisServer(tmp_path / "redis").start()
    receiver = WebhookReceiver(always_fail={"/hooks"})  # down until replica A is dead
    config = (  # no [webhooks] secret: the generated one is shared through Redis
        '[webhooks]\nallowed_schemes = ["http", "https"]\nidle_poll_s = 0.2\ntimeout_s = 1.0\n'
        "[webhooks.retry]\nmax_attempts = 100\ninitial_backoff_s = 0.1\nmax_backoff_s = 0.3\n"
        f'[[webhooks.endpoints]]\nprincipal = "alice"\nurl = "{receiver.url("/hooks")}"\n'
    )
    env = {"TRADEWIRE_SHARED__REDIS_URL": redis_server.url}
    a = GatewayProcess(tmp_path / "a", extra_config=config, env=dict(env)).start()
    b = GatewayProcess(tmp_path / "b", extra_config=config, env=dict(env)).start()
    request = trade(unique("hook"), amount="0.01")
    try:
        on_a = GrpcClient(a.grpc_target)
        try:
            result, _ = await on_a.unary("ExecuteTrade", request, a.key("alice"))
        finally:
            await on_a.close()
        await eventually(lambda: receiver.at("/hooks"), what="a first (refused) attempt")
        a.proc.kill()  # SIGKILL: nothing of A's shutdown runs
        a.proc.wait(10)
        failed = len(receiver.at("/hooks"))
        receiver.always_fail.clear()

        accepted = await eventually(lambda: [d for d in receiver.at("/hooks") if d.answered == 204],
                                    what="the webhook delivered by replica B")
        assert len(accepted) == 1 and accepted[0].json["requestId"] == request.request_id
        assert accepted[0].json["trade"]["tradeId"] == result.trade_id
        attempts = receiver.at("/hooks")
        assert len(attempts) > failed
        assert {d.headers["tradewire-delivery"] for d in attempts} == {accepted[0].json["id"]}  # one delivery
        key = redis.Redis.from_url(redis_server.url).get("tw:webhook-secret")
        assert all(verify(key, d.body, d.headers["tradewire-signature"]) for d in attempts)  # A's and B's alike
    finally:
        a.stop()
        assert b.stop() == 0
        receiver.close()
        redis_server.stop()
