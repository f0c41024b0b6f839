"""A call's W3C trace context reaches the webhook its trade sends: a real gateway (tracing off,
the default) whose webhook endpoint is a local receiver recording headers."""

import secrets

import pytest

from support.clients import PROTOCOLS, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, trade, unique
from support.webhook_receiver import WebhookReceiver
from tradewire.core.webhooks import verify

SECRET = "whsec-trace-0123456789"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.fixture(scope="module")
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def traced_gateway(tmp_path_factory, receiver):
    config = (f'[webhooks]\nallowed_schemes = ["http"]\nsecret = "{SECRET}"\n'
              f'[[webhooks.endpoints]]\nprincipal = "alice"\nurl = "{receiver.url("/alice")}"\n')
    process = GatewayProcess(tmp_path_factory.mktemp("trace-propagation"), extra_config=config).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def webhook_of(receiver: WebhookReceiver, request_id: str):
    return next((d for d in receiver.at("/alice") if d.json["requestId"] == request_id), None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_calls_traceparent_reaches_its_trades_webhook_with_a_span_id_of_its_own(
        traced_gateway, receiver, protocol):
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    traced, untraced = unique("traced"), unique("untraced")
    client = make_client(protocol, traced_gateway)
    try:
        key = traced_gateway.key("alice")
        await client.unary("ExecuteTrade", trade(traced), key,
                           headers={"traceparent": f"00-{trace_id}-{caller_span}-01", "tracestate": TRACESTATE})
        await client.unary("ExecuteTrade", trade(untraced), key)
    finally:
        await client.close()

    delivery = await eventually(lambda: webhook_of(receiver, traced), what="the traced trade's webhook")
    version, sent_trace, sent_span, flags = delivery.headers["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", trace_id, "01")
    assert sent_span != caller_span and len(sent_span) == 16
    assert delivery.headers["tracestate"] == TRACESTATE
    assert trace_id.encode() not in delivery.body  # a header, not part of the signed body
    assert verify(SECRET.encode(), delivery.body, delivery.headers["tradewire-signature"])

    plain = await eventually(lambda: webhook_of(receiver, untraced), what="the untraced trade's webhook")
    assert "traceparent" not in plain.headers and "tracestate" not in plain.headers
