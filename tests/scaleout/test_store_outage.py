"""When the shared store does not answer, calls fail UNAVAILABLE STORE_UNAVAILABLE with a retry
delay on every protocol — retryable, not INTERNAL — and the gateway serves again once it is back;
a trade the outage cut off ends then, and nothing of it is lost."""

import asyncio

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.clients import GrpcClient, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import free_port
from support.redis_server import RedisServer
from support.trading import balance, equals, eventually, found, metric, reached, stage_on, trade, transitions, unique
from tradewire.core.auth.api_keys import create_key
from tradewire.core.shared.redis_key_store import RedisApiKeyStore
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

PROTOCOLS = ("grpc", "connect-proto", "http")


def on_its_own_redis(tmp_path, **env):
    store = RedisServer(tmp_path / "redis").start()
    gateway = GatewayProcess(tmp_path / "gateway", env={"TRADEWIRE_SHARED__REDIS_URL": store.url, **env}).start()
    return gateway, store


@pytest.fixture
def gateway_on_its_own_redis(tmp_path):
    gateway, store = on_its_own_redis(tmp_path)
    yield gateway, store
    gateway.stop()
    store.stop()


@pytest.fixture
async def alice_on_a_slow_gateway(tmp_path):
    """(gateway, its Redis, Alice's key, a gRPC client): paper trades take 2 s to build and 2 s to land."""
    gateway, store = on_its_own_redis(tmp_path, TRADEWIRE_PAPER__REALTIME="true", TRADEWIRE_PAPER__LATENCY_MS="4000")
    client = GrpcClient(gateway.grpc_target)
    yield gateway, store, gateway.key("alice"), client
    await client.close()
    assert gateway.stop() == 0
    store.stop()


async def serving_again(client, key: str) -> bool:
    try:
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
    except RpcFailure as failure:
        if failure.reason == "STORE_UNAVAILABLE":
            return False
        raise
    return all(c.status == spb.SERVING_STATUS_SERVING for c in health.components if c.name == "store")


async def test_calls_during_a_store_outage_are_unavailable_and_retryable(gateway_on_its_own_redis):
    gateway, store = gateway_on_its_own_redis
    key = gateway.key("bob")  # no paper wallet yet: the one given after the outage is in the new store
    clients = {protocol: make_client(protocol, gateway) for protocol in PROTOCOLS}
    try:
        store.halt()
        for protocol, client in clients.items():
            with pytest.raises(RpcFailure) as refused:
                await client.unary("ExecuteTrade", trade(unique(f"outage-{protocol}"), amount="0.01"), key)
            failure = refused.value
            assert (failure.code, failure.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE"), (protocol, failure)
            assert failure.retry_after_s == 1.0 and "request_id" in failure.message, protocol
            if protocol == "http":
                assert failure.http_status == 503
        log = gateway.log_text()
        assert "the shared store did not answer" in log and "Traceback" not in log

        store.start()  # back (empty): the same calls go through again
        await eventually(lambda: serving_again(clients["grpc"], key), what="the store healthy again")
        for protocol, client in clients.items():
            result, _ = await client.unary("ExecuteTrade", trade(unique(f"after-{protocol}"), amount="0.01"), key)
            assert result.status == pb.TRADE_STATUS_FILLED, protocol
    finally:
        for client in clients.values():
            await client.close()


async def test_a_caller_seen_before_the_store_restarted_empty_gets_a_starting_wallet_again(gateway_on_its_own_redis):
    gateway, store = gateway_on_its_own_redis
    key = gateway.key("alice")
    client = GrpcClient(gateway.grpc_target)
    try:
        start = await balance(client, key)
        await client.unary("ExecuteTrade", trade(unique("before-restart"), amount="1"), key)
        assert await balance(client, key) < start
        store.halt()  # Redis restarts without persistence: her wallet is gone with everything else
        store.start()
        await eventually(lambda: serving_again(client, key), what="the store healthy again")

        assert await balance(client, key) == start  # read before any trade: the starting wallet again
        result, _ = await client.unary("ExecuteTrade", trade(unique("after-restart"), amount="1"), key)
        assert result.status == pb.TRADE_STATUS_FILLED
    finally:
        await client.close()


async def test_a_trade_cut_off_by_a_store_restart_ends_once_the_store_is_back(alice_on_a_slow_gateway):
    gateway, store, key, client = alice_on_a_slow_gateway
    request = trade(unique("cut-off"), amount="0.2")
    before = await balance(client, key)
    running = asyncio.create_task(client.unary("ExecuteTrade", request, key))
    followed = asyncio.create_task(client.stream(
        "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request.request_id), key))
    await asyncio.wait_for(reached(client, key, request.request_id, pb.TRADE_STATUS_SUBMITTED), 20)
    store.halt(keep_data=True)  # Redis restarts while the paper fill lands: the booking does not get through

    with pytest.raises(RpcFailure) as cut_off:
        await asyncio.wait_for(running, 20)
    assert (cut_off.value.code, cut_off.value.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")
    assert await metric(gateway, "tradewire_trades_awaiting_store") == 1
    store.start()  # back, with its data
    await eventually(lambda: serving_again(client, key), what="the store healthy again")  # (after its cool-down)

    await eventually(lambda: equals(stage_on(client, key, request.request_id), pb.TRADE_STATUS_EXPIRED),
                     what="the trade settled")
    assert await metric(gateway, "tradewire_trades_awaiting_store") == 0
    settled, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
    assert "nothing was booked" in settled.error.message
    assert await balance(client, key) == before
    with pytest.raises(RpcFailure) as replayed:  # the retry the caller was invited to make gets the end
        await client.unary("ExecuteTrade", request, key)
    assert replayed.value.reason == "TRADE_EXPIRED"
    changes = transitions(await asyncio.wait_for(followed, 20))
    assert [e.sequence for e in changes] == list(range(1, len(changes) + 1))
    assert [e.stage for e in changes[-2:]] == [pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_EXPIRED]
    assert "Traceback" not in gateway.log_text()


async def test_a_trade_whose_store_restarted_empty_is_not_written_back(alice_on_a_slow_gateway):
    gateway, store, key, client = alice_on_a_slow_gateway
    request = trade(unique("lost"), amount="0.2")
    running = asyncio.create_task(client.unary("ExecuteTrade", request, key))
    await asyncio.wait_for(reached(client, key, request.request_id, pb.TRADE_STATUS_SUBMITTED), 20)
    store.halt()  # Redis restarts without persistence: everything it held is gone
    with pytest.raises(RpcFailure) as cut_off:
        await asyncio.wait_for(running, 20)
    assert cut_off.value.reason == "STORE_UNAVAILABLE"
    store.start()

    await eventually(lambda: "is no longer in the shared store" in gateway.log_text(), what="the loss logged")
    assert await found(client, key, request.request_id) is None  # not written back into the empty store
    assert await metric(gateway, "tradewire_trades_awaiting_store") == 0
    assert await metric(gateway, "tradewire_trades_handed_over_total", direction="lost") == 0


def test_a_gateway_whose_store_does_not_answer_at_start_says_so_and_exits(tmp_path):
    nobody = free_port()  # nothing listens there
    gateway = GatewayProcess(tmp_path / "gw", extra_config=f'[shared]\nredis_url = "redis://127.0.0.1:{nobody}/0"\n')
    with pytest.raises(RuntimeError) as exited:
        gateway.start()
    assert "gateway exited with 1" in str(exited.value)
    log = gateway.log_text()
    assert "tradewire: the shared store ([shared] redis_url) does not answer" in log
    assert "Traceback" not in log


async def test_health_says_the_store_is_down_on_every_protocol_and_serving_again_once_it_is_back(
        gateway_on_its_own_redis):
    gateway, store = gateway_on_its_own_redis
    key = gateway.key("alice")
    clients = {protocol: make_client(protocol, gateway) for protocol in ("grpc", "http")}
    channel = grpc.aio.insecure_channel(gateway.grpc_target)
    standard = health_pb2_grpc.HealthStub(channel)

    async def standard_status() -> int:
        return (await standard.Check(health_pb2.HealthCheckRequest(service=""))).status

    async def store_component(client) -> int:
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)  # answered, not refused
        return next(c.status for c in health.components if c.name == "store")

    try:
        assert await standard_status() == health_pb2.HealthCheckResponse.SERVING
        store.halt(keep_data=True)
        await eventually(lambda: equals(standard_status(), health_pb2.HealthCheckResponse.NOT_SERVING),
                         what="grpc.health.v1 NOT_SERVING")
        for client in clients.values():
            assert await store_component(client) == spb.SERVING_STATUS_NOT_SERVING
        async with httpx.AsyncClient(timeout=5) as http:  # what a load balancer's HTTP check reads
            down = await http.get(f"{gateway.http_url}/v1/health")
        assert down.status_code == 503 and down.json()["status"] == "SERVING_STATUS_NOT_SERVING"
        store.start()
        await eventually(lambda: equals(standard_status(), health_pb2.HealthCheckResponse.SERVING),
                         what="grpc.health.v1 SERVING again")
        for client in clients.values():
            assert await eventually(lambda c=client: equals(store_component(c), spb.SERVING_STATUS_SERVING))
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{gateway.http_url}/v1/health")).status_code == 200
    finally:
        await channel.close()
        for client in clients.values():
            await client.close()


async def test_a_key_kept_in_redis_while_redis_does_not_answer(gateway_on_its_own_redis):
    """Its calls are refused STORE_UNAVAILABLE (retryable; never let through, never AUTH_INVALID),
    and HealthCheck still answers, as it does to a caller without a key."""
    gateway, store = gateway_on_its_own_redis
    key, _ = create_key(RedisApiKeyStore(store.client()), unique("erin"), "", ["read"])
    clients = {protocol: make_client(protocol, gateway) for protocol in PROTOCOLS}
    try:
        store.halt(keep_data=True)
        for protocol, client in clients.items():
            health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
            assert next(c.status for c in health.components if c.name == "store") == spb.SERVING_STATUS_NOT_SERVING
            with pytest.raises(RpcFailure) as refused:
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
            assert (refused.value.code, refused.value.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE"), protocol
        assert "Traceback" not in gateway.log_text()
        store.start()
        await eventually(lambda: serving_again(clients["grpc"], key), what="the store healthy again")
        history, _ = await clients["http"].unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
        assert not history.trades
    finally:
        for client in clients.values():
            await client.close()
