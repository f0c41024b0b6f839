"""When the shared store does not answer, calls fail UNAVAILABLE STORE_UNAVAILABLE with a retry
delay on every protocol — retryable, not INTERNAL — and the gateway serves again once it is back."""

import pytest

from support.clients import RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.redis_server import RedisServer
from support.trading import eventually, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

PROTOCOLS = ("grpc", "connect-proto", "http")


@pytest.fixture
def gateway_on_its_own_redis(tmp_path):
    store = RedisServer(tmp_path / "redis").start()
    gateway = GatewayProcess(tmp_path / "gateway", env={"TRADEWIRE_SHARED__REDIS_URL": store.url}).start()
    yield gateway, store
    gateway.stop()
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
