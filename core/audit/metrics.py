"""The audit sink's counters as Prometheus metrics, read from ``stats()`` at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tradewire.core.audit.sink import AuditSink

# (stats field, metric name, help): no gauge may share a family name with a counter
# (tradewire_audit_spooled was both, and merged exposition then typed the counter a gauge)
_GAUGES = (
    ("queue_depth", "queue_depth", "Audit events accepted and not yet written or spooled"),
    ("queue_max", "queue_max", "Bound of the audit queue (0: unbounded)"),
    ("spooled", "spool_rows", "Audit rows waiting in the local spool for QuestDB"),
)
_COUNTERS = {
    "rows_written": "Audit rows acknowledged by the backend",
    "spooled": "Audit rows ever written to the spool",
    "spilled": "Audit rows spilled to the spool because the queue was full",
    "replayed": "Audit rows replayed from the spool",
    "write_errors": "Failed audit write attempts (rows kept, not lost)",
    "rejected": "Audit rows the backend refused as invalid (kept aside)",
}


class AuditCollector(Collector):
    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self.created = time.time()  # the counters count from here: their _created series, as every counter's

    def collect(self) -> Iterator:
        stats = self.sink.stats()
        for field, name, doc in _GAUGES:
            family = GaugeMetricFamily(f"tradewire_audit_{name}", doc, labels=["backend"])
            family.add_metric([stats.backend], getattr(stats, field))
            yield family
        for name, doc in _COUNTERS.items():
            family = CounterMetricFamily(f"tradewire_audit_{name}", doc, labels=["backend"])
            family.add_metric([stats.backend], getattr(stats, f"{name}_total"), created=self.created)
            yield family
        healthy = GaugeMetricFamily("tradewire_audit_backend_up",
                                    "1 when the audit backend takes rows (0: down, refusing them or not "
                                    "reached yet; its rows are spooled meanwhile)",
                                    labels=["backend"])
        healthy.add_metric([stats.backend], 1.0 if stats.healthy else 0.0)
        yield healthy


def register_audit_metrics(registry: CollectorRegistry, sink: AuditSink) -> None:
    registry.register(AuditCollector(sink))
