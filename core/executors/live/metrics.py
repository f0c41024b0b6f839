"""The LIVE upstreams' circuit-breaker states and the kill switch as Prometheus gauges, read at
scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tradewire.core.config import KILL_SWITCH_STATES
from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

STATES = (CLOSED, HALF_OPEN, OPEN)
log = logging.getLogger("tradewire.live")


class BreakerCollector(Collector):
    def __init__(self, breakers: Callable[[], Iterable[CircuitBreaker]]) -> None:
        self.breakers = breakers

    def collect(self) -> Iterator:
        family = GaugeMetricFamily("tradewire_circuit_breaker_state",
                                   "1 for the state each upstream's circuit breaker is in",
                                   labels=["upstream", "state"])
        for breaker in self.breakers():
            current = breaker.state
            for state in STATES:
                family.add_metric([breaker.name, state], 1.0 if current == state else 0.0)
        yield family


def register_breaker_metrics(registry: CollectorRegistry, breakers: Callable[[], Iterable[CircuitBreaker]]) -> None:
    registry.register(BreakerCollector(breakers))


class KillSwitchCollector(Collector):
    def __init__(self, state: Callable[[], str]) -> None:
        self.state = state

    def collect(self) -> Iterator:
        family = GaugeMetricFamily("tradewire_live_kill_switch",
                                   "1 for the LIVE kill switch state that holds (the strictest of the setting, "
                                   "the file and the switch replicas share)", labels=["state"])
        try:
            current = self.state()
        except TradewireError:  # the shared switch cannot be read: no LIVE trade is admitted meanwhile
            current = "unknown"
        except Exception as exc:  # (e.g. a key of another type): a collector that raises fails the whole scrape
            log.warning("the LIVE kill switch could not be read for /metrics: %s: %s", type(exc).__name__, exc)
            current = "unknown"
        for state in (*KILL_SWITCH_STATES, "unknown"):
            family.add_metric([state], 1.0 if current == state else 0.0)
        yield family


def register_kill_switch_metric(registry: CollectorRegistry, state: Callable[[], str]) -> None:
    registry.register(KillSwitchCollector(state))
