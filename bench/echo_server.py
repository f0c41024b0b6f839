"""Bare baselines on the gateway's own transport stack, in one process (uvloop, like `serve`):

* gRPC: grpc.aio with the gateway's server options; ExecuteTrade answers a canned
  TradeResult without decoding the request (raw bytes in, pre-serialized bytes out).
* HTTP: a raw ASGI app on uvicorn (httptools + uvloop, as the gateway): reads the body and
  answers a canned body in the request's encoding (JSON, proto, or gRPC-Web frames).
* Connect: connect-python's generated ASGI application (no FastAPI, no core) whose
  ExecuteTrade returns the canned result: the framework's own cost, between the two.

What the gateway does beyond these is its framework and core cost; the max-throughput
ratio in bench.md is gateway / echo on the same stack.

    python -m bench.echo_server --grpc-port P --http-port Q --connect-port R
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import grpc
import uvicorn
import uvloop
from google.protobuf import json_format

from bench.payloads import SERVICE, canned_result
from tradewire.v1.service_connect import TradeExecutionServiceASGIApplication

RESULT = canned_result()
RESULT_PROTO = RESULT.SerializeToString()
RESULT_JSON = json.dumps(json_format.MessageToDict(RESULT), separators=(",", ":")).encode()
GRPC_WEB_TRAILER = b"grpc-status: 0\r\ngrpc-message: \r\n"
RESULT_GRPC_WEB = (b"\x00" + len(RESULT_PROTO).to_bytes(4, "big") + RESULT_PROTO
                   + b"\x80" + len(GRPC_WEB_TRAILER).to_bytes(4, "big") + GRPC_WEB_TRAILER)
_BODIES = {
    b"application/proto": (b"application/proto", RESULT_PROTO),
    b"application/grpc-web+proto": (b"application/grpc-web+proto", RESULT_GRPC_WEB),
}


async def _grpc_execute(raw: bytes, context) -> bytes:
    return RESULT_PROTO


def grpc_server(port: int) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.keepalive_permit_without_calls", 1),
                                      ("grpc.http2.max_pings_without_data", 0)])
    handler = grpc.unary_unary_rpc_method_handler(_grpc_execute, request_deserializer=None,
                                                  response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"ExecuteTrade": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


async def raw_echo(scope, receive, send) -> None:
    """The least an ASGI app can do for one request: drain the body, send a canned answer."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"application/json")
    media, body = _BODIES.get(content_type, (b"application/json", RESULT_JSON))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _CannedService:
    """connect-python wants a method per RPC; only ExecuteTrade is ever called."""

    async def execute_trade(self, request, ctx):
        return RESULT

    def __getattr__(self, name):
        async def unimplemented(request, ctx):
            raise NotImplementedError(name)
        return unimplemented


def connect_echo():
    app = TradeExecutionServiceASGIApplication(_CannedService())

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/ready":
            return await raw_echo(scope, receive, send)
        return await app(scope, receive, send)
    return asgi


class _Uvicorn(uvicorn.Server):
    """Without uvicorn's own signal handling: two servers share this process's SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _uvicorn(app, port: int) -> _Uvicorn:
    return _Uvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http="httptools",
                                   lifespan="off", access_log=False, log_config=None))


async def serve(grpc_port: int, http_port: int, connect_port: int) -> None:
    server = grpc_server(grpc_port)
    await server.start()
    http = [_uvicorn(raw_echo, http_port), _uvicorn(connect_echo(), connect_port)]

    def stop() -> None:
        for s in http:
            s.should_exit = True
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(s.serve() for s in http))
    finally:
        await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--connect-port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.grpc_port, args.http_port, args.connect_port))


if __name__ == "__main__":
    main()
