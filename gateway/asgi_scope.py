"""What the HTTP listener's adapters (HTTP/JSON, Connect/gRPC-Web) read from an ASGI scope,
read one way for both."""

from __future__ import annotations

from tradewire.core.context import combine_headers


def scope_headers(scope: dict) -> dict[str, str]:
    """The request headers, one lower-cased value per name (core.context.combine_headers)."""
    return combine_headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ()))


def scope_peer(scope: dict) -> str:
    """The client as "host:port" ("[v6]:port"), as the gRPC adapter names its peers."""
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
