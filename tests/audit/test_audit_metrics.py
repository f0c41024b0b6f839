"""The audit sink's Prometheus families: one name, one type. A gauge and a counter sharing a
family name (tradewire_audit_spooled) came out typed as a gauge once several workers' expositions
were merged, and Prometheus then rejects or mistypes the series."""

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tradewire.core.audit.metrics import register_audit_metrics
from tradewire.core.audit.sink import SinkStats


class StatsOnly:
    def stats(self) -> SinkStats:
        return SinkStats(backend="questdb", queue_depth=3, spooled=7, spooled_total=11, rows_written_total=5)


def test_every_family_has_its_own_name_and_reads_back_as_its_type():
    registry = CollectorRegistry()
    register_audit_metrics(registry, StatsOnly())
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    by_name = {f.name: f for f in families}
    assert by_name["tradewire_audit_spool_rows"].type == "gauge"
    assert by_name["tradewire_audit_spool_rows"].samples[0].value == 7
    assert by_name["tradewire_audit_spooled"].type == "counter"
    assert {s.name: s.value for s in by_name["tradewire_audit_spooled"].samples}["tradewire_audit_spooled_total"] == 11


def test_every_audit_counter_has_its_created_series_as_every_other_counter():
    registry = CollectorRegistry()
    before = time.time()
    register_audit_metrics(registry, StatsOnly())
    samples = {s.name: s.value for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    counters = [name.removesuffix("_total") for name in samples if name.endswith("_total")]
    assert len(counters) == 6
    for name in counters:  # (the text format writes it as a family of its own)
        assert before <= samples[f"{name}_created"] <= time.time(), name
