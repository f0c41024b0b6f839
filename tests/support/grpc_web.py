"""gRPC-Web answers read as raw HTTP responses: the status, message and error details, from the
headers (a trailers-only answer) or the trailer frame."""

from __future__ import annotations

import base64
import struct
from urllib.parse import unquote

import httpx
from google.rpc import error_details_pb2, status_pb2


def grpc_web_outcome(response: httpx.Response) -> dict:
    """A gRPC-Web outcome: ``status``, ``message`` (unquoted) and ``reason``/``fields`` from
    grpc-status-details-bin, out of the headers (trailers-only) or the trailer frame."""
    assert response.status_code == 200, response.text
    trailers = {k: v for k, v in response.headers.items() if k.startswith("grpc-")}
    body, i = response.content, 0
    while "grpc-status" not in trailers and i + 5 <= len(body):
        flags, size = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        if flags & 0x80:
            for line in body[i + 5:i + 5 + size].decode().split("\r\n"):
                if ":" in line:
                    name, value = line.split(":", 1)
                    trailers[name.strip().lower()] = value.strip()
        i += 5 + size
    outcome = {"status": trailers.get("grpc-status"), "message": unquote(trailers.get("grpc-message", "")),
               "reason": None, "fields": []}
    if "grpc-status-details-bin" in trailers:
        raw = trailers["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                outcome["reason"] = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                outcome["fields"] = [v.field for v in bad.field_violations]
    return outcome
