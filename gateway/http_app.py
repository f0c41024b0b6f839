"""The HTTP listener: Connect + gRPC-Web, HTTP/JSON, /metrics and the dashboard, in one ASGI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from tradewire.gateway.assembly import Core
from tradewire.gateway.calls import SERVICE, SERVICE_NAME
from tradewire.gateway.connect_app import build_connect_app
from tradewire.gateway.http_json import build_http_json_app

# Browsers may send these on Connect / gRPC-Web calls and must be able to read these back.
CORS_ALLOW_HEADERS = [
    "content-type", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-grpc-web",
    "x-user-agent", "authorization", "x-api-key", "x-correlation-id", "traceparent", "last-event-id",
]
CORS_EXPOSE_HEADERS = [
    "grpc-status", "grpc-message", "grpc-status-details-bin", "x-correlation-id", "x-request-id",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
]
DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "gen" / "descriptors" / "tradewire.binpb"


def build_http_app(core: Core) -> FastAPI:
    settings = core.settings.server
    app = FastAPI(title="tradewire", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount(f"/{SERVICE_NAME}", build_connect_app(core.service, settings.max_body_bytes))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(core.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    json_app = build_http_json_app(core.service, SERVICE, max_body_bytes=settings.max_body_bytes,
                                   descriptor_set_path=DESCRIPTOR_SET)
    app.mount("/", _with_static(json_app, settings.web_root))
    app.add_middleware(
        CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE_HEADERS, max_age=600,
    )
    return app


def _with_static(json_app, web_root: Path | None):
    """HTTP/JSON routes first; anything they do not know is the dashboard's, when built."""
    if web_root is None or not (web_root / "index.html").exists():
        return json_app
    static = StaticFiles(directory=web_root, html=True)

    async def app(scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and not path.startswith(("/v1/", "/openapi.json", "/docs")):
            return await static(scope, receive, send)
        return await json_app(scope, receive, send)

    return app
