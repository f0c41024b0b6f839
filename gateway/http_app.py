"""The HTTP listener: Connect + gRPC-Web, HTTP/JSON, /metrics and the dashboard, in one ASGI app.

Each call is dispatched straight to its app (see :class:`_Dispatch`): Connect and gRPC-Web to
connect-python's, /metrics to FastAPI, the rest to the HTTP/JSON transcoder, which falls back
to the dashboard."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from tradewire.core.config import ServerConfig
from tradewire.core.pipeline import shutting_down
from tradewire.gateway.calls import SERVICE, SERVICE_NAME
from tradewire.gateway.connect_app import RecordRefused, build_connect_app
from tradewire.gateway.errors import status_json
from tradewire.gateway.http_json import build_http_json_app
from tradewire.gateway.worker_metrics import exposition_of

# Browsers may send these on any protocol's calls and must be able to read these back.
CORS_ALLOW_HEADERS = [
    "content-type", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-server-timeout", "x-grpc-web",
    "x-user-agent", "authorization", "x-api-key", "x-correlation-id", "traceparent", "tracestate", "last-event-id",
]
CORS_EXPOSE_HEADERS = [
    "grpc-status", "grpc-message", "grpc-status-details-bin", "x-correlation-id", "x-request-id",
    "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after", "www-authenticate",
]
DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "gen" / "descriptors" / "tradewire.binpb"
# The dashboard's pages: scripts and styles from the dashboard's own files only (an injected
# script or inline handler does not run), no framing (a page that places trades must not be
# clickable through another site's frame), no plugins, no base or form target elsewhere. Calls
# may go to any gateway: the dashboard can be pointed at another one.
DASHBOARD_CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self' http: https:", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'",
))
DASHBOARD_HEADERS = [
    (b"content-security-policy", DASHBOARD_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

log = logging.getLogger("tradewire.server")


def build_http_app(service, registry: CollectorRegistry, settings: ServerConfig,
                   record_refused: RecordRefused | None = None,
                   metrics_text: Callable[[], Awaitable[bytes]] | None = None):
    """``service`` is core's TradeService (or anything with its methods); ``record_refused``
    (core's Pipeline.record_refused) records the calls refused before they reach it;
    ``metrics_text`` answers /metrics when the registry alone does not (several workers)."""
    app = FastAPI(title="tradewire", docs_url=None, redoc_url=None, openapi_url=None)
    connect = build_connect_app(service, settings.max_body_bytes, record_refused)

    @app.api_route("/metrics", methods=["GET", "HEAD"], include_in_schema=False)
    async def metrics() -> Response:
        text = await metrics_text() if metrics_text is not None else await exposition_of(registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    dashboard = settings.web_root
    static = None
    if dashboard and (dashboard / "index.html").exists():
        # StaticFiles raises its 404/405 for Starlette's exception middleware to answer.
        static = _with_headers(ExceptionMiddleware(StaticFiles(directory=dashboard, html=True)), DASHBOARD_HEADERS)
    elif dashboard:
        log.warning("server.web_root %s holds no index.html (is the dashboard built?): no dashboard is served",
                    dashboard)
    # HTTP/JSON routes first; paths outside the API are the dashboard's, when it is built.
    http_json = build_http_json_app(service, SERVICE, max_body_bytes=settings.max_body_bytes,
                                    on_error=_recording_refusals(record_refused),
                                    descriptor_set_path=DESCRIPTOR_SET, fallback=static)
    cors = dict(allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE_HEADERS, max_age=600)
    return _Dispatch(CORSMiddleware(connect, **cors), CORSMiddleware(http_json, **cors), app,
                     draining=lambda: getattr(service, "draining", False))


def _with_headers(app, headers: list[tuple[bytes, bytes]]):
    """``app`` with ``headers`` added to each of its answers."""
    async def with_headers(scope, receive, send) -> None:
        await app(scope, receive, _adding_headers(send, headers))
    return with_headers


def _adding_headers(send, headers: list[tuple[bytes, bytes]]):
    """``send`` adding ``headers`` to the answer it starts."""
    async def adding(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)
    return adding


def _recording_refusals(record_refused: RecordRefused | None):
    """The HTTP/JSON app's error hook: a call refused before the pipeline saw it (its body did
    not decode) is recorded as a call of its method; an unmatched route is no method's."""
    if record_refused is None:
        return None

    def on_error(error, ctx) -> None:
        if ctx is not None:
            record_refused(ctx, error)
    return on_error


class _Dispatch:
    """Each call straight to the app that serves it: Connect and gRPC-Web calls (the browser's
    hot path) by their path prefix (or shape), /metrics and the server's lifespan to FastAPI,
    everything else (the HTTP/JSON API, its documents, the dashboard) to the HTTP/JSON app. FastAPI's
    stack (error, exception and exit-stack middleware, the router's mount matching) cost more
    per call than either app itself; both answer their own errors, and connect-python finds
    the method from the full path, so scopes are passed on unchanged."""

    _CONNECT_PREFIX = f"/{SERVICE_NAME}/"
    # A Connect or gRPC-Web call names its procedure in its path ("/package.Service/Method"):
    # one of a service this gateway lacks (another contract version's, grpc.health's) is answered
    # as the Connect app answers a method it lacks (404, which those clients read as
    # UNIMPLEMENTED), not by the dashboard's files nor as an HTTP/JSON route.
    _PROCEDURE = re.compile(r"/[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+/[A-Za-z_]\w*", re.ASCII)
    _FASTAPI_PATHS = frozenset({"/metrics"})

    def __init__(self, connect, http_json, app, draining: Callable[[], bool] = lambda: False) -> None:
        self.connect = connect
        self.http_json = http_json
        self.app = app
        self.draining = draining

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http" and self.draining():
            send = _closing_connection(send)
        try:
            if kind == "lifespan" or (scope["path"] in self._FASTAPI_PATHS and scope["method"] in ("GET", "HEAD")):
                await self.app(scope, receive, send)  # (another method there is refused as any unrouted call is)
            elif kind == "http" and self._is_connect_call(scope):
                await self.connect(scope, receive, send)
            else:
                await self.http_json(scope, receive, send)
        except asyncio.CancelledError:
            if kind != "http" or not self.draining():
                raise
            await _answer_cut_off(send)  # the listener's grace ran out on this call

    def _is_connect_call(self, scope) -> bool:
        """A call to this service's Connect app, or a POST naming another service's procedure."""
        path = scope["path"]
        return path.startswith(self._CONNECT_PREFIX) or (
            scope["method"] == "POST" and self._PROCEDURE.fullmatch(path) is not None)


def _closing_connection(send):
    """While the gateway drains, every answer closes its connection (``connection: close``): a
    keep-alive client would send its next call down a connection the shutdown is about to cut
    and get a reset, where a new connection gets an answer (or another replica)."""
    return _adding_headers(send, [(b"connection", b"close")])


async def _answer_cut_off(send) -> None:
    """A call the shutdown cut off (its body still uploading, say) is answered 503 SHUTTING_DOWN,
    which a caller retries, in place of uvicorn's 500 and its "Exception in ASGI application"
    line; one whose answer had started ends as it stands."""
    body = orjson.dumps(status_json(shutting_down()))
    try:
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"), (b"connection", b"close")]})
    except RuntimeError:  # (the answer had started: uvicorn refuses a second start)
        return
    await send({"type": "http.response.body", "body": body})
