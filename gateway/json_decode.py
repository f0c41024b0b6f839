"""Protobuf JSON → message with errors naming the offending field: the one decoder shared
by the HTTP/JSON transcoder and the Connect front (``gateway/http_json/codec.py``)."""

from __future__ import annotations

from tradewire.gateway.http_json.codec import merge_json, parse_json


def decode_json(body: bytes, message_cls):
    message = message_cls()
    merge_json(parse_json(body or b"{}"), message)
    return message
