"""One small client per protocol with the same shape, so a test is written once and runs on
every protocol: gRPC (grpcio), Connect JSON, Connect binary and gRPC-Web (connect-python's
client), and HTTP/JSON (httpx)."""

from __future__ import annotations

import json
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

    def __str__(self) -> str:
        return f"{self.code} {self.reason} {self.message} {self.fields}"


def _from_details(failure: RpcFailure, details) -> RpcFailure:
    for any_msg in details:
        if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_msg.Unpack(info)
            failure.reason = info.reason
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

    async def close(self) -> None:
        await self.channel.close()


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
                raise self._failure(exc) from None
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

    async def close(self) -> None:
        await self.client.close()


# HTTP/JSON: the contract's google.api.http bindings, as a curl user would call them.
_HTTP_ROUTES = {
    "ExecuteTrade": ("POST", "/v1/trades", None),
    "GetTrade": ("GET", "/v1/trades/{request_id}", "request_id"),
    "GetTradeHistory": ("GET", "/v1/trades", None),
    "GetPositions": ("GET", "/v1/positions", None),
    "HealthCheck": ("GET", "/v1/health", None),
    "CancelTrade": ("POST", "/v1/trades/{request_id}:cancel", "request_id"),
    "ExecuteTradeBatch": ("POST", "/v1/trades:batch", None),
    "StreamExecutionStatus": ("GET", "/v1/trades/{request_id}/status", "request_id"),
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

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)

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
        if response.status_code != 200:
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

    async def close(self) -> None:
        await self.http.aclose()


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
