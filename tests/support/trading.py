"""Shared helpers for the trading suites: requests, metrics scraping, polling."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.clients import RpcFailure
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
_ids = itertools.count()
T = TypeVar("T")


def trade(request_id: str, amount: str = "0.01", **fields) -> pb.TradeRequest:
    values = dict(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                  amount=amount, slippage_bps=300)
    values.update(fields)
    return pb.TradeRequest(**values)


async def balance(client, key: str, mint: str = SOL) -> Decimal:
    """The caller's position in ``mint`` (GetPositions through ``client``)."""
    positions, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mint=mint), key)
    return Decimal(positions.positions[0].amount)


async def found(client, key: str, request_id: str) -> pb.TradeResult | None:
    """GetTrade through ``client``: the trade, or None while it is NOT_FOUND."""
    try:
        result, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    except RpcFailure as failure:
        assert failure.code == "NOT_FOUND", failure
        return None
    return result


async def stage_on(client, key: str, request_id: str) -> int | None:
    """The trade's status as GetTrade on ``client``'s replica answers it (None while unknown)."""
    result = await found(client, key, request_id)
    return None if result is None else result.status


async def reached(client, key: str, request_id: str, stage: int) -> pb.ExecutionStatus:
    """Wait until the trade is known on ``client``'s replica, then follow its status stream
    there until it reaches ``stage`` (wherever it runs); that transition."""
    await eventually(lambda: found(client, key, request_id), what=f"trade {request_id} claimed")
    stream = client.iterate("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id), key)
    try:
        async for event in stream:
            if event.kind == pb.STATUS_KIND_TRANSITION and event.stage == stage:
                return event
    finally:
        await stream.aclose()
    raise AssertionError(f"trade {request_id} ended before {pb.TradeStatus.Name(stage)}")


async def equals(value: Awaitable[T], expected: T) -> bool:
    """For eventually(): whether an awaited probe gives ``expected``."""
    return await value == expected


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns() % 1_000_000}"


async def scrape(gateway) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: {(name, sorted labels): value}."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{gateway.http_url}/metrics")).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def metric(gateway, name: str, **labels) -> float:
    return (await scrape(gateway)).get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(probe: Callable[[], Awaitable[T] | T], timeout: float = 20.0, interval: float = 0.05,
                     what: str = "condition") -> T:
    """Poll ``probe`` (sync or async) until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def transitions(messages) -> list:
    return [m for m in messages if m.kind == pb.STATUS_KIND_TRANSITION]
