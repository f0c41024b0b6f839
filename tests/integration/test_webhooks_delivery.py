"""Webhooks on terminal status, observed by a local HTTP receiver: delivered once each with a
valid signature, retried with backoff until the receiver accepts, dead-lettered after the
limit, and kept across a restart by the durable outbox."""

import time

import pytest

from support.clients import make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, metric, trade, unique
from support.webhook_receiver import WebhookReceiver
from tradewire.core.webhooks import verify
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SECRET = "whsec-test-0123456789"
MAX_ATTEMPTS = 5


def webhooks_config(receiver: WebhookReceiver, initial_backoff_s: float = 0.05) -> str:
    return (
        f'[webhooks]\nallowed_schemes = ["http", "https"]\nsecret = "{SECRET}"\n'
        "allow_private_request_urls = true\n"  # the receiver listens on loopback
        f"[webhooks.retry]\nmax_attempts = {MAX_ATTEMPTS}\ninitial_backoff_s = {initial_backoff_s}\n"
        f"max_backoff_s = 0.4\n"
        f'[[webhooks.endpoints]]\nprincipal = "alice"\nurl = "{receiver.url("/alice")}"\n'
        f'[[webhooks.endpoints]]\nprincipal = "bob"\nurl = "{receiver.url("/flaky")}"\n'
        f'[[webhooks.endpoints]]\nprincipal = "trader"\nurl = "{receiver.url("/dead")}"\n'
    )


@pytest.fixture(scope="module")
def receiver():
    r = WebhookReceiver(fail_first={"/flaky": 3}, always_fail={"/dead"})
    yield r
    r.close()


@pytest.fixture(scope="module")
def hook_gateway(tmp_path_factory, receiver):
    process = GatewayProcess(tmp_path_factory.mktemp("webhooks"), extra_config=webhooks_config(receiver)).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]
    assert SECRET not in process.log_text()  # the signing secret never reaches the logs


@pytest.fixture(scope="module")
async def grpc_client(hook_gateway):
    c = make_client("grpc", hook_gateway)
    yield c
    await c.close()


def assert_signed(delivery) -> None:
    header = delivery.headers["tradewire-signature"]
    assert header.startswith("t=") and ",v1=" in header
    assert verify(SECRET.encode(), delivery.body, header)
    assert not verify(b"another secret", delivery.body, header)
    assert not verify(SECRET.encode(), delivery.body + b" ", header)  # any change to the body breaks it


async def _settled(gateway) -> bool:
    return await metric(gateway, "tradewire_webhook_outbox_depth", state="pending") == 0


async def test_each_terminal_trade_is_notified_once_with_a_valid_signature(hook_gateway, grpc_client, receiver):
    key = hook_gateway.key("alice")
    filled = [unique("hook") for _ in range(3)]
    for request_id in filled:
        await grpc_client.unary("ExecuteTrade", trade(request_id), key)
    rejected = unique("hook-rejected")
    with pytest.raises(Exception):
        await grpc_client.unary("ExecuteTrade", trade(rejected, amount="99999"), key)
    per_request = unique("hook-own-url")
    await grpc_client.unary("ExecuteTrade", trade(per_request, webhook_url=receiver.url("/own")), key)

    expected = set(filled) | {rejected, per_request}
    await eventually(lambda: {d.json["requestId"] for d in receiver.at("/alice")} >= expected,
                     what="the principal's webhooks")
    await eventually(lambda: len(receiver.at("/own")) >= 1, what="the request's own webhook")
    await eventually(lambda: _settled(hook_gateway), what="an empty outbox")

    alice = [d for d in receiver.at("/alice") if d.json["requestId"] in expected]
    assert sorted(d.json["requestId"] for d in alice) == sorted(expected)  # once each
    assert len({d.headers["tradewire-delivery"] for d in alice}) == len(alice)
    own = receiver.at("/own")
    assert len(own) == 1 and own[0].json["requestId"] == per_request
    for delivery in alice + own:
        assert_signed(delivery)
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["tradewire-event"] == "trade.finished"
        body = delivery.json
        assert body["id"] == delivery.headers["tradewire-delivery"]
        assert body["principal"] == "alice" and body["trade"]["requestId"] == body["requestId"]
        assert body["status"] == body["trade"]["status"]
        assert abs(int(delivery.headers["tradewire-signature"][2:].split(",")[0]) - time.time()) < 60
    statuses = {d.json["requestId"]: d.json["status"] for d in alice}
    assert statuses[rejected] == "TRADE_STATUS_REJECTED" and statuses[filled[0]] == "TRADE_STATUS_FILLED"


async def test_a_receiver_failing_three_times_still_gets_it(hook_gateway, grpc_client, receiver):
    request_id = unique("hook-flaky")
    await grpc_client.unary("ExecuteTrade", trade(request_id), hook_gateway.key("bob"))
    await eventually(lambda: any(d.answered == 204 for d in receiver.at("/flaky")), what="the fourth attempt")
    attempts = [d for d in receiver.at("/flaky") if d.json["requestId"] == request_id]
    assert [d.answered for d in attempts] == [500, 500, 500, 204]
    assert len({d.headers["tradewire-delivery"] for d in attempts}) == 1  # the same delivery, retried
    assert len({d.body for d in attempts}) == 1
    for delivery in attempts:
        assert_signed(delivery)
    await eventually(lambda: _settled(hook_gateway), what="an empty outbox")
    assert await metric(hook_gateway, "tradewire_webhook_deliveries_total", outcome="retry") >= 3
    assert await metric(hook_gateway, "tradewire_webhook_deliveries_total", outcome="delivered") >= 1


async def test_a_receiver_that_never_accepts_is_dead_lettered(hook_gateway, grpc_client, receiver):
    request_id = unique("hook-dead")
    await grpc_client.unary("ExecuteTrade", trade(request_id), hook_gateway.key("trader"))

    async def dead() -> bool:
        return await metric(hook_gateway, "tradewire_webhook_outbox_depth", state="dead") >= 1

    await eventually(dead, what="a dead letter")
    attempts = [d for d in receiver.at("/dead") if d.json["requestId"] == request_id]
    assert len(attempts) == MAX_ATTEMPTS
    assert await metric(hook_gateway, "tradewire_webhook_deliveries_total", outcome="dead") == 1
    health, _ = await grpc_client.unary("HealthCheck", spb.HealthCheckRequest(), hook_gateway.key("trader"))
    webhooks = next(c for c in health.components if c.name == "webhooks")
    assert "1 dead-lettered" in webhooks.message


async def test_the_outbox_survives_a_restart(tmp_path):
    receiver = WebhookReceiver(always_fail={"/alice"})
    process = GatewayProcess(tmp_path / "gw", extra_config=webhooks_config(receiver, initial_backoff_s=1.0)).start()
    request_id = unique("hook-restart")
    try:
        client = make_client("grpc", process)
        try:
            result, _ = await client.unary("ExecuteTrade", trade(request_id), process.key("alice"))
        finally:
            await client.close()
        await eventually(lambda: receiver.at("/alice"), what="a first (failed) attempt")
        assert process.stop() == 0
        failed_before = len(receiver.at("/alice"))
        assert failed_before < MAX_ATTEMPTS

        receiver.always_fail.clear()  # the receiver is back
        process.start()
        await eventually(lambda: any(d.answered == 204 for d in receiver.at("/alice")), what="delivery after restart")
        accepted = [d for d in receiver.at("/alice") if d.answered == 204]
        assert len(accepted) == 1
        assert accepted[0].json["requestId"] == request_id
        assert accepted[0].json["trade"]["tradeId"] == result.trade_id
        assert_signed(accepted[0])
        assert accepted[0].json["status"] == pb.TradeStatus.Name(pb.TRADE_STATUS_FILLED)
    finally:
        assert process.stop() == 0
        receiver.close()
