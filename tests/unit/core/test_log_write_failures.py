"""A log line that cannot be written (its terminal closed, its pipe's reader gone) is dropped:
it never fails the call or the trade that writes it."""

from __future__ import annotations

import errno
import io

import pytest

from tradewire.core.logs import configure_logging, event_logger


class ClosedTerminal(io.TextIOWrapper):
    """stderr once its terminal was closed: every write fails with EIO."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")

    @property
    def buffer(self):
        return self

    def write(self, data):  # (both the text and the binary writes)
        raise OSError(errno.EIO, "Input/output error")


@pytest.fixture
def closed_terminal():
    configure_logging("INFO", stream=ClosedTerminal())
    yield
    configure_logging("INFO")


def test_a_line_to_a_closed_terminal_does_not_fail_its_writer(closed_terminal) -> None:
    log = event_logger("tradewire.access")
    log.info("call", method="ExecuteTrade", code="OK")  # raised OSError before
    log.warning("transition", stage="FILLED")
