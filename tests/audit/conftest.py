"""Fixtures for the audit tests.

``questdb`` is session-scoped: it fetches the real server jar (scripts/questdb.sh fetch,
cached under .cache/questdb/), starts one server on free loopback ports with a temporary
data directory, and stops it at the end of the session. Tests that stop it mid-run start it
again before they finish.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audittest_support import QuestDBServer, run_script  # noqa: E402


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDBServer]:
    run_script("fetch", timeout=900)
    server = QuestDBServer(tmp_path_factory.mktemp("questdb-root"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def principal() -> str:
    """A principal unique to the test: rows are counted per principal on the shared server."""
    return f"t-{uuid.uuid4().hex[:12]}"
