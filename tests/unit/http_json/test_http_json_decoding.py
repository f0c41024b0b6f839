"""Request decoding through the app: JSON errors, content types, body size limits."""

from __future__ import annotations

import json

import pytest

from http_json_support import MAX_BODY


def _violations(body: dict) -> list[dict]:
    for d in body.get("details", []):
        if d["@type"] == "type.googleapis.com/google.rpc.BadRequest":
            return d["fieldViolations"]
    return []


def _reason(body: dict) -> str:
    return body["details"][0]["reason"]


async def test_unknown_json_field_is_400_naming_it(client, fake):
    r = await client.post("/v1/trades", json={"requestId": "x", "mevProtection": {"tipp": 1}})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3 and _reason(body) == "MALFORMED_REQUEST"
    assert _violations(body) == [{"field": "mev_protection.tipp", "description": "unknown field 'tipp' in "
                                  "tradewire.v1.MevProtection"}]
    assert "tipp" in body["message"]
    assert fake.calls == []


async def test_wrong_type_is_400_naming_the_field(client):
    r = await client.post("/v1/trades:batch", json={"trades": [{"requestId": "a"}, {"slippageBps": "lots"}]})
    assert r.status_code == 400
    assert _violations(r.json())[0]["field"] == "trades[1].slippage_bps"
    assert "expected an integer" in r.json()["message"]


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"nul", b"\xff\xfe", b'{"a":1}{'])
async def test_malformed_json_is_400_malformed_request(client, raw):
    r = await client.post("/v1/trades", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert _reason(body) == "MALFORMED_REQUEST"
    assert "not valid JSON" in body["message"]


@pytest.mark.parametrize("doc", [[], "x", 5, None])
async def test_body_must_be_an_object(client, doc):
    r = await client.post("/v1/trades", content=json.dumps(doc), headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "JSON object" in r.json()["message"]


@pytest.mark.parametrize(
    "ct", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=iso-8859-1", None]
)
async def test_wrong_content_type_is_415(client, fake, ct):
    headers = {"content-type": ct} if ct else {}
    r = await client.post("/v1/trades", content=b'{"requestId":"x"}', headers=headers)
    assert r.status_code == 415
    assert _reason(r.json()) == "UNSUPPORTED_MEDIA_TYPE"
    assert r.json()["code"] == 3
    assert fake.calls == []


@pytest.mark.parametrize("ct", ["application/json;charset=UTF-8", "application/json; charset=utf-8",
                                "APPLICATION/JSON"])
async def test_json_with_parameters_is_accepted(client, fake, ct):
    r = await client.post("/v1/trades", content=b'{"requestId":"x"}', headers={"content-type": ct})
    assert r.status_code == 200, r.text
    assert fake.last.request.request_id == "x"


async def test_empty_body_is_an_empty_message(client, fake):
    r = await client.post("/v1/trades")
    assert r.status_code == 200
    assert fake.last.request.request_id == ""


async def test_oversized_body_by_content_length_is_413_before_reading(client, fake):
    r = await client.post("/v1/trades", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413
    body = r.json()
    assert _reason(body) == "PAYLOAD_TOO_LARGE" and body["code"] == 8
    assert fake.calls == []


async def test_oversized_chunked_body_is_413_without_reading_it_all(client, fake):
    pulled = 0

    async def chunks():
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b" " * 1000

    r = await client.post("/v1/trades", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert pulled < 10  # stopped as soon as the limit was passed
    assert fake.calls == []


async def test_body_at_the_limit_is_accepted(client, fake):
    doc = b'{"requestId":"x"}'
    r = await client.post("/v1/trades", content=doc + b" " * (MAX_BODY - len(doc)),
                          headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


async def test_invalid_content_length_is_400(app):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/trades", "raw_path": b"/v1/trades", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"abc")], "client": None}
    await app(scope, receive, send)
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("raw", [b"9007199254740993.0", b"9.007199254740993e15", b'"9007199254740993.0"',
                                 b'"9.007199254740993e15"'])
async def test_integer_past_2_53_with_a_fraction_or_exponent_is_refused_not_rounded(client, fake, raw):
    # Read as a double it would become ...992: a tip one lamport off, silently.
    body = b'{"requestId": "x", "mevProtection": {"jitoTipLamports": ' + raw + b"}}"
    r = await client.post("/v1/trades", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert _violations(r.json())[0]["field"] == "mev_protection.jito_tip_lamports"
    assert "plain digits" in r.json()["message"]
    assert fake.calls == []


@pytest.mark.parametrize("raw", [b"9007199254740993", b'"9007199254740993"', b"1e3", b'"1.0e3"'])
async def test_integers_plain_at_any_size_or_exact_with_an_exponent_are_read_exactly(client, fake, raw):
    body = b'{"requestId": "x", "mevProtection": {"maxPriorityFeeLamports": ' + raw + b"}}"
    r = await client.post("/v1/trades", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    expected = 9007199254740993 if b"9007" in raw else 1000
    assert fake.last.request.mev_protection.max_priority_fee_lamports == expected
