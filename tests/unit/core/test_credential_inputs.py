"""Where a caller's text could carry an API key's secret, the pipeline and validation refuse it or
leave it out: request ids (a trade's, or the one a lookup names), cancel reasons, correlation ids."""

from __future__ import annotations

import pytest

from tradewire.core.config import MarketConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import TradewireError
from tradewire.core.market import Market
from tradewire.core.pipeline import Call, Pipeline, recordable_trade_id
from tradewire.core.validation import check_cancel, validate_trade
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SECRET = "aONgtTP0ZfnyBf1UQlEfBEPMXNZUsfetCa1mDsWFaM6"  # an API key's secret, without tw_<prefix>_
SHAPED_IDS = ["tw_qafake01_" + SECRET[:31], SECRET, "tw_qafake01_" + SECRET[:16]]
MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def _call(method: str, request=None, headers=None) -> Call:
    return Call(CallContext(protocol=Protocol.HTTP_JSON, method=method, peer="127.0.0.1:1", headers=headers or {}),
                request)


def _pipeline() -> Pipeline:
    pipeline = Pipeline.__new__(Pipeline)  # establish_context and the lookup checks use no collaborator
    pipeline.is_draining = lambda: False
    return pipeline


def _refused_field(action) -> str:
    with pytest.raises(TradewireError) as refused:
        action()
    assert refused.value.reason == "VALIDATION_FAILED"
    assert SECRET[:16] not in refused.value.message
    return [v.field for v in refused.value.field_violations][0]


@pytest.mark.parametrize("request_id", SHAPED_IDS)
def test_a_trade_id_shaped_like_a_key_or_its_secret_is_refused_and_never_recorded(request_id: str) -> None:
    request = pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, amount="0.5", slippage_bps=50,
                              input_mint="So11111111111111111111111111111111111111112", output_mint=MINT)
    assert _refused_field(lambda: validate_trade(request, "alice", Market(MarketConfig()))) == "request_id"
    assert recordable_trade_id(request_id) == ""


@pytest.mark.parametrize("request_id", SHAPED_IDS)
@pytest.mark.parametrize("method,request_type", [("GetTrade", spb.GetTradeRequest),
                                                 ("StreamExecutionStatus", spb.StreamExecutionStatusRequest),
                                                 ("CancelTrade", spb.CancelTradeRequest)])
def test_a_lookup_by_such_an_id_is_refused_before_its_not_found_could_repeat_it(request_id, method,
                                                                                request_type) -> None:
    call = _call(method, request_type(request_id=request_id))
    assert _refused_field(lambda: _pipeline().validate(call)) == "request_id"


def test_lookups_by_ordinary_ids_mints_and_uuids_pass() -> None:
    for request_id in ("order-1", MINT, "6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b4c3a21", "6f1c2a9e3b7d4c1e9a2f0d8e5b4c3a21"):
        for request in (spb.GetTradeRequest(request_id=request_id), spb.CancelTradeRequest(request_id=request_id),
                        spb.StreamExecutionStatusRequest(request_id=request_id)):
            _pipeline().validate(_call("GetTrade", request))
        assert recordable_trade_id(request_id) == request_id


@pytest.mark.parametrize("reason", [f"rotated key {SECRET}", f"old key tw_qafake01_{SECRET[:20]}"])
def test_a_cancel_reason_holding_a_secret_is_refused(reason: str) -> None:
    assert _refused_field(lambda: check_cancel(spb.CancelTradeRequest(request_id="t-1", reason=reason))) == "reason"
    # (a session's cancel names its fields under "cancel.")
    field = _refused_field(lambda: check_cancel(spb.CancelTradeRequest(request_id="t-1", reason=reason), "cancel."))
    assert field == "cancel.reason"
    check_cancel(spb.CancelTradeRequest(request_id="t-1", reason=f"mint {MINT} delisted"))


@pytest.mark.parametrize("given", SHAPED_IDS)
def test_a_correlation_id_shaped_like_a_secret_is_replaced_not_echoed(given: str) -> None:
    call = _call("GetMarket", headers={"x-correlation-id": given})
    _pipeline().establish_context(call)
    assert call.ctx.correlation_id == call.ctx.request_id
    assert call.ctx.response_headers["x-correlation-id"] == call.ctx.request_id
    kept = _call("GetMarket", headers={"x-correlation-id": MINT})
    _pipeline().establish_context(kept)
    assert kept.ctx.correlation_id == MINT
