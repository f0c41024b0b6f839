"""Two replicas on one Redis shut down together (a deploy): the one that stops first leaves its
unfinished trade for the others; the other, itself shutting down (its listeners already closed,
still flushing a webhook), must not adopt it — it would start the trade only to cut it off when
it exits a moment later. It is left for a replica that serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading

import redis

from support.clients import GrpcClient
from support.gateway_process import GatewayProcess
from support.trading import eventually, metric, reached, trade, unique
from tradewire.v1 import trade_pb2 as pb

TTL_S = 1.5


class HangingReceiver:
    """Accepts webhook connections and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.connections.append(self.sock.accept()[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def close(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


async def test_a_replica_shutting_down_adopts_no_trade(tmp_path, redis_server):
    receiver = HangingReceiver()
    env = {"TRADEWIRE_SHARED__REDIS_URL": redis_server.url, "TRADEWIRE_SHARED__REPLICA_TTL_S": str(TTL_S),
           "TRADEWIRE_PAPER__REALTIME": "true"}
    a = GatewayProcess(tmp_path / "a", extra_config="[shutdown]\ndeadline_s = 3\nfinal_s = 1\n",
                       env={**env, "TRADEWIRE_PAPER__LATENCY_MS": "30000"}).start()
    b = GatewayProcess(tmp_path / "b", extra_config=(
        "[shutdown]\ndeadline_s = 12\nfinal_s = 10\n"  # its close waits up to 5 s for the webhook
        f'[webhooks]\nallowed_schemes = ["http", "https"]\ntimeout_s = 5\n'
        f'[[webhooks.endpoints]]\nprincipal = "bob"\nurl = "{receiver.url}"\n'),
        env={**env, "TRADEWIRE_PAPER__LATENCY_MS": "0"}).start()
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    try:
        await eventually(lambda: metric(b, "tradewire_replicas_alive"), what="B beating")
        filled, _ = await on_b.unary("ExecuteTrade", trade(unique("bob")), b.key("bob"))
        assert filled.status == pb.TRADE_STATUS_FILLED
        await eventually(lambda: receiver.connections, what="B's webhook attempt, unanswered")
        request_id = unique("alice")
        running = asyncio.create_task(on_a.unary("ExecuteTrade", trade(request_id), a.key("alice")))
        await asyncio.wait_for(reached(on_a, a.key("alice"), request_id, pb.TRADE_STATUS_QUOTED), 20)

        b.terminate()  # B: no trade to drain; its listeners close; its close waits for the webhook
        await eventually(lambda: '"msg":"Shutting down"' in b.log_text(), what="B's listeners closing")
        a.terminate()  # A: its trade is left unfinished at its deadline, for the other replicas
        assert await asyncio.to_thread(a.wait_exit, 20) == 0
        assert await asyncio.to_thread(b.wait_exit, 30) == 0
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await on_a.close()
        await on_b.close()
        receiver.close()
        for gateway in (a, b):
            if gateway.proc.poll() is None:
                gateway.stop()
        # (alice's trade is left unfinished on purpose: no later test's replica may adopt it)
        redis.Redis.from_url(redis_server.url).flushdb()
    assert "left unfinished" in a.log_text()
    lines = [json.loads(line) for line in b.log_text().splitlines() if line.startswith("{")]
    since = next(i for i, line in enumerate(lines) if line["msg"] == "shutting down")
    adopted = [line["msg"] for line in lines[since:] if "resume here" in line["msg"] or "resuming" in line["msg"]]
    assert not adopted, adopted
