"""Conformance with google/api/http.proto and the reference transcoders (grpc-gateway, Envoy's
grpc_json_transcoder) where an exploratory pass found the adapter apart from them: how path
variables are percent-decoded, how a stream's framing is negotiated from ``Accept``, a
stream's ``response_body``, and which base64 a bytes field takes."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from http_json_support import status
from tradewire.core.errors import TradewireError
from tradewire.gateway.http_json import build_http_json_app, openapi_document
from tradewire.gateway.http_json.codec import merge_json
from tradewire.gateway.http_json.query import QueryBinder
from tradewire.gateway.http_json.routes import parse_template
from tradewire.gateway.http_json.streaming import wants_sse

# -- path variables: percent-decoding (http.proto, "Path template syntax") ---------------------


@pytest.mark.parametrize("template,path,value", [
    # a multi-segment variable keeps "%2F" and "%2f": decoded, "a%2Fb" would become two segments
    # and name another resource (shelves/a/b/books/c does not even fit the template)
    ("/v1/{name=shelves/*/books/*}", "/v1/shelves/a%2Fb/books/c", "shelves/a%2Fb/books/c"),
    ("/v1/{name=shelves/*/books/*}", "/v1/shelves/a%2fb/books/c%2F", "shelves/a%2fb/books/c%2F"),
    ("/v1/{path=files/**}:get", "/v1/files/x/a%2Fb:get", "files/x/a%2Fb"),
    ("/v1/{path=**}", "/v1/a/b%2Fc", "a/b%2Fc"),
    # ... and decodes every other escape, as a single-segment one does
    ("/v1/{name=shelves/*/books/*}", "/v1/shelves/a%20b/books/caf%C3%A9%3A1", "shelves/a b/books/café:1"),
    # a single-segment variable decodes "%2F" too (its value is one segment whatever it holds)
    ("/v1/trades/{request_id}", "/v1/trades/a%2Fb", "a/b"),
    ("/v1/{name=*}", "/v1/a%2fb", "a/b"),
])
def test_multi_segment_variables_keep_an_encoded_slash(template, path, value):
    t = parse_template(template)
    (var,) = t.variables
    assert t.match(path) == {var: value}


@pytest.mark.parametrize("path", ["/v1/trades/a%zz", "/v1/trades/a%", "/v1/trades/a%4", "/v1/trades/%%41"])
def test_a_malformed_percent_escape_in_a_path_variable_is_refused(path):
    # grpc-gateway and Envoy refuse it (400); taken as it stands, "%zz" would reach the field
    with pytest.raises(UnicodeDecodeError):
        parse_template("/v1/trades/{request_id}").match(path)
    with pytest.raises(UnicodeDecodeError):
        parse_template("/v1/{name=trades/**}").match(path)


async def _get_raw(app, raw_path: bytes) -> tuple[int, dict]:
    """GET ``raw_path`` exactly as sent on the wire (an HTTP client would re-encode a bad '%')."""
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if requested:  # the client stays connected: the call is answered first
            await asyncio.Future()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw_path.decode("latin-1"), "raw_path": raw_path,
             "query_string": b"", "headers": [], "root_path": "", "client": ("10.0.0.1", 1), "scheme": "http",
             "http_version": "1.1", "server": ("gw.test", 80)}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


@pytest.mark.parametrize("raw_path", [b"/v1/trades/a%zz", b"/v1/trades/abc%", b"/v1/trades/a%2/status"])
async def test_a_malformed_percent_escape_is_400_before_the_method(app, fake, raw_path):
    code, body = await _get_raw(app, raw_path)
    assert code == 400, body
    assert body["code"] == 3 and body["details"][0]["reason"] == "MALFORMED_REQUEST", body
    assert "percent-encoded" in body["message"]
    assert fake.calls == []


async def test_a_well_formed_percent_escape_still_reaches_the_method(app, fake):
    code, _ = await _get_raw(app, b"/v1/trades/a%2Db%3Ac")
    assert code == 200
    assert fake.last.request.request_id == "a-b:c"


# -- stream framing from Accept: media types and parameter names are case-insensitive (RFC 9110) --


@pytest.mark.parametrize("accept,sse", [
    ("text/event-stream", True),
    ("Text/Event-Stream", True),
    ("TEXT/EVENT-STREAM; charset=utf-8", True),
    ("application/json, TEXT/event-stream;q=0.5", True),
    ("text/event-stream;q=0", False),
    ("text/event-stream; Q=0", False),
    ("Text/Event-Stream;Q=0.0", False),
    ("application/x-ndjson", False),
    (None, False),
])
def test_accept_names_sse_in_any_case(accept, sse):
    assert wants_sse(accept) is sse


async def test_a_stream_asked_for_as_sse_in_upper_case_gets_sse(client, fake):
    fake.stream_script = [status(1, terminal=True)]
    r = await client.get("/v1/trades/r-1/status", headers={"accept": "TEXT/EVENT-STREAM"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text.startswith("id: 1\ndata: ")


# -- response_body on a server stream: each message is the named field (grpc-gateway's
# ForwardResponseStream), as on a unary call ---------------------------------------------------


def _feed_service():
    """A contract of its own: ``rpc Watch(WatchRequest) returns (stream Event)`` bound with
    ``response_body: "item"``."""
    pool = descriptor_pool.DescriptorPool()
    for mod in (descriptor_pb2, http_pb2, annotations_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        pool.Add(fdp)
    f = descriptor_pb2.FileDescriptorProto(name="feed.proto", package="feed", syntax="proto3",
                                           dependency=["google/api/annotations.proto"])
    string, uint64, message = 9, 4, 11
    f.message_type.add(name="WatchRequest").field.add(name="topic", number=1, type=string, label=1,
                                                      json_name="topic")
    item = f.message_type.add(name="Item")
    item.field.add(name="text", number=1, type=string, label=1, json_name="text")
    event = f.message_type.add(name="Event")
    event.field.add(name="sequence", number=1, type=uint64, label=1, json_name="sequence")
    event.field.add(name="item", number=2, type=message, label=1, type_name=".feed.Item", json_name="item")
    method = f.service.add(name="Feed").method.add(name="Watch", input_type=".feed.WatchRequest",
                                                   output_type=".feed.Event", server_streaming=True)
    rule = method.options.Extensions[annotations_pb2.http]
    rule.get, rule.response_body = "/v1/topics/{topic}:watch", "item"
    pool.Add(f)
    event_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("feed.Event"))
    return pool.FindServiceByName("feed.Feed"), event_class


@pytest.fixture
async def feed():
    desc, event = _feed_service()

    class Feed:
        async def Watch(self, request, ctx):
            for n in (1, 2):
                yield event(sequence=n, item={"text": f"{request.topic}-{n}"})

    app = build_http_json_app(Feed(), desc, max_body_bytes=1000, descriptor_set_path=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://feed") as c:
        yield c


async def test_a_streams_response_body_is_the_field_of_each_message(feed):
    r = await feed.get("/v1/topics/news:watch")
    assert r.status_code == 200, r.text
    assert [json.loads(line) for line in r.text.splitlines()] == [
        {"result": {"text": "news-1"}}, {"result": {"text": "news-2"}}]
    r = await feed.get("/v1/topics/news:watch", headers={"accept": "text/event-stream"})
    # SSE still numbers each event by the whole message's sequence, for Last-Event-ID
    assert r.text.startswith('id: 1\ndata: {"text":"news-1"}\n\nid: 2\ndata: {"text":"news-2"}\n\n'), r.text


def test_the_openapi_document_describes_a_streams_response_body():
    desc, _ = _feed_service()
    doc = openapi_document(desc, None)
    content = doc["paths"]["/v1/topics/{topic}:watch"]["get"]["responses"]["200"]["content"]
    assert content["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/feed.Item"}
    assert content["application/x-ndjson"]["schema"]["properties"]["result"] == {
        "$ref": "#/components/schemas/feed.Item"}
    assert "feed.Item" in doc["components"]["schemas"]


# -- bytes: standard or URL-safe base64, padded or not (proto3 JSON); nothing else ------------


def _bytes_message():
    pool = descriptor_pool.DescriptorPool()
    f = descriptor_pb2.FileDescriptorProto(name="blob.proto", package="blob", syntax="proto3")
    m = f.message_type.add(name="Blob")
    m.field.add(name="data", number=1, type=12, label=1, json_name="data")
    m.field.add(name="parts", number=2, type=12, label=3, json_name="parts")
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("blob.Blob"))


@pytest.mark.parametrize("text,value", [
    ("YWJj", b"abc"), ("YQ==", b"a"), ("YQ", b"a"), ("YQ=", b"a"), ("+/8=", b"\xfb\xff"), ("-_8=", b"\xfb\xff"),
    ("-_8", b"\xfb\xff"), ("", b""),
])
def test_base64_in_either_alphabet_with_or_without_padding_is_read(text, value):
    blob = _bytes_message()
    msg = blob()
    merge_json({"data": text}, msg)
    assert msg.data == value
    msg = blob()
    QueryBinder(msg.DESCRIPTOR, set(), "").apply(msg, b"parts=" + quote(text, safe="").encode())
    assert list(msg.parts) == [value]


# Go's protojson (grpc-gateway) and protobuf's C++ parser (Envoy) refuse each of these; a lenient
# decoder dropped what it did not know and read "!!!!" as b"" and "YWJj!" as b"abc".
@pytest.mark.parametrize("text", ["!!!!", "YWJj!", "Y Q==", "YQ==YQ==", "YQ===", "Y", "+_8=", "YW\u00e9j"])
def test_anything_else_is_refused_naming_the_field(text):
    blob = _bytes_message()
    with pytest.raises(TradewireError) as refused:
        merge_json({"parts": ["YQ==", text]}, blob())
    assert refused.value.reason == "MALFORMED_REQUEST"
    assert [v.field for v in refused.value.field_violations] == ["parts[1]"]
    msg = blob()
    with pytest.raises(TradewireError) as refused:
        QueryBinder(msg.DESCRIPTOR, set(), "").apply(msg, b"data=" + quote(text, safe="").encode())
    assert [v.field for v in refused.value.field_violations] == ["data"]
