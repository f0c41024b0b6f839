"""Idempotency as a client retrying across protocols meets it: one request id is one trade,
whichever protocol carries it and however its payload is spelled; the replay is the first
answer, byte for byte; a different order under that id is ALREADY_EXISTS naming what differs."""

import asyncio
import json

import httpx
import pytest
from google.protobuf import json_format, timestamp_pb2

from support.clients import PROTOCOLS, RpcFailure, make_client
from support.trading import SOL, USDC, eventually, found, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SERVICE = "/tradewire.v1.TradeExecutionService"


async def _post_json(gateway, path: str, body: str, key: str) -> pb.TradeResult:
    """A JSON body sent as written (a client's own spelling), answered as a TradeResult."""
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=30) as http:
        response = await http.post(path, content=body, headers={"authorization": f"Bearer {key}",
                                                                "content-type": "application/json"})
    assert response.status_code == 200, response.text
    return json_format.Parse(response.text, pb.TradeResult())


async def test_one_order_spelled_differently_on_every_protocol_is_one_trade(gateway):
    key, request_id = gateway.key("alice"), unique("spelled")
    clients = {name: make_client(name, gateway) for name in PROTOCOLS}
    try:
        first, _ = await clients["grpc"].unary("ExecuteTrade", trade(request_id, amount="0.01", slippage_bps=50), key)
        assert first.status == pb.TRADE_STATUS_FILLED
        # Binary spellings: trailing zeros, defaults written out, an empty MEV message, a field
        # this version does not know (field 99).
        binary = {
            "connect-proto": trade(request_id, amount="0.0100", slippage_bps=50, swap_mode=pb.SWAP_MODE_EXACT_IN),
            "grpc-web": trade(request_id, amount="00.01", slippage_bps=50, mev_protection=pb.MevProtection(
                strategy=pb.MEV_STRATEGY_NONE)),
            "grpc": pb.TradeRequest.FromString(
                trade(request_id, amount="0.010", slippage_bps=50).SerializeToString() + b"\xb8\x06\x07"),
        }
        replays = [(await clients[name].unary("ExecuteTrade", request, key))[0] for name, request in binary.items()]
        # JSON spellings: enum by number, integers as strings, proto field names, explicit zeros and nulls.
        replays.append(await _post_json(gateway, f"{SERVICE}/ExecuteTrade", json.dumps({
            "request_id": request_id, "mode": 1, "input_mint": SOL, "output_mint": USDC, "amount": "0.01000",
            "slippage_bps": "50", "swap_mode": "SWAP_MODE_UNSPECIFIED", "clientMetadata": {}, "webhookUrl": "",
            "mevProtection": {"strategy": "MEV_STRATEGY_UNSPECIFIED", "computeUnitPriceMicroLamports": "0",
                              "jitoTipLamports": 0}, "maxPriceImpactBps": 0}), key))
        replays.append(await _post_json(gateway, "/v1/trades", json.dumps({
            "requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
            "amount": "0.01", "slippageBps": 50.0, "mevProtection": None, "deadline": None, "swapMode": None}), key))
        for replay in replays:  # the first answer, byte for byte: trade id, amounts, fees, timestamps
            assert replay.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)
        for client in clients.values():
            fetched, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
            assert fetched == first
            events = await client.stream("StreamExecutionStatus",
                                         spb.StreamExecutionStatusRequest(request_id=request_id), key)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1)) and events[-1].result == first
        history, _ = await clients["http"].unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=500), key)
        assert [t.request_id for t in history.trades].count(request_id) == 1
    finally:
        for client in clients.values():
            await client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("change, named", [
    ({"amount": "0.02"}, "amount"),
    ({"swap_mode": pb.SWAP_MODE_EXACT_OUT}, "swap_mode"),
    ({"client_metadata": {"desk": "b"}}, "client_metadata"),
], ids=["amount", "swap_mode", "client_metadata"])
async def test_a_different_order_under_the_id_is_refused_naming_the_field(gateway, protocol, change, named):
    key, request_id = gateway.key("alice"), unique("differs")
    client = make_client(protocol, gateway)
    try:
        first, _ = await client.unary("ExecuteTrade", trade(request_id, client_metadata={"desk": "a"}), key)
        with pytest.raises(RpcFailure) as refused:
            await client.unary("ExecuteTrade", trade(request_id, **{"client_metadata": {"desk": "a"}, **change}), key)
        assert (refused.value.code, refused.value.reason) == ("ALREADY_EXISTS", "DUPLICATE_REQUEST_MISMATCH")
        assert f"({named} differs)" in refused.value.message
        fetched, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
        assert fetched == first  # the refusal changed nothing
    finally:
        await client.close()


# Fields a TradeResult does not record are named too (compared with the request as stored): a
# client that rebuilds its deadline on each retry is told which field it changed.
@pytest.mark.parametrize("change, named", [
    ({"slippage_bps": 51}, "slippage_bps"),
    ({"max_price_impact_bps": 10}, "max_price_impact_bps"),
    ({"deadline": timestamp_pb2.Timestamp(seconds=4_000_000_000)}, "deadline"),
    ({"mev_protection": pb.MevProtection(compute_unit_price_micro_lamports=5)}, "mev_protection"),
], ids=["slippage_bps", "max_price_impact_bps", "deadline", "mev_protection"])
async def test_a_difference_the_result_does_not_record_is_named_too(gateway, change, named):
    key, request_id = gateway.key("alice"), unique("unnamed")
    client = make_client("http", gateway)
    try:
        await client.unary("ExecuteTrade", trade(request_id), key)
        with pytest.raises(RpcFailure) as refused:
            await client.unary("ExecuteTrade", trade(request_id, **change), key)
        assert refused.value.reason == "DUPLICATE_REQUEST_MISMATCH"
        assert named in refused.value.message
    finally:
        await client.close()


async def test_request_ids_are_case_sensitive_and_each_callers_own(gateway):
    alice, bob = gateway.key("alice"), gateway.key("bob")
    tail = unique("id")
    longest = ("Az09._:-" + tail).ljust(64, "-")  # 64 characters, every kind the contract allows
    client = make_client("grpc", gateway)
    http = make_client("http", gateway)
    try:
        upper, _ = await client.unary("ExecuteTrade", trade(longest, amount="0.01"), alice)
        lower, _ = await client.unary("ExecuteTrade", trade(longest.lower(), amount="0.02"), alice)
        others, _ = await client.unary("ExecuteTrade", trade(longest, amount="0.03"), bob)
        assert len({upper.trade_id, lower.trade_id, others.trade_id}) == 3
        for who, request_id, expected in ((alice, longest, upper), (alice, longest.lower(), lower),
                                          (bob, longest, others)):
            fetched, _ = await http.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), who)  # by its path
            assert fetched == expected
            replay, _ = await http.unary("ExecuteTrade", trade(request_id, amount=expected.requested_amount), who)
            assert replay == expected
    finally:
        await client.close()
        await http.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_batch_items_and_unary_trades_share_request_ids(gateway, protocol):
    key = gateway.key("alice")
    unary_id, batch_id = unique("unary"), unique("item")
    client = make_client(protocol, gateway)
    try:
        first, _ = await client.unary("ExecuteTrade", trade(unary_id), key)
        batch, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=[
            trade(unary_id, amount="0.0100"), trade(batch_id), trade(unary_id + "-x", amount="0.01")]), key)
        assert batch.results[0].result == first  # a unary trade, replayed as a batch item
        item = batch.results[1].result
        again, _ = await client.unary("ExecuteTrade", trade(batch_id), key)
        assert again == item  # a batch item, replayed as a unary trade
        refused, _ = await client.unary("ExecuteTradeBatch", spb.ExecuteTradeBatchRequest(trades=[
            trade(batch_id, slippage_bps=1)]), key)
        assert refused.results[0].error.reason == "DUPLICATE_REQUEST_MISMATCH"
        assert [v.field for v in refused.results[0].error.field_violations] == ["trades[0].request_id"]
    finally:
        await client.close()


async def test_a_retry_on_every_protocol_while_the_first_runs_waits_for_its_result(slow_gateway):
    key, request_id = slow_gateway.key("alice"), unique("running")
    clients = [make_client(name, slow_gateway) for name in PROTOCOLS]
    try:
        first = asyncio.create_task(clients[0].unary("ExecuteTrade", trade(request_id), key))
        running = await eventually(lambda: found(clients[0], key, request_id), what="the first attempt claimed")
        assert running.status != pb.TRADE_STATUS_FILLED
        retries = [c.unary("ExecuteTrade", trade(request_id, amount="0.010"), key) for c in clients]
        answers = [answer for answer, _ in await asyncio.gather(first, *retries)]
        assert answers[0].status == pb.TRADE_STATUS_FILLED and answers[0].trade_id == running.trade_id
        assert all(answer == answers[0] for answer in answers)
    finally:
        for client in clients:
            await client.close()


async def test_a_terminal_refusal_is_replayed_not_run_again(gateway):
    key, request_id = gateway.key("alice"), unique("broke")
    clients = [make_client(name, gateway) for name in PROTOCOLS]
    try:
        with pytest.raises(RpcFailure) as first:
            await clients[0].unary("ExecuteTrade", trade(request_id, amount="1000.5"), key)
        assert first.value.reason == "INSUFFICIENT_FUNDS"
        stored = await found(clients[0], key, request_id)
        for client in clients:
            with pytest.raises(RpcFailure) as again:
                await client.unary("ExecuteTrade", trade(request_id, amount="1000.50"), key)
            assert (again.value.code, again.value.reason, again.value.message) == (
                first.value.code, first.value.reason, first.value.message)
            details = {k: v for k, v in first.value.metadata.items() if k in ("needed", "available", "mint")}
            assert len(details) == 3 and details.items() <= again.value.metadata.items(), again.value.metadata
            assert await found(client, key, request_id) == stored  # the same trade, not a new attempt
    finally:
        for client in clients:
            await client.close()
