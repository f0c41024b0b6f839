"""Fixtures shared by every suite."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from support.questdb import QuestDBServer, run_script
from support.redis_server import RedisServer
from tradewire.core import logs


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDBServer]:
    """One real QuestDB server (jar from Maven Central, cached under .cache/questdb/) on free
    loopback ports with a temporary data directory. Tests that stop it mid-run start it again."""
    run_script("fetch", timeout=900)
    server = QuestDBServer(tmp_path_factory.mktemp("questdb-root"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (the scale-out store)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def log_stream():
    """configure_logging into a buffer for one test; the process's logging restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._hot_sink[0]
    stream = io.StringIO()
    yield stream
    root.handlers[:], level, logs._hot_sink[0] = saved
    root.setLevel(level)
