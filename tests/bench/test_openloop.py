"""bench/openloop.py against a loopback server that closes keep-alive connections the way a
server's idle timeout races a client: a request met by a close on a reused connection, with no
byte of answer, is sent once more (and counted), and any other loss stays an error."""

from __future__ import annotations

import asyncio

from bench.openloop import OpenLoopClient
from bench.payloads import http_template

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"


async def serve(closes):
    """A server answering every request but those ``closes(connection number, request number)``
    picks (both 1-based), at which it closes the connection without a byte of answer."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        connection, number = connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                number += 1
                if closes(connection, number):
                    return
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def run_against(server, requests: int) -> dict:
    port = server.sockets[0].getsockname()[1]
    template = http_template("json", "tw_key", f"127.0.0.1:{port}", "/v1/trades")
    # one connection, so every request after the first goes down a reused one
    client = OpenLoopClient("127.0.0.1", port, [template], rate=50, duration=requests / 50,
                            connections=1, drain_s=5, tag="t")
    async with server:
        return await client.run()


async def test_a_request_met_by_a_keepalive_close_is_sent_again_once():
    # the first connection's second request is met by its close: it goes again on a new one
    result = await run_against(await serve(lambda connection, number: (connection, number) == (1, 2)), requests=6)
    assert (result["ok"], result["errors"]) == (6, 0), result["error_kinds"]
    assert result["resent_after_keepalive_close"] == 1


async def test_a_close_on_a_fresh_connection_is_an_error_not_a_resend():
    result = await run_against(await serve(lambda connection, number: number == 1), requests=3)
    assert result["ok"] == 0 and result["error_kinds"] == {"connection lost": 3}
    assert result["resent_after_keepalive_close"] == 0
