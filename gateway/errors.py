"""The one table that maps core errors onto each protocol's error shape.

gRPC and gRPC-Web carry the canonical code with ``grpc-status-details-bin`` (a serialized
google.rpc.Status); Connect sends its error JSON; HTTP/JSON sends an HTTP status and
google.rpc.Status JSON. The code → HTTP status table is the one grpc-gateway, Envoy and
connect agree on; a reason may name a more precise HTTP status (413, 415).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

import grpc
from connectrpc.code import Code as ConnectCode
from google.protobuf import json_format

from tradewire.core.errors import Code, TradewireError, http_status_of, violations_summary

GRPC_STATUS: dict[Code, grpc.StatusCode] = {c: getattr(grpc.StatusCode, c.name) for c in Code}

# Connect spells CANCELLED the American way; every other name matches.
CONNECT_CODE: dict[Code, ConnectCode] = {
    c: getattr(ConnectCode, "CANCELED" if c is Code.CANCELLED else c.name) for c in Code if c is not Code.OK
}


def http_status(error: TradewireError) -> int:
    return http_status_of(error.code, error.reason)


def status_json(error: TradewireError) -> dict[str, Any]:
    """google.rpc.Status as JSON, details as ``{"@type": ...}`` objects (transcoder style)."""
    return json_format.MessageToDict(error.to_status(), preserving_proto_field_name=False)


def grpc_status_details_bin(error: TradewireError) -> bytes:
    return error.to_status().SerializeToString()


# An error carried in response metadata (native gRPC's trailers, the headers of a gRPC-Web
# trailers-only answer) keeps its grpc-message and grpc-status-details-bin within this: grpcio
# refuses metadata over 8 KiB at random (over 16 KiB always) and grpc-java's limit is 8 KiB,
# so a larger error would reach those clients as RESOURCE_EXHAUSTED, without its details.
ERROR_METADATA_BUDGET = 6 * 1024


def fitted_to_metadata(error: TradewireError) -> TradewireError:
    """``error`` as response metadata can carry it: when too large, the field violations from the
    end are left out (the message says how many; Connect and HTTP/JSON, whose errors are bodies,
    list every one)."""
    if _metadata_bytes(error) <= ERROR_METADATA_BUDGET or not error.field_violations:
        return error
    violations = error.field_violations

    def keeping(count: int) -> TradewireError:
        summary = violations_summary(violations[:count], limit=512) if count else "invalid request"
        return dataclasses.replace(error, field_violations=violations[:count], message=(
            f"{summary}; {len(violations) - count} more field violations not listed (too many for "
            "response metadata; Connect and HTTP/JSON list them all)"))

    low, high = 0, len(violations) - 1  # the most that fit is in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if _metadata_bytes(keeping(middle)) <= ERROR_METADATA_BUDGET:
            low = middle
        else:
            high = middle - 1
    return keeping(low)


def _metadata_bytes(error: TradewireError) -> int:
    """grpc-message (percent-encoded) and grpc-status-details-bin (base64) as sent."""
    return len(quote(error.message)) + 4 * -(-len(error.to_status().SerializeToString()) // 3)


def retry_after_header(error: TradewireError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) when the error says when to retry."""
    if error.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, -int(-error.retry_after_s // 1)))}


def duplex_unsupported_error(method: str) -> TradewireError:
    return TradewireError(
        "DUPLEX_UNSUPPORTED",
        f"{method} is a bidirectional stream and needs a full-duplex transport; this HTTP/1.1 listener "
        "(Connect, gRPC-Web, HTTP/JSON) cannot send and receive on one call at once. Use native gRPC "
        "(HTTP/2, the gateway's gRPC port).",
        metadata={"method": method, "use": "grpc"},
    )
