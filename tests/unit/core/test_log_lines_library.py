"""Lines from libraries (the standard logging path) never carry a credential a client sent:
whatever they quote is redacted as the audit redacts it, and grpcio's line about a header value
that is not UTF-8 is one warning without the value."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tradewire.core.audit.events import REDACTED
from tradewire.core.logs import configure_logging

KEY = "tw_ab12cd34_Q3vX9kLmN2pR7sT1uW4yZ6bC8dE0fG2hJ5kM7nP9qR"


@pytest.fixture
def lines():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging("INFO")


def test_a_library_line_quoting_a_key_is_redacted_message_traceback_and_fields(lines) -> None:
    log = logging.getLogger("some.library")
    log.warning("refused header %r", KEY, extra={"header": f"Bearer {KEY}"})
    try:
        raise ValueError(f"bad value {KEY}")
    except ValueError:
        log.exception("failed")
    quoted, failed = lines()
    assert quoted["msg"] == REDACTED and quoted["header"] == REDACTED
    assert failed["msg"] == "failed" and failed["exc"] == REDACTED
    assert KEY[12:28] not in json.dumps(lines())


def test_grpcios_line_about_an_undecodable_header_is_one_warning_without_the_value(lines) -> None:
    try:
        b"\xa0".decode()
    except UnicodeDecodeError:
        logging.getLogger("grpc._cython.cygrpc").exception("Invalid encoding on %s", f"b'Bearer {KEY}\\xa0'")
    (line,) = lines()
    assert line["level"] == "warning" and "exc" not in line
    assert line["msg"] == "a request header value that is not UTF-8 was read as Latin-1 (value not logged)"
