"""Test support for the HTTP/JSON adapter: a fake core service and an in-process uvicorn.

The fake records what each RPC receives and answers from a per-RPC script: a message, an
exception to raise, or (for streams) a list of messages / exceptions / asyncio.Events to
wait on. It fills ``ctx.response_headers`` like the real pipeline does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tradewire.v1 import service_pb2, trade_pb2

SERVICE = service_pb2.DESCRIPTOR.services_by_name["TradeExecutionService"]
MAX_BODY = 4096  # the app fixture's max_body_bytes


@dataclass
class Call:
    rpc: str
    request: Any
    ctx: Any


@dataclass
class FakeService:
    calls: list[Call] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    stream_script: list[Any] = field(default_factory=list)
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    response_headers: dict[str, str] = field(default_factory=lambda: {"x-correlation-id": "corr-1",
                                                                       "x-ratelimit-remaining": "41"})

    def _record(self, rpc: str, request, ctx) -> Any:
        self.calls.append(Call(rpc, request, ctx))
        ctx.response_headers.update(self.response_headers)
        answer = self.answers.get(rpc)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(request, ctx)
        return answer

    @property
    def last(self) -> Call:
        return self.calls[-1]

    async def ExecuteTrade(self, request, ctx):
        return self._record("ExecuteTrade", request, ctx) or trade_pb2.TradeResult(
            request_id=request.request_id, trade_id="t-1", status=trade_pb2.TRADE_STATUS_FILLED,
            fees=trade_pb2.Fees(base_fee_lamports=5000, total_lamports=5000), slot=2**60,
        )

    async def GetTradeHistory(self, request, ctx):
        return self._record("GetTradeHistory", request, ctx) or service_pb2.GetTradeHistoryResponse(
            trades=[trade_pb2.TradeResult(request_id="r1")], next_page_token="next"
        )

    async def GetPositions(self, request, ctx):
        return self._record("GetPositions", request, ctx) or service_pb2.GetPositionsResponse(valuation_mint="USDC")

    async def GetMarket(self, request, ctx):
        return self._record("GetMarket", request, ctx) or service_pb2.GetMarketResponse(valuation_mint="USDC")

    async def HealthCheck(self, request, ctx):
        return self._record("HealthCheck", request, ctx) or service_pb2.HealthCheckResponse(
            status=service_pb2.SERVING_STATUS_SERVING, version="1.2.3"
        )

    async def GetTrade(self, request, ctx):
        return self._record("GetTrade", request, ctx) or trade_pb2.TradeResult(request_id=request.request_id)

    async def CancelTrade(self, request, ctx):
        return self._record("CancelTrade", request, ctx) or service_pb2.CancelTradeResponse(
            request_id=request.request_id, status=trade_pb2.TRADE_STATUS_CANCELLED
        )

    async def ExecuteTradeBatch(self, request, ctx):
        return self._record("ExecuteTradeBatch", request, ctx) or service_pb2.ExecuteTradeBatchResponse(
            results=[service_pb2.BatchItemResult(index=i) for i in range(len(request.trades))]
        )

    async def TradeSession(self, requests, ctx):  # pragma: no cover - must never be reached
        raise AssertionError("TradeSession must not be called over HTTP/JSON")

    def StreamExecutionStatus(self, request, ctx):
        self._record("StreamExecutionStatus", request, ctx)
        return self._stream()

    async def _stream(self):
        self.stream_started.set()
        try:
            for item in self.stream_script:
                if isinstance(item, asyncio.Event):
                    await item.wait()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.stream_closed.set()


def status(seq: int, **kw) -> trade_pb2.ExecutionStatus:
    return trade_pb2.ExecutionStatus(request_id="r-1", sequence=seq, stage=trade_pb2.TRADE_STATUS_QUOTED, **kw)


@contextlib.asynccontextmanager
async def serve(app):
    """Runs ``app`` with uvicorn on 127.0.0.1, on a free port, in this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # older uvicorn API; harmless otherwise
    task = asyncio.create_task(server.serve())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not server.started:
            if task.done():
                task.result()
            assert loop.time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
