"""The LIVE kill switch replicas share in Redis: read at each LIVE trade beside the replica's own
setting and file (the strictest holds), fail safe on what it does not know, and no pass while
Redis does not answer."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from support.redis_server import RedisServer
from tradewire.core.config import LiveConfig, MarketConfig
from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.metrics import register_kill_switch_metric
from tradewire.core.executors.live.safety import SafetyChecks, strictest
from tradewire.core.market import Market
from tradewire.core.shared.redis_kill_switch import KEY, SharedKillSwitch
from tradewire.core.store.live_orders import LiveOrderStore
from tradewire.core.validation import validate_trade
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def live_order(market: Market, input_mint: str, output_mint: str):
    request = pb.TradeRequest(request_id="r1", mode=pb.TRADING_MODE_LIVE, input_mint=input_mint,
                              output_mint=output_mint, amount="1", slippage_bps=50)
    return validate_trade(request, "alice", market)


def refusal_check(checks: SafetyChecks, order) -> str | None:
    refused = checks.before_quote(order)
    return None if refused is None else refused.metadata["check"]


def test_the_shared_switch_holds_beside_the_replicas_own(own_redis, tmp_path):
    market = Market(MarketConfig())
    switch = SharedKillSwitch(own_redis.client())
    orders = LiveOrderStore(tmp_path / "live.db")
    checks = SafetyChecks(LiveConfig(), market, orders, shared_kill_switch=switch.state)
    buy, sell = live_order(market, USDC, SOL), live_order(market, SOL, USDC)
    assert refusal_check(checks, buy) is None

    switch.set("halt")  # on every replica at once
    assert refusal_check(checks, buy) == refusal_check(checks, sell) == "KILL_SWITCH"
    switch.set("reduce_only")
    assert refusal_check(checks, buy) == "REDUCE_ONLY" and refusal_check(checks, sell) is None
    switch.set("off")
    assert own_redis.client().get(KEY) is None and refusal_check(checks, buy) is None

    # The strictest of the replica's own and the shared one holds.
    halted_here = SafetyChecks(LiveConfig(kill_switch="halt"), market, orders, shared_kill_switch=switch.state)
    assert refusal_check(halted_here, sell) == "KILL_SWITCH"
    switch.set("halt")
    reduce_here = SafetyChecks(LiveConfig(kill_switch="reduce_only"), market, orders,
                               shared_kill_switch=switch.state)
    assert refusal_check(reduce_here, sell) == "KILL_SWITCH"


def test_what_the_switch_does_not_know_halts_and_what_it_cannot_read_refuses(own_redis):
    switch = SharedKillSwitch(own_redis.client())
    assert switch.state() == "off"
    own_redis.client().set(KEY, "maybe")
    assert switch.state() == "halt"  # fail safe
    own_redis.client().set(KEY, "Reduce-Only")
    assert switch.state() == "reduce_only"
    own_redis.client().delete(KEY)
    own_redis.client().hset(KEY, "state", "off")  # a key of another type (WRONGTYPE): fail safe too
    assert switch.state() == "halt"  # (it raised: LIVE trades and HealthCheck failed INTERNAL)
    own_redis.client().delete(KEY)
    with pytest.raises(ValueError):
        switch.set("pause")
    own_redis.halt(keep_data=True)
    with pytest.raises(TradewireError) as unread:
        switch.state()
    assert unread.value.reason == "STORE_UNAVAILABLE"


def test_strictest():
    assert strictest("off", "reduce_only") == strictest("reduce_only", "off") == "reduce_only"
    assert strictest("halt", "off", "reduce_only") == "halt"
    assert strictest("off", "off") == "off"


def test_the_gauge_says_the_state_that_holds_and_unknown_when_it_cannot_be_read(own_redis, tmp_path, caplog):
    registry = CollectorRegistry()
    switch = SharedKillSwitch(own_redis.client())
    checks = SafetyChecks(LiveConfig(), Market(MarketConfig()), LiveOrderStore(tmp_path / "live.db"),
                          shared_kill_switch=switch.state)
    register_kill_switch_metric(registry, checks.kill_switch)

    def gauge(state: str) -> float:
        return registry.get_sample_value("tradewire_live_kill_switch", {"state": state})

    assert gauge("off") == 1.0 and gauge("halt") == 0.0
    switch.set("halt")
    with caplog.at_level(logging.WARNING, logger="tradewire.live"):
        assert gauge("halt") == 1.0 and gauge("off") == 0.0
    assert "LIVE kill switch: halt (was off)" in caplog.text
    own_redis.halt(keep_data=True)
    assert gauge("unknown") == 1.0 and gauge("halt") == 0.0
