"""One small client per protocol with the same shape, so a test is written once and runs on
every protocol: gRPC (grpcio), Connect JSON, Connect binary and gRPC-Web (connect-python's
client), and HTTP/JSON (httpx).

Streams: ``stream()`` collects a server stream to its end; ``iterate()`` yields its messages
as they come; :class:`StreamHandle` runs one in the background (messages, wait, cancel).
``session()`` runs a TradeSession half-duplex (all requests, then every response); for a
live full-duplex session use ``GrpcClient.open_session()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
import re
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from connectrpc.client import ResponseMetadata
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf import json_format, message_factory
from google.rpc import error_details_pb2, status_pb2

from tradewire.gateway.calls import RPCS, SERVICE_NAME
from tradewire.v1.service_connect import TradeExecutionServiceClient

_BY_NAME = {rpc.name: rpc for rpc in RPCS}


@dataclass
class RpcFailure(Exception):
    code: str  # canonical code name, e.g. "INVALID_ARGUMENT"
    message: str
    reason: str = ""
    fields: list[str] = field(default_factory=list)
    http_status: int | None = None
    retry_after_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: str = ""
    metadata: dict[str, str] = field(default_factory=dict)  # ErrorInfo's

    def __str__(self) -> str:
        return f"{self.code} {self.reason} {self.message} {self.fields}"


def _from_details(failure: RpcFailure, details) -> RpcFailure:
    for any_msg in details:
        if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_msg.Unpack(info)
            failure.reason = info.reason
            failure.metadata = dict(info.metadata)
        elif any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_msg.Unpack(bad)
            failure.fields = [v.field for v in bad.field_violations]
        elif any_msg.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_msg.Unpack(retry)
            failure.retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
    return failure


def _auth(key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    out = dict(headers or {})
    if key is not None:
        out["authorization"] = f"Bearer {key}"
    return out


class GrpcClient:
    name = "grpc"

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)

    def _callable(self, method: str):
        rpc = _BY_NAME[method]
        out_cls = message_factory.GetMessageClass(rpc.descriptor.output_type)
        path = f"/{SERVICE_NAME}/{method}"
        kwargs = dict(request_serializer=lambda m: m.SerializeToString(), response_deserializer=out_cls.FromString)
        return self.channel.unary_stream(path, **kwargs) if rpc.server_streaming else self.channel.unary_unary(path, **kwargs)

    @staticmethod
    def _failure(exc: grpc.aio.AioRpcError) -> RpcFailure:
        trailers = {k: v for k, v in (exc.trailing_metadata() or ())}
        failure = RpcFailure(exc.code().name, exc.details() or "", headers={k: v for k, v in trailers.items() if isinstance(v, str)})
        raw = trailers.get("grpc-status-details-bin")
        if raw:
            _from_details(failure, status_pb2.Status.FromString(raw).details)
        return failure

    async def unary(self, method: str, request, key: str | None = None, headers: dict | None = None):
        call = self._callable(method)(request, metadata=tuple(_auth(key, headers).items()))
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        return response, {k: v for k, v in (await call.initial_metadata() or ())}

    async def stream(self, method: str, request, key: str | None = None, headers: dict | None = None, limit: int | None = None):
        call = self._callable(method)(request, metadata=tuple(_auth(key, headers).items()))
        out = []
        try:
            async for message in call:
                out.append(message)
                if limit and len(out) >= limit:
                    call.cancel()
                    break
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        return out

    async def iterate(self, method: str, request, key: str | None = None, headers: dict | None = None):
        call = self._callable(method)(request, metadata=tuple(_auth(key, headers).items()))
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        finally:
            call.cancel()  # no-op once the call has ended; a disconnect when the reader gives up

    def open_session(self, key: str | None = None, headers: dict | None = None) -> GrpcSession:
        path = f"/{SERVICE_NAME}/TradeSession"
        out_cls = message_factory.GetMessageClass(_BY_NAME["TradeSession"].descriptor.output_type)
        call = self.channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=out_cls.FromString)(
            metadata=tuple(_auth(key, headers).items()))
        return GrpcSession(call, self._failure)

    async def session(self, requests: list, key: str | None = None, headers: dict | None = None) -> list:
        session = self.open_session(key, headers)
        for request in requests:
            await session.send(request)
        await session.done_sending()
        return [response async for response in session]

    async def close(self) -> None:
        await self.channel.close()


class GrpcSession:
    """A full-duplex TradeSession over gRPC: send while reading."""

    def __init__(self, call, failure: Callable) -> None:
        self.call = call
        self._failure = failure

    async def send(self, request) -> None:
        await self.call.write(request)

    async def done_sending(self) -> None:
        await self.call.done_writing()

    def cancel(self) -> None:
        self.call.cancel()

    async def __aiter__(self):
        try:
            async for response in self.call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None


class ConnectPyClient:
    """connect-python's generated client in one of its protocols."""

    def __init__(self, name: str, base_url: str, protocol: ProtocolType, proto_json: bool) -> None:
        self.name = name
        self.client = TradeExecutionServiceClient(base_url, protocol=protocol, proto_json=proto_json)

    @staticmethod
    def _snake(name: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

    @staticmethod
    def _failure(exc: ConnectError) -> RpcFailure:
        code = "CANCELLED" if exc.code.name == "CANCELED" else exc.code.name
        return _from_details(RpcFailure(code, exc.message), exc.details)

    async def unary(self, method: str, request, key: str | None = None, headers: dict | None = None):
        with ResponseMetadata() as meta:
            try:
                response = await getattr(self.client, self._snake(method))(request, headers=_auth(key, headers))
            except ConnectError as exc:
                failure = self._failure(exc)
                failure.headers = {k.lower(): v for k, v in meta.headers().items()}
                raise failure from None
        return response, {k.lower(): v for k, v in meta.headers().items()}

    async def stream(self, method: str, request, key: str | None = None, headers: dict | None = None, limit: int | None = None):
        out = []
        try:
            async for message in getattr(self.client, self._snake(method))(request, headers=_auth(key, headers)):
                out.append(message)
                if limit and len(out) >= limit:
                    break
        except ConnectError as exc:
            raise self._failure(exc) from None
        return out

    async def iterate(self, method: str, request, key: str | None = None, headers: dict | None = None):
        messages = getattr(self.client, self._snake(method))(request, headers=_auth(key, headers))
        try:
            async for message in messages:
                yield message
        except ConnectError as exc:
            raise self._failure(exc) from None
        finally:
            await messages.aclose()

    async def session(self, requests: list, key: str | None = None, headers: dict | None = None) -> list:
        async def gen():
            for request in requests:
                yield request

        try:
            return [r async for r in self.client.trade_session(gen(), headers=_auth(key, headers))]
        except ConnectError as exc:
            raise self._failure(exc) from None

    async def close(self) -> None:
        await self.client.close()


# HTTP/JSON: the contract's google.api.http bindings, as a curl user would call them.
_HTTP_ROUTES = {
    "ExecuteTrade": ("POST", "/v1/trades", None),
    "GetTrade": ("GET", "/v1/trades/{request_id}", "request_id"),
    "GetTradeHistory": ("GET", "/v1/trades", None),
    "GetPositions": ("GET", "/v1/positions", None),
    "GetMarket": ("GET", "/v1/market", None),
    "HealthCheck": ("GET", "/v1/health", None),
    "CancelTrade": ("POST", "/v1/trades/{request_id}:cancel", "request_id"),
    "ExecuteTradeBatch": ("POST", "/v1/trades:batch", None),
    "StreamExecutionStatus": ("GET", "/v1/trades/{request_id}/status", "request_id"),
    "TradeSession": ("POST", "/v1/sessions", None),
}
_CODE_NAMES = {v: k for k, v in grpc.StatusCode.__members__.items()}


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, name + ".")
        elif isinstance(value, list):
            out += [(name, str(v)) for v in value]
        else:
            out.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return out


class HttpJsonClient:
    name = "http"

    def __init__(self, base_url: str, max_connections: int = 100) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30,
                                      limits=httpx.Limits(max_connections=max_connections))

    @staticmethod
    def failure(response: httpx.Response) -> RpcFailure:
        try:
            body = response.json()
            status = json_format.ParseDict(body, status_pb2.Status(), ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError):
            return RpcFailure("UNKNOWN", response.text[:200], http_status=response.status_code, raw=response.text)
        code = next((c.name for c in grpc.StatusCode if c.value[0] == status.code), "UNKNOWN")
        failure = RpcFailure(code, status.message, http_status=response.status_code, headers=dict(response.headers),
                             raw=response.text)
        return _from_details(failure, status.details)

    def _request(self, method: str, request):
        verb, template, path_field = _HTTP_ROUTES[method]
        data = json_format.MessageToDict(request)
        path = template
        if path_field:
            json_name = request.DESCRIPTOR.fields_by_name[path_field].json_name
            path = template.replace("{" + path_field + "}", str(data.pop(json_name, "")))
        if verb == "GET":
            return verb, path, {"params": _flatten(data)}
        return verb, path, {"json": data}

    async def unary(self, method: str, request, key: str | None = None, headers: dict | None = None):
        verb, path, kwargs = self._request(method, request)
        response = await self.http.request(verb, path, headers=_auth(key, headers), **kwargs)
        # (a health answer saying NOT_SERVING comes as 503 with the answer as its body)
        answered = response.status_code == 200 or (method == "HealthCheck" and response.status_code == 503
                                                   and "code" not in response.json())
        if not answered:
            raise self.failure(response)
        out_cls = message_factory.GetMessageClass(_BY_NAME[method].descriptor.output_type)
        return json_format.ParseDict(response.json(), out_cls()), dict(response.headers)

    async def stream(self, method: str, request, key: str | None = None, headers: dict | None = None, limit: int | None = None):
        verb, path, kwargs = self._request(method, request)
        out_cls = message_factory.GetMessageClass(_BY_NAME[method].descriptor.output_type)
        out = []
        hdrs = {**_auth(key, headers), "accept": "text/event-stream"}
        async with self.http.stream(verb, path, headers=hdrs, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
                raise self.failure(response)
            event = "message"
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    payload = json.loads(line.split(":", 1)[1])
                    if event == "error":
                        fake = httpx.Response(500, json=payload)
                        raise self.failure(fake)
                    if event in ("message", ""):
                        out.append(json_format.ParseDict(payload, out_cls()))
                        if limit and len(out) >= limit:
                            break
                elif line == "":
                    event = "message"
        return out

    async def iterate(self, method: str, request, key: str | None = None, headers: dict | None = None,
                      ndjson: bool = False):
        """Messages as they arrive, over SSE (default) or newline-delimited JSON."""
        verb, path, kwargs = self._request(method, request)
        out_cls = message_factory.GetMessageClass(_BY_NAME[method].descriptor.output_type)
        hdrs = {**_auth(key, headers), "accept": "application/x-ndjson" if ndjson else "text/event-stream"}
        async with self.http.stream(verb, path, headers=hdrs, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
                raise self.failure(response)
            event = "message"
            async for line in response.aiter_lines():
                if ndjson:
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if "error" in item:
                        raise self.failure(httpx.Response(500, json=item["error"]))
                    yield json_format.ParseDict(item["result"], out_cls())
                elif line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    payload = json.loads(line.split(":", 1)[1])
                    if event == "error":
                        raise self.failure(httpx.Response(500, json=payload))
                    if event in ("message", ""):
                        yield json_format.ParseDict(payload, out_cls())
                elif line == "":
                    event = "message"

    async def session(self, requests: list, key: str | None = None, headers: dict | None = None) -> list:
        verb, path, kwargs = self._request("TradeSession", requests[0])
        response = await self.http.request(verb, path, headers=_auth(key, headers), **kwargs)
        if response.status_code != 200:
            raise self.failure(response)
        return [response.json()]

    async def close(self) -> None:
        await self.http.aclose()


class StreamHandle:
    """A server stream running in the background: its messages so far, its end, cancel."""

    def __init__(self, client, method: str, request, key: str | None = None, headers: dict | None = None,
                 **options) -> None:
        self.messages: list = []
        self.error: RpcFailure | None = None
        self.ended = False
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(client.iterate(method, request, key, headers, **options)))

    async def _run(self, messages: AsyncIterator) -> None:
        try:
            async for message in messages:
                self.messages.append(message)
                self._changed.set()
        except RpcFailure as failure:
            self.error = failure
        except Exception as exc:  # a client-side failure: keep it visible in assertions
            self.error = RpcFailure("CLIENT_ERROR", repr(exc))
        finally:
            self.ended = True
            self._changed.set()

    async def wait_for(self, predicate: Callable[[StreamHandle], bool], timeout: float = 20.0,
                       what: str = "stream condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.ended and not predicate(self):
                raise AssertionError(f"stream ended before {what}: {len(self.messages)} messages, error {self.error}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}: {len(self.messages)} messages")
            self._changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def finished(self, timeout: float = 30.0) -> list:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.task)
        return self.messages

    async def cancel(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


PROTOCOLS = ("grpc", "connect-json", "connect-proto", "grpc-web", "http")


def make_client(protocol: str, gateway) -> Any:
    if protocol == "grpc":
        return GrpcClient(gateway.grpc_target)
    if protocol == "connect-json":
        return ConnectPyClient(protocol, gateway.http_url, ProtocolType.CONNECT, proto_json=True)
    if protocol == "connect-proto":
        return ConnectPyClient(protocol, gateway.http_url, ProtocolType.CONNECT, proto_json=False)
    if protocol == "grpc-web":
        return ConnectPyClient(protocol, gateway.http_url, ProtocolType.GRPC_WEB, proto_json=False)
    if protocol == "http":
        return HttpJsonClient(gateway.http_url)
    raise ValueError(protocol)
