"""ExecuteTrade requests for every protocol, as templates with a fixed-width request id slot.

The gateway de-duplicates by (principal, request_id): re-sending one body would only
measure the replay path. So every call needs its own id. Each template is the complete
request bytes split around a request id of exactly :data:`ID_WIDTH` characters; since the
id's length never changes, neither do Content-Length or the protobuf length prefixes, and
a unique request is one concatenation (``prefix + id + suffix``) — cheap enough that the
client is never the bottleneck. The same templates feed the wrk Lua scripts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from google.protobuf import json_format

from tradewire.v1 import trade_pb2 as pb

SERVICE = "tradewire.v1.TradeExecutionService"
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
AMOUNT = "0.001"  # tiny: the bench wallets never run dry
SLIPPAGE_BPS = 100
ID_WIDTH = 32
_MARK = "#" * ID_WIDTH  # placeholder; never a valid id character, so it cannot occur elsewhere

# protocol → (HTTP path, content-type); "grpc" is ghz's and has no HTTP template.
HTTP_PROTOCOLS = {
    "connect": (f"/{SERVICE}/ExecuteTrade", "application/proto"),
    "connect-json": (f"/{SERVICE}/ExecuteTrade", "application/json"),
    "grpc-web": (f"/{SERVICE}/ExecuteTrade", "application/grpc-web+proto"),
    "json": ("/v1/trades", "application/json"),
}
PROTOCOLS = ("grpc", *HTTP_PROTOCOLS)


def run_tag() -> str:
    """A fresh 8-character tag: ids of different runs against one gateway never collide."""
    return os.urandom(4).hex()


def request_id(tag: str, n: int) -> str:
    """``tag`` (8) + '-' + zero-padded counter: exactly ID_WIDTH characters of [0-9a-f-]."""
    return f"{tag}-{n:0{ID_WIDTH - len(tag) - 1}d}"


def trade_request(rid: str = _MARK) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=rid, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount=AMOUNT, slippage_bps=SLIPPAGE_BPS)


def request_body(protocol: str, rid: str = _MARK) -> bytes:
    message = trade_request(rid)
    if protocol in ("connect-json", "json"):
        return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()
    raw = message.SerializeToString()
    if protocol == "grpc-web":
        return b"\x00" + len(raw).to_bytes(4, "big") + raw
    return raw


@dataclass(frozen=True)
class Template:
    """A whole HTTP/1.1 request, split where the request id goes."""

    protocol: str
    prefix: bytes
    suffix: bytes

    def render(self, rid: str) -> bytes:
        return self.prefix + rid.encode() + self.suffix


def http_headers(protocol: str, api_key: str, host: str) -> dict[str, str]:
    _, content_type = HTTP_PROTOCOLS[protocol]
    headers = {"Host": host, "Content-Type": content_type, "Authorization": f"Bearer {api_key}"}
    if protocol == "connect" or protocol == "connect-json":
        headers["Connect-Protocol-Version"] = "1"
    if protocol == "grpc-web":
        headers["X-Grpc-Web"] = "1"
    return headers


def body_parts(protocol: str) -> tuple[bytes, bytes]:
    """The request body split around the id slot."""
    prefix, _, suffix = request_body(protocol).partition(_MARK.encode())
    return prefix, suffix


def http_template(protocol: str, api_key: str, host: str, path: str | None = None) -> Template:
    """The complete request (request line, headers, body) for ``protocol``."""
    default_path, _ = HTTP_PROTOCOLS[protocol]
    body = request_body(protocol)
    head = f"POST {path or default_path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in http_headers(protocol, api_key, host).items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    prefix, _, suffix = (head.encode() + body).partition(_MARK.encode())
    return Template(protocol, prefix, suffix)


def ghz_data(tag: str) -> str:
    """ghz call data: its template engine gives every call a unique id ({{.RequestNumber}})."""
    data = json_format.MessageToDict(trade_request("X"), preserving_proto_field_name=True)
    data["request_id"] = tag + "-{{.RequestNumber}}"
    return json.dumps(data)


def canned_result() -> pb.TradeResult:
    """A filled TradeResult the size of the gateway's, for the echo servers."""
    result = pb.TradeResult(
        request_id="0" * ID_WIDTH, trade_id="f" * 32, mode=pb.TRADING_MODE_PAPER, status=pb.TRADE_STATUS_FILLED,
        input_mint=SOL, output_mint=USDC, swap_mode=pb.SWAP_MODE_EXACT_IN, amount_in=AMOUNT, amount_out="0.149611",
        quoted_amount_out="0.149624", other_amount_threshold="0.148875", executed_price="149.611",
        price_impact_pct="0.000000", realized_slippage_bps=1,
        fees=pb.Fees(base_fee_lamports=5000, total_lamports=5000))
    result.created_at.FromNanoseconds(1_790_000_000_000_000_000)
    result.updated_at.FromNanoseconds(1_790_000_000_001_000_000)
    return result
