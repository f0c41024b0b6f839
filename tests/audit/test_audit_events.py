"""Unit tests: the audit event model, deterministic ids, the schema and the secret guard."""

from __future__ import annotations

import dataclasses

import pytest

from tradewire.core.audit import (
    TABLES,
    AuditEvent,
    SecretLeakError,
    auth_attempt_event,
    fill_event,
    make_event_id,
    request_event,
    transition_event,
)
from tradewire.core.audit.events import REDACTED

TS = 1_764_000_000_123_456_789


def _transition(**kw):
    args = dict(
        request_id="req-1",
        principal="alice",
        mode="paper",
        stage="QUOTED",
        sequence=3,
        percent=30,
        message="quoted",
        ts_ns=TS,
    )
    args.update(kw)
    return transition_event(**args)


def test_event_ids_are_deterministic_per_event():
    a, b = _transition(), _transition(ts_ns=TS + 5)
    assert a.event_id == b.event_id  # identity, not time
    assert len(a.event_id) == 32 and int(a.event_id, 16) >= 0
    assert _transition(sequence=4).event_id != a.event_id
    assert _transition(stage="SIGNED").event_id != a.event_id
    assert _transition(request_id="req-2").event_id != a.event_id
    assert _transition(principal="bob").event_id != a.event_id


def test_make_event_id_parts_do_not_collide():
    assert make_event_id("t", "a", "bc") != make_event_id("t", "ab", "c")
    assert make_event_id("t", None) != make_event_id("t", "")
    assert make_event_id("t", None) != make_event_id("t", "None")
    assert make_event_id("t", 1) == make_event_id("t", "1")
    assert make_event_id("t1", "x") != make_event_id("t2", "x")


def test_an_id_part_holding_a_lone_surrogate_still_makes_an_id():
    # (Python's view of a file name's undecodable byte, as an admin command's host or path may hold)
    odd = make_event_id("tw_admin", "caf\udce9")
    assert len(odd) == 32 and odd != make_event_id("tw_admin", "caf\udce8")
    assert _transition(request_id="r\udce9").event_id != _transition(request_id="r").event_id


def test_five_tables_and_their_ddl():
    assert set(TABLES) == {"tw_requests", "tw_auth_attempts", "tw_transitions", "tw_fills", "tw_admin"}
    ddl = TABLES["tw_fills"].ddl()
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS tw_fills (")
    assert "event_id VARCHAR" in ddl and "ts TIMESTAMP" in ddl
    assert ddl.endswith(
        "TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, event_id)"
    )


def test_constructors_fill_their_tables():
    r = request_event(
        method="SubmitSwap",
        protocol="grpc",
        principal="alice",
        request_id="req-1",
        correlation_id="c-1",
        code="OK",
        latency_us=1234,
        ts_ns=TS,
    )
    assert r.table == "tw_requests" and r.ts_ns == TS
    assert dict(r.symbols) == {"method": "SubmitSwap", "protocol": "grpc", "principal": "alice", "code": "OK"}
    assert dict(r.columns) == {"request_id": "req-1", "correlation_id": "c-1", "latency_us": 1234}

    a = auth_attempt_event(
        method="SubmitSwap",
        protocol="http",
        outcome="failure",
        correlation_id="c-2",
        request_id="call-2",
        key_prefix="tw_ab12",
        peer="127.0.0.1:5555",
        reason="UNKNOWN_KEY",
    )
    assert a.table == "tw_auth_attempts" and "principal" not in a.symbols
    assert a.columns["key_prefix"] == "tw_ab12" and a.symbols["outcome"] == "failure"

    t = _transition()
    assert t.columns["percent"] == 30.0 and isinstance(t.columns["percent"], float)

    f = fill_event(
        request_id="req-1",
        principal="alice",
        mode="live",
        input_mint="So11111111111111111111111111111111111111112",
        output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        amount_in=2**64 - 1,  # a u64 does not fit a LONG: stored as a decimal string
        amount_out="1500000",
        fee_lamports=5000,
        signature="5" * 88,
        slot=123,
        ts_ns=TS,
    )
    assert f.columns["amount_in"] == str(2**64 - 1) and f.columns["amount_out"] == "1500000"


@pytest.mark.parametrize("bad", [-1, "1.5", "01", "", 1.5, True, "1e6", "15\n"])
def test_amounts_must_be_atomic_integers(bad):
    with pytest.raises(ValueError):
        fill_event(
            request_id="r",
            principal="p",
            mode="paper",
            input_mint="a",
            output_mint="b",
            amount_in=bad,
            amount_out=1,
            fee_lamports=0,
        )


def test_events_are_immutable_and_round_trip():
    ev = _transition()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.ts_ns = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.columns["sequence"] = 9  # type: ignore[index]
    assert AuditEvent.from_record(ev.to_record()) == ev
    assert hash(AuditEvent.from_record(ev.to_record())) == hash(ev)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(table="tw_nope"), "unknown audit table"),
        (dict(symbols={"colour": "red"}), "unknown symbol"),
        (dict(columns={"nope": 1}), "unknown column"),
        (dict(columns={"sequence": "3"}), "must be an int"),
        (dict(columns={"sequence": True}), "must not be a bool"),
        (dict(columns={"sequence": 2**63}), "out of the signed 64-bit range"),
        (dict(columns={"percent": float("nan")}), "finite"),
        (dict(columns={"message": 5}), "must be a str"),
        (dict(ts_ns=0), "ts_ns"),
        (dict(ts_ns=1.5), "ts_ns"),
        (dict(event_id=""), "event_id"),
    ],
)
def test_schema_is_enforced(kw, msg):
    args = dict(table="tw_transitions", event_id="e", ts_ns=TS, symbols={}, columns={})
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        AuditEvent(**args)


@pytest.mark.parametrize(
    "symbols, columns",
    [
        ({}, {"token": "x"}),
        ({}, {"access_token": "x"}),
        ({"api_key": "x"}, {}),
        ({}, {"authorization": "x"}),
        ({}, {"password": "x"}),
        ({}, {"client_secret": "x"}),
    ],
)
def test_secret_looking_keys_are_refused(symbols, columns):
    with pytest.raises(SecretLeakError):
        AuditEvent(table="tw_requests", event_id="e", ts_ns=TS, symbols=symbols, columns=columns)


@pytest.mark.parametrize(
    "message",
    [
        "Bearer abcdefghijklmnopqrstuvwxyz012345",
        "header was eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
        "-----BEGIN PRIVATE KEY-----\nMIIE...",
        "key tw_ab12cd34_" + "Zq9" * 11 + " was sent",  # a tradewire API key
        "[" + ",".join(["7"] * 64) + "]",
    ],
)
def test_secret_looking_values_are_redacted(message):
    event = _transition(message=message)
    assert event.columns["message"] == REDACTED
    assert message not in repr(event) and message not in str(event.to_record())


def test_ordinary_text_passes_the_guard():
    for message in ("Basic checks passed", "bearer of bad news", "signed with 1 signer"):
        assert _transition(message=message).columns["message"] == message


def test_key_prefix_must_be_a_prefix_not_the_key():
    with pytest.raises(SecretLeakError):
        auth_attempt_event(
            method="m",
            protocol="grpc",
            outcome="failure",
            correlation_id="c",
            request_id="r",
            key_prefix="tw_live_0123456789abcdef0123456789abcdef",
        )
    with pytest.raises(ValueError):
        auth_attempt_event(method="m", protocol="grpc", outcome="maybe", correlation_id="c", request_id="r")
