"""The recorder's trusted constructors build exactly the rows the validated ones build, and
still redact a credential in free text."""

from __future__ import annotations

import pytest

from tradewire.core.audit.events import (
    REDACTED, auth_attempt_event, request_event, transition_event, trusted_auth_attempt_event,
    trusted_request_event, trusted_transition_event,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize("message", ["", "routed to the paper executor"])
def test_trusted_transition_equals_the_validated_one(message: str) -> None:
    kw = dict(request_id="r-1", principal="alice", mode="PAPER", stage="TRADE_STATUS_ROUTED", sequence=3,
              percent=20, message=message, ts_ns=1_700_000_000_000_000_001)
    trusted, checked = trusted_transition_event(**kw), transition_event(**kw)
    assert trusted == checked and trusted.to_record() == checked.to_record()
    assert type(trusted.columns["percent"]) is float


@pytest.mark.parametrize("principal,reason", [("alice", None), (None, "UNAUTHENTICATED"), ("bob", "")])
def test_trusted_request_and_auth_rows_equal_the_validated_ones(principal, reason) -> None:
    req = dict(method="ExecuteTrade", protocol="grpc", principal=principal, request_id="abc", correlation_id="c-1",
               code="OK", latency_us=12, reason=reason, ts_ns=5)
    assert trusted_request_event(**req).to_record() == request_event(**req).to_record()
    auth = dict(method="ExecuteTrade", protocol="grpc", outcome="failure", correlation_id="c-1", request_id="abc",
                principal=principal, key_prefix="tw_alice001_", peer="ipv4:127.0.0.1:1", reason=reason, ts_ns=7)
    assert trusted_auth_attempt_event(**auth).to_record() == auth_attempt_event(**auth).to_record()


def test_trusted_constructors_keep_the_secret_value_guard_redacting_what_looks_like_a_credential() -> None:
    transition = trusted_transition_event(JWT, "alice", "PAPER", "TRADE_STATUS_FAILED", 9, 100,
                                          f"upstream said {JWT}", 1)
    assert transition.columns["request_id"] == transition.columns["message"] == REDACTED
    assert transition.to_record() == transition_event(
        request_id=JWT, principal="alice", mode="PAPER", stage="TRADE_STATUS_FAILED", sequence=9,
        percent=100, message=f"upstream said {JWT}", ts_ns=1).to_record()  # the same row either way
    request = trusted_request_event("ExecuteTrade", "grpc", None, "abc", JWT, "OK", 1, None, 1)
    assert request.columns["correlation_id"] == REDACTED and request.columns["request_id"] == "abc"
    attempt = trusted_auth_attempt_event("ExecuteTrade", "grpc", "failure", "c", "abc", None, None,
                                         "Bearer " + "x" * 40, None, 1)
    assert attempt.columns["peer"] == REDACTED
    assert JWT not in repr([transition, request, attempt]) and "x" * 40 not in repr(attempt)
