"""Connect's JSON codec, served by core/protojson.py instead of connect-python's own.

connect-python 0.9 encodes JSON with ``json_format.MessageToJson`` (pretty-printed, two-space
indents) and decodes with ``json_format.Parse``, both pure Python (~60 µs each per trade
message). Its codecs live in a module-level registry with no public way to add one
(connectrpc/_codec.py: ``_codecs``, read per call by ``get_codec``), so ``install`` replaces
the JSON entries there; tests/unit/core/test_connect_codec.py fails if a connect-python upgrade
moves the registry. Requests reach the decoder already checked by ConnectCompat, which names
the field of any mistake.
"""

from __future__ import annotations

from connectrpc import _codec as connect_codecs
from google.protobuf.message import Message

from tradewire.core import protojson

_JSON_NAMES = (connect_codecs.CODEC_NAME_JSON, connect_codecs.CODEC_NAME_JSON_CHARSET_UTF8)


class ProtoJsonCodec:
    """Compact proto3 JSON (what connect-es and connect-go send and expect)."""

    def name(self) -> str:
        return connect_codecs.CODEC_NAME_JSON

    def encode(self, message: Message) -> bytes:
        # connect-go and connect-es print fields without presence only when set: so does this.
        return protojson.to_json(message, emit_unpopulated=False)

    def decode(self, data: bytes | bytearray, message: Message) -> Message:
        protojson.merge_json(bytes(data), message)
        return message


def install() -> None:
    """Serves Connect JSON with :class:`ProtoJsonCodec` in this process."""
    codec = ProtoJsonCodec()
    for name in _JSON_NAMES:
        connect_codecs._codecs[name] = codec
