"""Webhook delivery against receivers that misbehave (an answer trickling in, an endless
body) and the generated signing secret's file (never empty, never half-written)."""

import asyncio
import os

import httpx
import pytest

from support.trading import eventually
from tradewire.core.config import WebhooksConfig
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.webhooks import WebhookDispatcher, load_or_create_secret, webhook_body
from tradewire.core.webhooks.destinations import Destination, check_destination, host_refusal
from tradewire.v1 import trade_pb2 as pb

SECRET = b"s3cret"


def config(**overrides) -> WebhooksConfig:
    # allow_private_request_urls: the receivers here listen on loopback
    values = dict(allowed_schemes=("http", "https"), concurrency=2, allow_private_request_urls=True,
                  idle_poll_s=0.1, retry={"max_attempts": 1})
    values.update(overrides)
    return WebhooksConfig.model_validate(values)


def store_with_webhook(url: str) -> SqliteStore:
    store = SqliteStore(":memory:")
    result = pb.TradeResult(request_id="t-1", status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", "t-1", "fp", result, pb.TradeRequest(request_id="t-1")) is None
    result.status = pb.TRADE_STATUS_FILLED
    entry = OutboxEntry(id="d-1", principal_id="alice", request_id="t-1", url=url,
                        body=webhook_body("d-1", "alice", result))
    store.save("alice", result, (), [entry])
    return store


async def test_an_answer_trickling_in_ends_the_attempt_at_the_timeout():
    connections = []
    stop = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        # one byte at a time, each well within timeout_s of the last: only a bound on the
        # whole attempt ends it
        try:
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                try:
                    async with asyncio.timeout(0.2):
                        await stop.wait()
                    break
                except TimeoutError:
                    pass
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = store_with_webhook(f"http://127.0.0.1:{port}/slow")
    dispatcher = WebhookDispatcher(store, config(timeout_s=0.5), SECRET)
    await dispatcher.start()
    try:
        # dead (max_attempts = 1) soon after timeout_s, well before its lease (timeout_s + 5 s)
        # would end and let the same delivery be sent again
        (entry,) = await eventually(lambda: [e for e in store.outbox_entries() if e.state != "pending"],
                                    timeout=4.0, what="the attempt to end")
        assert entry.state == "dead" and entry.attempts == 1
        assert entry.last_error == "TimeoutError: no answer within 0.5 s"
        assert len(connections) == 1
    finally:
        stop.set()
        await dispatcher.close()
        server.close()


async def test_an_endless_answer_is_not_read_to_its_end():
    sent = 0

    async def endless():
        nonlocal sent
        chunk = b"x" * 65536
        while True:
            sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)  # (lets other tasks run, as a socket would)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    store = store_with_webhook("http://hooks.test/huge")
    dispatcher = WebhookDispatcher(store, config(timeout_s=2.0), SECRET,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        async with asyncio.timeout(10):
            assert await dispatcher.flush(5.0)
    finally:
        await dispatcher.close()
    (entry,) = store.outbox_entries()
    assert entry.state == "delivered" and entry.attempts == 1
    assert sent <= 1 << 20  # the status is what counts: the body is not read to its end


async def test_a_signing_key_that_cannot_be_loaded_is_a_failed_attempt():
    def unreadable() -> bytes:
        raise PermissionError(13, "Permission denied")

    store = store_with_webhook("http://hooks.test/a")
    sent = []
    dispatcher = WebhookDispatcher(store, config(), unreadable,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(sent.append)))
    try:
        assert await dispatcher.flush(5.0)
    finally:
        await dispatcher.close()
    (entry,) = store.outbox_entries()
    assert sent == []
    # counted (so the retry limit and backoff apply), not a crashed task re-leased forever
    assert entry.state == "dead" and entry.attempts == 1
    assert entry.last_error.startswith("PermissionError")


def test_the_generated_secret_file_is_whole_and_owner_only(tmp_path):
    path = tmp_path / "data" / "webhook-secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert path.read_text() == secret.decode() + "\n"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["webhook-secret"]  # nothing left aside
    assert load_or_create_secret(path) == secret


def test_an_empty_secret_file_is_replaced_by_a_new_secret(tmp_path):
    path = tmp_path / "webhook-secret"
    path.write_text("")  # what a process killed (or out of disk space) while creating it left
    secret = load_or_create_secret(path)
    assert len(secret) == 64  # never an empty HMAC key, which anyone could sign with
    assert path.read_text() == secret.decode() + "\n"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == secret


# IPv6 addresses that carry an IPv4 one for a NAT64 translator (DNS64 synthesises them on
# IPv6-only hosts), a 6to4 relay, SIIT, or the deprecated IPv4-compatible form
INSIDE_BY_IPV6 = ["64:ff9b::7f00:1", "64:ff9b::a00:5", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808",
                  "2002:7f00:1::", "2002:c0a8:105::1", "::127.0.0.1", "::10.0.0.5", "::ffff:0:7f00:1"]


@pytest.mark.parametrize("address", INSIDE_BY_IPV6)
def test_ipv6_forms_of_inside_ipv4_addresses_are_refused(address):
    assert host_refusal(address) is not None
    dispatcher = WebhookDispatcher(SqliteStore(":memory:"), config(allow_private_request_urls=False), SECRET)
    with pytest.raises(Exception) as refused:
        dispatcher.check_request_url(f"https://[{address}]/hook")
    assert refused.value.field_violations[0].field == "webhook_url"


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:0:808:808", "2606:4700::1111"])
def test_ipv6_forms_of_public_ipv4_addresses_pass(address):
    assert host_refusal(address) is None


async def test_a_name_resolving_to_a_nat64_form_of_an_inside_address_is_refused_at_delivery():
    async def dns64(host: str, port: int) -> list[str]:
        return ["64:ff9b::a00:5"]  # what DNS64 answers for a name whose A record is 10.0.0.5

    assert await check_destination("https://inside.test/h", dns64) == Destination(
        refusal="inside.test resolves to 64:ff9b::a00:5, a private or reserved address")


@pytest.mark.parametrize(("retry_after", "at_least", "at_most"), [
    ("30", 29.0, 31.0),  # asked for: waited for (beyond the 0.01 s backoff)
    ("86400", 59.0, 61.0),  # asked for too long: the longest backoff (max_backoff_s) instead
    ("Fri, 01 Jan 2010 00:00:00 GMT", 0.0, 1.0),  # a date gone by: the backoff
])
async def test_a_throttled_delivery_waits_as_long_as_the_receiver_asks(retry_after, at_least, at_most):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": retry_after})

    now = 1_800_000_000.0
    store = store_with_webhook("http://hooks.test/throttled")
    cfg = config(retry={"max_attempts": 5, "initial_backoff_s": 0.01, "max_backoff_s": 60.0, "jitter": 0})
    dispatcher = WebhookDispatcher(store, cfg, SECRET, clock=lambda: now,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        assert dispatcher._dispatch_due() == 1
        await eventually(lambda: store.outbox_entries()[0].attempts == 1, what="the first attempt")
    finally:
        await dispatcher.close()
    (entry,) = store.outbox_entries()
    assert entry.state == "pending" and entry.last_error == "HTTP 429"
    assert at_least <= entry.next_attempt_ns / 1e9 - now <= at_most


async def test_a_request_url_with_an_internationalized_name_is_delivered_by_its_ascii_name():
    public = "93.184.216.34"
    looked_up: list[str] = []
    sent: list[httpx.Request] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return [public]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    store = store_with_webhook("https://bücher.example:8443/hook")
    dispatcher = WebhookDispatcher(store, config(allow_private_request_urls=False, retry={"max_attempts": 3}),
                                   SECRET, resolver=resolver,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    dispatcher.check_request_url("https://bücher.example:8443/hook")  # accepted when the trade came in
    try:
        assert await dispatcher.flush(5.0)
    finally:
        await dispatcher.close()
    (entry,) = store.outbox_entries()
    assert (entry.state, entry.attempts, entry.last_error) == ("delivered", 1, "")
    [request] = sent
    assert request.url.host == public and looked_up == ["bücher.example"]
    assert request.headers["host"] == "xn--bcher-kva.example:8443"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"

