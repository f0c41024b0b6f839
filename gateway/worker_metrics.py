"""/metrics for a service of several workers (``[server] workers`` > 1): every worker's figures.

The kernel hands a scrape of the shared port to one worker, which alone knows only its own
registry. So each worker also serves its exposition on a Unix socket of its own (in Linux's
abstract namespace: no file to clean up after a crash; named after the service's HTTP address
and the worker's index, which the supervisor's workers share and nothing else does), and the
worker that gets a scrape reads its siblings' over theirs and answers the union: each sample
labelled ``worker="i"``, as one family per metric. Nothing is summed: a worker's counters
start over when it is restarted, which Prometheus' rate() handles per series, and a
configured limit summed over workers would mean nothing. ``tradewire_worker_scraped{worker}``
says whose figures are in (0 for a worker restarting at that moment).

prometheus_client's multiprocess mode was the alternative; it cannot carry the collectors
that read live state at scrape time (audit queues, circuit breakers, the event loop's tasks).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("tradewire.server")

READ_TIMEOUT_S = 2.0
MAX_EXPOSITION_BYTES = 64 << 20


def socket_name(http_host: str, http_port: int, index: int) -> str:
    return f"\0tradewire-metrics-{http_host}:{http_port}-{index}"


async def exposition_of(registry: CollectorRegistry) -> bytes:
    """The registry's exposition, built in a thread: a scrape with many series costs tens of ms
    of pure Python, and its collectors may read the shared store (the LIVE kill switch); on the
    loop, every call this process serves would wait that long. (The loop still gets the GIL at
    each switch interval, ~5 ms.)"""
    return await asyncio.to_thread(generate_latest, registry)


class WorkerMetrics:
    """One worker's side: its exposition served to its siblings, and theirs gathered."""

    def __init__(self, registry: CollectorRegistry, index: int, workers: int, http_host: str, http_port: int) -> None:
        self.registry = registry
        self.index = index
        self.workers = workers
        self.http_host = http_host
        self.http_port = http_port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # (Bound here: uvloop takes no abstract name as a path.)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.bind(socket_name(self.http_host, self.http_port, self.index))
        listening.listen(16)
        listening.setblocking(False)
        self._server = await asyncio.start_unix_server(self._answer, sock=listening)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await exposition_of(self.registry))
            await writer.drain()
        except ConnectionError:
            pass
        except Exception:  # a collector failed: the asking worker gets nothing, and says so (not scraped)
            log.exception("this worker's metrics could not be collected")
        finally:
            writer.close()

    async def exposition(self) -> bytes:
        """Every worker's figures (this one's, and those of the siblings that answered)."""
        siblings = [i for i in range(self.workers) if i != self.index]
        own, *texts = await asyncio.gather(exposition_of(self.registry), *(self._read(i) for i in siblings))
        by_worker = {self.index: own, **dict(zip(siblings, texts))}
        # Parsing and writing out the figures costs tens of ms per worker (pure Python): off the
        # loop, or each scrape would stall every call this worker serves for that long.
        return await asyncio.to_thread(_merged, by_worker)

    async def _read(self, index: int) -> bytes | None:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                connection, socket_name(self.http_host, self.http_port, index)), READ_TIMEOUT_S)
            reader, writer = await asyncio.open_unix_connection(sock=connection)
        except (OSError, TimeoutError):
            connection.close()
            return None  # restarting, or not started yet
        try:
            return await asyncio.wait_for(_read_to_end(reader), READ_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("worker %d's metrics could not be read: %s", index, exc)
            return None
        finally:
            writer.close()


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """All a sibling sent (its exposition, then it closes), at most MAX_EXPOSITION_BYTES."""
    chunks, size = [], 0
    while chunk := await reader.read(1 << 16):
        size += len(chunk)
        if size > MAX_EXPOSITION_BYTES:
            raise ValueError(f"exposition over {MAX_EXPOSITION_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _merged(by_worker: dict[int, bytes | None]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Union(by_worker))
    return generate_latest(registry)


class _Union(Collector):
    """The families of several expositions as one, each sample labelled with its worker."""

    def __init__(self, by_worker: dict[int, bytes | None]) -> None:
        self.by_worker = by_worker

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        scraped = Metric("tradewire_worker_scraped", "1 for each worker whose figures this scrape holds", "gauge")
        for index, text in sorted(self.by_worker.items()):
            worker = str(index)
            read = _families(index, text)
            scraped.add_sample("tradewire_worker_scraped", {"worker": worker}, 0.0 if read is None else 1.0)
            for family in read or ():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                            family.unit)
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": worker}, sample.value,
                                      sample.timestamp, sample.exemplar)
        yield from families.values()
        yield scraped


def _families(index: int, text: bytes | None) -> list[Metric] | None:
    """A worker's exposition parsed whole; None if it could not be read or parsed."""
    if not text:  # (a sibling whose collection failed closes without a word: nothing of it is in)
        return None
    try:
        return list(text_string_to_metric_families(text.decode("utf-8")))
    except ValueError as exc:  # (UnicodeDecodeError is one)
        log.warning("worker %d's metrics could not be parsed: %s", index, exc)
        return None
