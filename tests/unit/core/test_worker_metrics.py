"""gateway/worker_metrics.py: a scrape answered by one worker holds every worker's figures,
each labelled with its worker, however large a sibling's exposition is."""

import itertools

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tradewire.gateway import worker_metrics
from tradewire.gateway.worker_metrics import WorkerMetrics

_ports = itertools.count(40_000)


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


async def workers(label_values: int) -> list[WorkerMetrics]:
    port, started = next(_ports), []
    for index in range(2):
        registry = CollectorRegistry()
        counter = Counter("calls", "calls served", ["caller"], registry=registry)
        for i in range(label_values if index == 1 else 3):
            counter.labels(f"caller-{i:06d}").inc(index + 1)
        started.append(WorkerMetrics(registry, index, 2, "127.0.0.1", port))
        await started[-1].start()
    return started


async def test_a_scrape_holds_every_worker_s_figures_however_large(monkeypatch):
    # (both workers share this test's one loop and CPU: the size is the point, not the speed)
    monkeypatch.setattr(worker_metrics, "READ_TIMEOUT_S", 30.0)
    first, second = await workers(label_values=20_000)  # a sibling's exposition of ~2 MB
    try:
        got = samples(await first.exposition())
    finally:
        await first.stop()
        await second.stop()
    assert got[("tradewire_worker_scraped", (("worker", "0"),))] == 1
    assert got[("tradewire_worker_scraped", (("worker", "1"),))] == 1
    from_second = {k: v for k, v in got.items() if k[0] == "calls_total" and ("worker", "1") in k[1]}
    assert len(from_second) == 20_000 and set(from_second.values()) == {2.0}
    assert got[("calls_total", (("caller", "caller-000000"), ("worker", "0")))] == 1.0


async def test_a_worker_that_does_not_answer_is_counted_out_not_fatal():
    first, second = await workers(label_values=3)
    await second.stop()  # restarting, say
    try:
        got = samples(await first.exposition())
    finally:
        await first.stop()
    assert got[("tradewire_worker_scraped", (("worker", "1"),))] == 0
    assert got[("calls_total", (("caller", "caller-000001"), ("worker", "0")))] == 1.0
