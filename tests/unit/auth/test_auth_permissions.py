"""The per-method, per-mode scope table."""

from __future__ import annotations

import enum

import pytest

from tradewire.core.auth.permissions import METHOD_ACCESS, authorize, required_scopes
from tradewire.core.context import Principal
from tradewire.core.errors import Code, TradewireError

TRADE = ["ExecuteTrade", "ExecuteTradeBatch", "TradeSession", "CancelTrade"]
READ = ["GetTrade", "GetTradeHistory", "GetPositions", "GetMarket", "StreamExecutionStatus"]


def who(*scopes: str) -> Principal:
    return Principal(id="alice", scopes=frozenset(scopes), kind="api_key", label="tw_abcdefgh")


def allowed(principal: Principal | None, method: str, mode=None) -> bool:
    try:
        authorize(principal, method, mode)
    except TradewireError as exc:
        assert exc.reason == "PERMISSION_DENIED" and exc.code is Code.PERMISSION_DENIED
        return False
    return True


def test_table_covers_exactly_the_service_methods() -> None:
    assert set(METHOD_ACCESS) == set(TRADE) | set(READ) | {"HealthCheck"}


@pytest.mark.parametrize("method", TRADE)
@pytest.mark.parametrize(
    ("scopes", "paper", "live"),
    [
        ((), False, False),
        (("read",), False, False),
        (("trade:paper",), True, False),
        (("trade:live",), True, True),
        (("read", "trade:paper"), True, False),
        (("admin",), True, True),
    ],
)
def test_trade_methods(method: str, scopes: tuple[str, ...], paper: bool, live: bool) -> None:
    assert allowed(who(*scopes), method, "PAPER") is paper
    assert allowed(who(*scopes), method, "LIVE") is live
    assert allowed(who(*scopes), method, None) is paper  # unresolved mode: the PAPER rule


@pytest.mark.parametrize("method", READ)
@pytest.mark.parametrize(
    ("scopes", "ok"),
    [((), False), (("read",), True), (("trade:paper",), True), (("trade:live",), True), (("admin",), True)],
)
def test_read_methods(method: str, scopes: tuple[str, ...], ok: bool) -> None:
    assert allowed(who(*scopes), method) is ok


def test_health_check_is_public() -> None:
    assert allowed(None, "HealthCheck")
    assert allowed(who(), "HealthCheck")
    assert required_scopes("HealthCheck") == ()


def test_live_denial_names_the_missing_scope() -> None:
    with pytest.raises(TradewireError) as caught:
        authorize(who("read", "trade:paper"), "ExecuteTrade", "LIVE")
    err = caught.value
    assert "'trade:live'" in err.message and "LIVE" in err.message
    assert err.metadata["required_scope"] == "trade:live"


def test_read_denial_names_read() -> None:
    with pytest.raises(TradewireError) as caught:
        authorize(who(), "GetPositions")
    assert caught.value.metadata["required_scope"] == "read"
    assert "'read'" in caught.value.message


def test_unknown_method_is_refused_even_for_admin() -> None:
    assert not allowed(who("admin"), "DropDatabase")
    assert not allowed(None, "DropDatabase")


def test_anonymous_is_refused_for_protected_methods() -> None:
    assert not allowed(None, "GetTrade")
    assert not allowed(None, "ExecuteTrade", "PAPER")


def test_mode_forms() -> None:
    class TradingMode(enum.Enum):
        TRADING_MODE_UNSPECIFIED = 0
        TRADING_MODE_PAPER = 1
        TRADING_MODE_LIVE = 2

    paper_only = who("trade:paper")
    assert allowed(paper_only, "ExecuteTrade", "paper")
    assert not allowed(paper_only, "ExecuteTrade", "live")
    assert not allowed(paper_only, "ExecuteTrade", TradingMode.TRADING_MODE_LIVE)
    assert allowed(paper_only, "ExecuteTrade", TradingMode.TRADING_MODE_PAPER)
    assert allowed(paper_only, "ExecuteTrade", "TRADING_MODE_UNSPECIFIED")
    with pytest.raises(TradewireError) as caught:
        authorize(paper_only, "ExecuteTrade", "SHADOW")
    assert caught.value.reason == "VALIDATION_FAILED"
    assert caught.value.field_violations[0].field == "mode"
