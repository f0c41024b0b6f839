"""A receiver that stalls holds at most ``max_in_flight_per_receiver`` of the dispatcher's
delivery slots: other receivers' webhooks go meanwhile, and its own all go once it answers."""

import asyncio
import time

import httpx

from support.trading import eventually
from tradewire.core.config import WebhooksConfig
from tradewire.core.store.base import OutboxEntry
from tradewire.core.store.sqlite import SqliteStore
from tradewire.core.webhooks import WebhookDispatcher, webhook_body
from tradewire.v1 import trade_pb2 as pb

SECRET = b"s3cret"
PER_RECEIVER = 2


class Receiver:
    """An HTTP server on loopback recording each POST's delivery id; while ``stalled`` it answers
    nothing until ``release`` is set."""

    def __init__(self, stalled: bool) -> None:
        self.release = asyncio.Event()
        if not stalled:
            self.release.set()
        self.received: list[str] = []
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            await reader.readexactly(int(headers["content-length"]))
            self.received.append(headers["tradewire-delivery"])
            await self.release.wait()
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        self.release.set()
        self.server.close()
        await self.server.wait_closed()


def queued(store: SqliteStore, urls: list[str]) -> list[str]:
    """One trade's webhooks to ``urls``, due in that order; their delivery ids."""
    result = pb.TradeResult(request_id="t-1", status=pb.TRADE_STATUS_UNSPECIFIED)
    assert store.claim("alice", "t-1", "fp", result, pb.TradeRequest(request_id="t-1")) is None
    result.status = pb.TRADE_STATUS_FILLED
    due = time.time_ns() - 10**9
    entries = [OutboxEntry(id=f"d-{i}", principal_id="alice", request_id="t-1", url=url,
                           body=webhook_body(f"d-{i}", "alice", result), next_attempt_ns=due + i)
               for i, url in enumerate(urls)]
    store.save("alice", result, (), entries)
    return [e.id for e in entries]


async def test_a_stalled_receiver_holds_at_most_its_share_and_the_others_go_meanwhile():
    stalled, prompt = Receiver(stalled=True), Receiver(stalled=False)
    await stalled.start()
    await prompt.start()
    store = SqliteStore(":memory:")
    # the stalled receiver's webhooks come first, more than every slot
    ids = queued(store, [stalled.url(f"/hook/{i}") for i in range(20)] + [prompt.url(f"/hook/{i}") for i in range(5)])
    to_stalled, to_prompt = ids[:20], ids[20:]
    cfg = WebhooksConfig.model_validate(dict(
        allowed_schemes=("http",), allow_private_request_urls=True, concurrency=8,
        max_in_flight_per_receiver=PER_RECEIVER, timeout_s=30.0, idle_poll_s=0.1,
        retry={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02}))
    dispatcher = WebhookDispatcher(store, cfg, SECRET)
    await dispatcher.start()
    try:
        def states() -> dict[str, tuple[str, int, str]]:
            return {e.id: (e.state, e.attempts, e.last_error) for e in store.outbox_entries()}

        await eventually(lambda: all(states()[i][0] == "delivered" for i in to_prompt), timeout=10.0,
                         what="the prompt receiver's webhooks, while the other stalls")
        assert sorted(prompt.received) == sorted(to_prompt)
        await eventually(lambda: len(stalled.received) == PER_RECEIVER, timeout=10.0,
                         what="the stalled receiver's first requests")
        assert stalled.open == stalled.most_open == PER_RECEIVER
        # waiting for their receiver is no attempt: nothing failed, nothing backs off
        assert all(states()[i] == ("pending", 0, "") for i in to_stalled if i not in stalled.received)

        stalled.release.set()
        await eventually(lambda: all(states()[i][0] == "delivered" for i in to_stalled), timeout=10.0,
                         what="the stalled receiver's webhooks once it answers")
        assert sorted(stalled.received) == sorted(to_stalled)  # each once: none lost, none sent twice
        assert stalled.most_open <= PER_RECEIVER
        assert {i: s[1] for i, s in states().items()} == {i: 1 for i in ids}
    finally:
        await dispatcher.close()
        await stalled.close()
        await prompt.close()


async def test_an_entry_held_longer_than_an_attempt_may_take_is_left_to_its_lease():
    now = 1_800_000_000.0
    release = asyncio.Event()
    sent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["tradewire-delivery"])
        await release.wait()
        return httpx.Response(204)

    store = SqliteStore(":memory:")
    first, second = queued(store, ["http://hooks.test/a", "http://hooks.test/b"])
    cfg = WebhooksConfig.model_validate(dict(
        allowed_schemes=("http",), allow_private_request_urls=True, concurrency=2, max_in_flight_per_receiver=1,
        timeout_s=30.0, retry={"max_attempts": 3}))
    dispatcher = WebhookDispatcher(store, cfg, SECRET, clock=lambda: now,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        assert dispatcher._dispatch_due() == 1  # the second waits for the receiver, under its lease
        await eventually(lambda: sent == [first], what="the first request")
        now += 31.0  # longer than an attempt may take: no longer safe to lease afresh
        assert dispatcher._dispatch_due() == 0
        (waiting,) = [e for e in store.outbox_entries() if e.id == second]
        assert (waiting.state, waiting.attempts, waiting.last_error) == ("pending", 0, "")
        release.set()
        await eventually(lambda: store.outbox_counts()["delivered"] == 1, what="the first delivery")
        now += 5.0  # its lease ended: due again
        assert dispatcher._dispatch_due() == 1
        await eventually(lambda: store.outbox_counts()["delivered"] == 2, what="the second delivery")
    finally:
        await dispatcher.close()
    assert sent == [first, second]
    assert {e.id: e.attempts for e in store.outbox_entries()} == {first: 1, second: 1}


def test_a_receiver_is_a_urls_origin():
    from tradewire.core.webhooks.dispatcher import receiver_of

    assert receiver_of("http://Hooks.Example/a") == receiver_of("http://hooks.example:80/b?c=d")
    assert receiver_of("https://hooks.example/a") == "https://hooks.example:443"
    assert receiver_of("https://hooks.example:8443/a") != receiver_of("https://hooks.example/a")
    assert receiver_of("http://hooks.example/a") != receiver_of("https://hooks.example/a")
    assert receiver_of("https://[2001:DB8::1]:8443/a") == "https://[2001:db8::1]:8443"
