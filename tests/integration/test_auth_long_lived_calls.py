"""A credential revoked while a long-lived call is open stops working there too: a
TradeSession's next trade ends the session UNAUTHENTICATED (nothing of it runs), and a status
stream ends at its next event past the re-check interval (about a second), on every protocol."""

import asyncio
import uuid

import pytest

from support.clients import PROTOCOLS, GrpcClient, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import found, reached, trade, unique
from tradewire.core.auth.api_keys import create_key, revoke_key
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    """Paper trades take 4 s (2 s to sign, 2 s to land); API keys in a database the test edits."""
    workdir = tmp_path_factory.mktemp("long-lived")
    SqliteApiKeyStore(workdir / "keys.db").close()  # the database exists before the gateway opens it
    gateway = GatewayProcess(workdir, env={
        "TRADEWIRE_AUTH__API_KEY_DB": str(workdir / "keys.db"),
        "TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "4000"},
        streams_config="[streams]\nawait_trade_s = 10\n").start()
    yield gateway
    assert gateway.stop() == 0, gateway.log_text()[-3000:]


def two_keys(gateway) -> tuple[str, str, str]:
    """(a key to revoke, its prefix, a second key of the same owner)."""
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    with SqliteApiKeyStore(gateway.workdir / "keys.db") as store:
        doomed, record = create_key(store, owner, "doomed", ["read", "trade:paper"])
        other, _ = create_key(store, owner, "other", ["read", "trade:paper"])
    return doomed, record.prefix, other


def revoke(gateway, prefix: str) -> None:
    with SqliteApiKeyStore(gateway.workdir / "keys.db") as store:
        revoke_key(store, prefix)


async def test_a_session_ends_at_its_next_trade_once_its_key_is_revoked(slow_gateway):
    doomed, prefix, other = two_keys(slow_gateway)
    client = GrpcClient(slow_gateway.grpc_target)
    first, second = trade(unique("sess-before")), trade(unique("sess-after"))
    session = client.open_session(doomed)
    try:
        await session.send(spb.TradeSessionRequest(trade=first))
        responses = aiter(session)
        while (await anext(responses)).WhichOneof("event") != "status":
            pass  # the first trade runs
        revoke(slow_gateway, prefix)
        await session.send(spb.TradeSessionRequest(trade=second))
        with pytest.raises(RpcFailure) as ended:
            async for _ in responses:
                pass
        assert (ended.value.code, ended.value.reason) == ("UNAUTHENTICATED", "API_KEY_REVOKED")
        assert await found(client, other, second.request_id) is None  # it never ran
        assert await found(client, other, first.request_id) is not None
        def refused() -> list[dict]:
            return slow_gateway.audit_rows("tw_requests", method="TradeSession.trade",
                                           trade_request_id=second.request_id)

        wait_until(refused, what="the refused trade's audit row")
        assert [(row["code"], row["reason"]) for row in refused()] == [("UNAUTHENTICATED", "API_KEY_REVOKED")]
    finally:
        session.cancel()
        await client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_status_stream_ends_once_its_key_is_revoked(slow_gateway, protocol):
    doomed, prefix, other = two_keys(slow_gateway)
    client = make_client(protocol, slow_gateway)
    grpc_client = GrpcClient(slow_gateway.grpc_target)
    request = trade(unique(f"stream-{protocol}"))
    try:
        followed = asyncio.create_task(client.stream(
            "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request.request_id), doomed))
        running = asyncio.create_task(grpc_client.unary("ExecuteTrade", request, other))
        await asyncio.wait_for(reached(grpc_client, other, request.request_id, pb.TRADE_STATUS_QUOTED), 10)
        revoke(slow_gateway, prefix)  # the next events come 2 s later, past the stream's re-check interval
        with pytest.raises(RpcFailure) as ended:
            await asyncio.wait_for(followed, 10)
        assert (ended.value.code, ended.value.reason) == ("UNAUTHENTICATED", "API_KEY_REVOKED"), protocol
        result, _ = await asyncio.wait_for(running, 10)
        assert result.status == pb.TRADE_STATUS_FILLED  # the trade itself goes on
    finally:
        await client.close()
        await grpc_client.close()
