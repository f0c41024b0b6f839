"""A caller's webhook_url cannot aim the gateway into its own networks (SSRF) — not even by
answering DNS differently after the check (the POST goes to the checked address) — and
delivered outbox entries do not pile up forever."""

import time

import httpx
import pytest

from lifecycle_support import run_until_nothing_pending, until
from support.webhook_receiver import WebhookReceiver
from tradewire.core.config import WebhooksConfig
from tradewire.core.errors import TradewireError
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.validation import check_rules
from tradewire.core.webhooks import WebhookDispatcher, webhook_body
from tradewire.core.webhooks import destinations
from tradewire.core.webhooks.destinations import Destination, check_destination, host_refusal
from tradewire.v1 import trade_pb2 as pb

SECRET = b"s3cret"
PUBLIC = "93.184.216.34"
DNS = {"public.test": [PUBLIC], "rebind.test": [PUBLIC, "10.0.0.7"], "internal.test": ["192.168.1.5"]}


async def resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"{host}: name does not resolve")
    return DNS[host]


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "127.0.0.1", "::1", "10.1.2.3", "172.16.0.1",
                                  "192.168.0.10", "169.254.169.254", "0.0.0.0", "::ffff:127.0.0.1", "fd00::1",
                                  "100.64.0.1", "224.0.0.1",
                                  # IPv4 as resolvers also read it: short, decimal, hex, octal
                                  "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "10.1"])
def test_non_public_hosts_are_refused_without_resolving(host):
    assert host_refusal(host) is not None


@pytest.mark.parametrize("host", ["example.com", PUBLIC, "2606:4700::1111", "münchen.example", "1.1"])
def test_names_and_public_addresses_pass_the_first_check(host):
    assert host_refusal(host) is None


async def test_delivery_check_judges_every_resolved_address():
    assert await check_destination("https://public.test/h", resolver) == Destination(address=PUBLIC)
    assert await check_destination("https://rebind.test/h", resolver) == Destination(
        refusal="rebind.test resolves to 10.0.0.7, a private or reserved address")
    with pytest.raises(OSError):
        await check_destination("https://nowhere.test/h", resolver)


def config(**overrides) -> WebhooksConfig:
    values = dict(allowed_schemes=("https",), concurrency=2,
                  retry={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02})
    values.update(overrides)
    return WebhooksConfig.model_validate(values)


@pytest.mark.parametrize("url", ["https://127.0.0.1/x", "https://[::1]:8443/x", "https://localhost/x",
                                 "https://169.254.169.254/latest/meta-data", "https://public.test:99999/x"])
async def test_request_urls_into_our_networks_are_invalid_arguments(url):
    dispatcher = WebhookDispatcher(SqliteStore(":memory:"), config(), SECRET, resolver=resolver)
    try:
        with pytest.raises(TradewireError) as refused:
            dispatcher.check_request_url(url, "trades[0].webhook_url")
        assert refused.value.code.name == "INVALID_ARGUMENT"
        assert [v.field for v in refused.value.field_violations] == ["trades[0].webhook_url"]
        trusted = WebhookDispatcher(SqliteStore(":memory:"), config(allow_private_request_urls=True), SECRET)
        if "99999" not in url:
            trusted.check_request_url(url)  # allowed where the operator says the network is trusted
        await trusted.close()
    finally:
        await dispatcher.close()


@pytest.mark.parametrize("url", ["https://exa mple.com/x", "https://a..b/x", "https://-dash.example/x",
                                 "https://" + "a" * 64 + ".example/x"])
async def test_request_urls_with_an_invalid_host_name_are_invalid_arguments_even_where_trusted(url):
    for allow_private in (False, True):
        dispatcher = WebhookDispatcher(SqliteStore(":memory:"), config(allow_private_request_urls=allow_private),
                                       SECRET)
        try:
            with pytest.raises(TradewireError) as refused:
                dispatcher.check_request_url(url)
            assert refused.value.code.name == "INVALID_ARGUMENT" and "host name" in refused.value.message
            assert [v.field for v in refused.value.field_violations] == ["webhook_url"]
        finally:
            await dispatcher.close()


def saved(store: SqliteStore, request_id: str, url: str) -> None:
    result = pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", request_id, "fp", result, pb.TradeRequest(request_id=request_id)) is None
    result.status = pb.TRADE_STATUS_FILLED
    store.save("alice", result, (), [OutboxEntry(id=f"d-{request_id}", principal_id="alice", request_id=request_id,
                                                 url=url, body=webhook_body(f"d-{request_id}", "alice", result))])


async def test_a_request_url_resolving_inside_is_dead_lettered_unsent_and_endpoints_are_trusted():
    posted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(f"{request.url.scheme}://{request.headers['host']}{request.url.path}")
        return httpx.Response(200)

    store = SqliteStore(":memory:")
    saved(store, "public", "https://public.test/h")
    saved(store, "rebound", "https://rebind.test/h")
    saved(store, "unresolved", "https://nowhere.test/h")
    saved(store, "endpoint", "https://internal.test/ops")
    cfg = config(endpoints=[{"principal": "alice", "url": "https://internal.test/ops"}])
    dispatcher = WebhookDispatcher(store, cfg, SECRET, resolver=resolver,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await run_until_nothing_pending(dispatcher, store)
    by_request = {e.request_id: e for e in store.outbox_entries()}
    assert by_request["public"].state == "delivered"
    assert by_request["endpoint"].state == "delivered"  # the operator's own endpoint: not checked
    rebound = by_request["rebound"]
    assert rebound.state == "dead" and rebound.attempts == 1
    assert rebound.last_error == "refused: rebind.test resolves to 10.0.0.7, a private or reserved address"
    unresolved = by_request["unresolved"]  # DNS failing is transient: retried, then dead-lettered
    assert unresolved.state == "dead" and unresolved.attempts == 3 and "does not resolve" in unresolved.last_error
    assert sorted(posted) == ["https://internal.test/ops", "https://public.test/h"]


async def test_delivered_entries_are_deleted_after_keep_delivered_s():
    store = SqliteStore(":memory:")
    for request_id in ("old-delivered", "new-delivered", "old-dead", "pending"):
        saved(store, request_id, f"https://public.test/{request_id}")
    now_ns = time.time_ns()
    day_ns = 86_400 * 10**9
    for request_id, state, age_ns in (("old-delivered", "delivered", 2 * day_ns), ("new-delivered", "delivered", 0),
                                      ("old-dead", "dead", 2 * day_ns)):
        store.outbox_update(f"d-{request_id}", state, 1, 0 if state != "pending" else now_ns, "")
        store._db.execute("UPDATE webhook_outbox SET updated_ns = ? WHERE id = ?", (now_ns - age_ns, f"d-{request_id}"))
    store.outbox_update("d-pending", "pending", 0, 2**62, "")  # not due: the dispatcher leaves it alone
    dispatcher = WebhookDispatcher(store, config(keep_delivered_s=86_400), SECRET, resolver=resolver)
    await dispatcher.start()  # prunes on its first pass
    try:
        await until(lambda: store.outbox_counts()["delivered"] == 1)
    finally:
        await dispatcher.close()
    assert sorted(e.request_id for e in store.outbox_entries()) == ["new-delivered", "old-dead", "pending"]


async def test_a_request_url_is_sent_to_the_address_that_was_checked():
    sent: list[httpx.Request] = []
    answers = iter([[PUBLIC], ["10.0.0.7"]])  # a name that re-binds inside after its first answer

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    store = SqliteStore(":memory:")
    saved(store, "pinned", "https://user:pw@rebinding.test:8443/hook?x=1")
    dispatcher = WebhookDispatcher(store, config(), SECRET, resolver=rebinding,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await run_until_nothing_pending(dispatcher, store)
    assert store.outbox_entries()[0].state == "delivered"
    [request] = sent  # one lookup, one POST: to the checked address, never to a second answer
    assert (request.url.host, request.url.port, request.url.raw_path) == (PUBLIC, 8443, b"/hook?x=1")
    assert request.headers["host"] == "rebinding.test:8443"
    assert request.extensions["sni_hostname"] == "rebinding.test"  # TLS name and certificate check
    assert request.headers["authorization"].startswith("Basic ")  # the URL's credentials kept


async def test_a_pinned_delivery_reaches_a_real_server_by_its_checked_address(monkeypatch):
    """Over a real socket: the name does not resolve anywhere but in the check, so only a
    connection to the checked address can deliver it."""
    receiver = WebhookReceiver()
    port = int(receiver.url("/").rsplit(":", 1)[1].split("/")[0])
    monkeypatch.setattr(destinations, "non_global_kind", lambda address: None)  # loopback counts as public here

    async def only_here(host: str, port: int) -> list[str]:
        assert host == "hooks.invalid"
        return ["127.0.0.1"]

    store = SqliteStore(":memory:")
    saved(store, "real", f"http://hooks.invalid:{port}/real")
    dispatcher = WebhookDispatcher(store, config(allowed_schemes=("http",)), SECRET, resolver=only_here)
    try:
        await run_until_nothing_pending(dispatcher, store)
    finally:
        receiver.close()
    assert store.outbox_entries()[0].state == "delivered"
    [delivery] = receiver.at("/real")
    assert delivery.headers["host"] == f"hooks.invalid:{port}" and delivery.json["requestId"] == "real"


@pytest.mark.parametrize("url, valid", [
    ("https://public.test/hook?a=b&c=%20d", True),
    ("", True),  # none
    ("https://public.test/\rhook", False),  # URL parsers drop CR, LF and TAB: not the URL checked
    ("https://public.test/\nhook", False),
    ("https://pub\tlic.test/hook", False),
    ("https://public.test/a hook", False),
    ("https://public.test/\x00", False),
])
def test_a_webhook_url_with_spaces_or_control_characters_is_refused_by_the_contract(url, valid):
    violations = check_rules(pb.TradeRequest(webhook_url=url))
    assert ("webhook_url" not in [v.field for v in violations]) == valid, violations
