"""The access line's peer goes through the audit's redaction: a peer a proxy named is text."""

from __future__ import annotations

import json

import pytest

from tradewire.core.audit.events import REDACTED
from tradewire.core.config import TracingConfig
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code
from tradewire.core.logs import configure_logging
from tradewire.core.metrics import Metrics
from tradewire.core.recorder import Recorder
from tradewire.core.tracing import Tracing

SECRET = "aONgtTP0ZfnyBf1UQlEfBEPMXNZUsfetCa1mDsWFaM6"


@pytest.mark.parametrize("peer,logged", [(f"tw_qafake01_{SECRET}:0", REDACTED), (f"[fe80::1%{SECRET}]:0", REDACTED),
                                         ("10.9.8.7:0", "10.9.8.7:0"), ("ipv6:[::1]:50432", "ipv6:[::1]:50432")])
def test_the_peer_on_the_access_line_is_redacted_as_in_the_audit(log_stream, peer, logged):
    configure_logging("INFO", stream=log_stream)
    recorder = Recorder(Metrics(), None, Tracing(TracingConfig()), audit_enabled=False)
    ctx = CallContext(protocol=Protocol.HTTP_JSON, method="GetMarket", headers={}, peer=peer,
                      request_id="r-1", correlation_id="c-1")
    recorder.call_finished(ctx, Code.OK)
    (line,) = [json.loads(text) for text in log_stream.getvalue().splitlines()]
    assert line["msg"] == "call" and line["peer"] == logged
    assert SECRET[:16] not in log_stream.getvalue()
