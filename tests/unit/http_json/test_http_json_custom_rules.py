"""Binding rules service.proto does not use, on a small contract built in the test:
``{field.path=pattern/*}`` variables, ``body: "field"``, ``response_body``, custom HTTP
methods, dotted query names into nested messages, Duration and bool query values, and
mounting inside FastAPI next to other apps."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from starlette.responses import PlainTextResponse

from http_json_support import SERVICE, FakeService
from tradewire.gateway.http_json import build_http_json_app, openapi_document

S, I64, BOOL, MSG, ENUM = 9, 3, 8, 11, 14
OPT, REP = 1, 3


def _library_service():
    pool = descriptor_pool.DescriptorPool()
    for mod in (descriptor_pb2, http_pb2, annotations_pb2, timestamp_pb2, duration_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        pool.Add(fdp)
    f = descriptor_pb2.FileDescriptorProto(
        name="lib.proto", package="lib", syntax="proto3",
        dependency=["google/api/annotations.proto", "google/protobuf/duration.proto"],
    )
    kind = f.enum_type.add(name="Kind")
    kind.value.add(name="KIND_UNSPECIFIED", number=0)
    kind.value.add(name="KIND_NOVEL", number=1)

    def msg(name, *fields):
        m = f.message_type.add(name=name)
        for number, (fname, ftype, label, type_name, json_name) in enumerate(fields, 1):
            fd = m.field.add(name=fname, number=number, type=ftype, label=label, json_name=json_name)
            if type_name:
                fd.type_name = type_name

    msg("Author", ("name", S, OPT, "", "name"), ("alive", BOOL, OPT, "", "alive"))
    msg("Book", ("name", S, OPT, "", "name"), ("title", S, OPT, "", "title"), ("pages", I64, OPT, "", "pages"),
        ("tags", S, REP, "", "tags"), ("author", MSG, OPT, ".lib.Author", "author"))
    msg("UpdateBookRequest", ("book", MSG, OPT, ".lib.Book", "book"),
        ("validate_only", BOOL, OPT, "", "validateOnly"))
    msg("GetBookRequest", ("name", S, OPT, "", "name"))
    msg("ListBooksRequest", ("parent", S, OPT, "", "parent"), ("author", MSG, OPT, ".lib.Author", "author"),
        ("kinds", ENUM, REP, ".lib.Kind", "kinds"), ("min_read", MSG, OPT, ".google.protobuf.Duration", "minRead"))
    msg("ListBooksResponse", ("books", MSG, REP, ".lib.Book", "books"))
    svc = f.service.add(name="Library")

    def rpc(name, inp, out, **rule):
        m = svc.method.add(name=name, input_type=f".lib.{inp}", output_type=f".lib.{out}")
        http = m.options.Extensions[annotations_pb2.http]
        for k, v in rule.items():
            if k == "custom":
                http.custom.kind, http.custom.path = v
            else:
                setattr(http, k, v)

    rpc("UpdateBook", "UpdateBookRequest", "Book", patch="/v1/{book.name=shelves/*/books/*}", body="book")
    rpc("GetBookTitle", "GetBookRequest", "Book", get="/v1/{name=shelves/*/books/*}", response_body="title")
    rpc("ListBooks", "ListBooksRequest", "ListBooksResponse", get="/v1/{parent=shelves/*}/books")
    rpc("Search", "ListBooksRequest", "ListBooksResponse", custom=("SEARCH", "/v1/books"))
    pool.Add(f)
    return pool.FindServiceByName("lib.Library"), pool


class Library:
    def __init__(self, pool):
        self.seen = []
        self.Book = message_factory.GetMessageClass(pool.FindMessageTypeByName("lib.Book"))
        self.List = message_factory.GetMessageClass(pool.FindMessageTypeByName("lib.ListBooksResponse"))

    async def UpdateBook(self, request, ctx):
        self.seen.append(request)
        return request.book

    async def GetBookTitle(self, request, ctx):
        self.seen.append(request)
        return self.Book(name=request.name, title="Dune")

    async def ListBooks(self, request, ctx):
        self.seen.append(request)
        return self.List(books=[self.Book(name=request.parent + "/books/1", pages=412)])

    Search = ListBooks


@pytest.fixture
async def lib():
    desc, pool = _library_service()
    service = Library(pool)
    app = build_http_json_app(service, desc, max_body_bytes=1000, descriptor_set_path=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lib") as c:
        yield c, service


async def test_nested_path_variable_with_pattern_and_body_field(lib):
    c, service = lib
    r = await c.patch("/v1/shelves/s1/books/b.2?validateOnly=true",
                      json={"name": "shelves/s1/books/b.2", "title": "Dune", "pages": "412", "tags": ["sf"]})
    assert r.status_code == 200, r.text
    req = service.seen[-1]
    assert req.book.name == "shelves/s1/books/b.2"
    # the body may repeat what the path says, not say something else
    other = await c.patch("/v1/shelves/s1/books/b.2", json={"name": "shelves/s1/books/other"})
    assert other.status_code == 400 and other.json()["details"][1]["fieldViolations"][0]["field"] == "book.name"
    assert (req.book.title, req.book.pages, list(req.book.tags)) == ("Dune", 412, ["sf"])
    assert req.validate_only is True
    assert r.json()["pages"] == "412"
    # the body field cannot also come from the query
    r = await c.patch("/v1/shelves/s1/books/b2?book.title=x", json={})
    assert r.status_code == 400 and "request body" in r.json()["message"]
    # a body that is not the field's type names the field
    r = await c.patch("/v1/shelves/s1/books/b2", json={"pages": "many"})
    assert r.status_code == 400
    assert r.json()["details"][1]["fieldViolations"][0]["field"] == "book.pages"
    # the pattern must match
    assert (await c.patch("/v1/shelves/s1", json={})).status_code == 404


async def test_response_body_field(lib):
    c, _ = lib
    r = await c.get("/v1/shelves/s1/books/b1")
    assert r.status_code == 200
    assert r.json() == "Dune"


async def test_dotted_query_into_nested_message_duration_bool_and_enum(lib):
    c, service = lib
    r = await c.get("/v1/shelves/s9/books?author.name=Herbert&author.alive=false&kinds=KIND_NOVEL&kinds=0"
                    "&minRead=1.5s")
    assert r.status_code == 200, r.text
    req = service.seen[-1]
    assert req.parent == "shelves/s9"
    assert (req.author.name, req.author.alive, list(req.kinds)) == ("Herbert", False, [1, 0])
    assert (req.min_read.seconds, req.min_read.nanos) == (1, 500_000_000)
    # singular message fields have presence: an unset author is omitted, scalars are emitted
    assert r.json() == {"books": [{"name": "shelves/s9/books/1", "title": "", "pages": "412", "tags": []}]}
    r = await c.get("/v1/shelves/s9/books?author.alive=maybe")
    assert r.status_code == 400 and r.json()["details"][1]["fieldViolations"][0]["field"] == "author.alive"
    r = await c.get("/v1/shelves/s9/books?minRead=soon")
    assert r.status_code == 400 and "duration" in r.json()["message"]


async def test_custom_http_method(lib):
    c, service = lib
    r = await c.request("SEARCH", "/v1/books?author.name=x")
    assert r.status_code == 200
    assert service.seen[-1].author.name == "x"
    r = await c.get("/v1/books")
    assert r.status_code == 405 and r.headers["allow"] == "SEARCH"


def test_openapi_for_custom_rules():
    desc, _ = _library_service()
    doc = openapi_document(desc, None)
    update = doc["paths"]["/v1/{book.name}"]["patch"]
    assert update["parameters"][0]["name"] == "book.name"
    assert "shelves/*/books/*" in update["parameters"][0]["description"]
    assert update["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/lib.Book"}
    assert doc["paths"]["/v1/{name}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "string"}
    listing = {p["name"] for p in doc["paths"]["/v1/{parent}/books"]["get"]["parameters"]}
    assert listing == {"parent", "author.name", "author.alive", "kinds", "minRead"}
    assert "search" in doc["paths"]["/v1/books"]


async def test_mounted_at_the_root_of_fastapi_next_to_other_apps():
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @api.get("/metrics")
    def metrics():
        return PlainTextResponse("tradewire_up 1")

    async def connect(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"connect"})

    fake = FakeService()
    api.mount("/tradewire.v1.TradeExecutionService", connect)
    api.mount("/", build_http_json_app(fake, SERVICE, max_body_bytes=1000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        assert (await c.get("/metrics")).text == "tradewire_up 1"
        assert (await c.post("/tradewire.v1.TradeExecutionService/ExecuteTrade")).text == "connect"
        r = await c.post("/v1/trades/a.b:c:cancel", json={})
        assert r.status_code == 200 and r.json()["requestId"] == "a.b:c"
        assert (await c.get("/openapi.json")).json()["openapi"] == "3.1.0"
        assert (await c.get("/v1/none")).json()["details"][0]["reason"] == "ROUTE_NOT_FOUND"
