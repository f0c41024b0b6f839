"""Fixtures for the audit tests.

``questdb`` (tests/conftest.py) is one real server for the whole session. ``own_questdb`` is
a module's own server, for tests that empty, reconfigure or freeze it.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from support.questdb import QuestDBServer, run_script


@pytest.fixture
def principal() -> str:
    """A principal unique to the test: rows are counted per principal on the shared server."""
    return f"t-{uuid.uuid4().hex[:12]}"


class OwnQuestDB(QuestDBServer):
    """A QuestDB server a test may restart empty, with other settings, or freeze."""

    def __init__(self, root) -> None:
        super().__init__(root)
        # QuestDB's own default, whatever scripts/questdb.sh chooses: ILP makes up missing tables
        self.env["QDB_LINE_AUTO_CREATE_NEW_TABLES"] = "true"
        self._base_env = dict(self.env)

    def restart_empty(self, **settings: str) -> None:
        """Stop, wipe the data directory and start again on the same ports (``settings``:
        ``QDB_*`` variables for the new server, replacing those of the last restart)."""
        self.stop()
        shutil.rmtree(self.root)
        self.root.mkdir()
        self.env = {**self._base_env, **settings}
        self.start()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the server (it accepts connections and answers nothing), SIGCONT after."""
        pid = int((self.root / "questdb.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_questdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnQuestDB]:
    run_script("fetch", timeout=900)
    server = OwnQuestDB(tmp_path_factory.mktemp("own-questdb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
