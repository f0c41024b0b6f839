"""gRPC-Web's text mode (base64 both ways; the grpc-web JavaScript client's default), spoken
raw: a unary trade, a status stream to its end, and a body that is not base64."""

import base64
import struct

import httpx

from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SERVICE = "/tradewire.v1.TradeExecutionService"
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TEXT = "application/grpc-web-text"


def text_body(message) -> bytes:
    raw = message.SerializeToString()
    return base64.b64encode(b"\x00" + struct.pack(">I", len(raw)) + raw)


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """Decode a text response (padded base64 chunks one after the other) into its frames."""
    text = b"".join(body.split())
    data = b"".join(base64.b64decode(text[i:i + 4]) for i in range(0, len(text), 4))
    out, i = [], 0
    while i + 5 <= len(data):
        size = struct.unpack(">I", data[i + 1:i + 5])[0]
        out.append((data[i], data[i + 5:i + 5 + size]))
        i += 5 + size
    assert i == len(data), "a truncated frame"
    return out


def status_of(response: httpx.Response, messages: list[tuple[int, bytes]]) -> str | None:
    trailers = [payload.decode() for flags, payload in messages if flags & 0x80]
    for block in trailers:
        for line in block.split("\r\n"):
            if line.lower().startswith("grpc-status:"):
                return line.split(":", 1)[1].strip()
    return response.headers.get("grpc-status")


def headers(gateway) -> dict[str, str]:
    return {"content-type": TEXT, "x-grpc-web": "1", "authorization": f"Bearer {gateway.key('alice')}"}


def test_a_trade_over_grpc_web_text_fills(gateway):
    request = pb.TradeRequest(request_id="web-text-1", mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                              amount="0.1", slippage_bps=100)
    response = httpx.post(f"{gateway.http_url}{SERVICE}/ExecuteTrade", content=text_body(request),
                          headers=headers(gateway), timeout=20)
    assert response.status_code == 200 and response.headers["content-type"].startswith(TEXT), response.headers
    messages = frames(response.content)
    assert status_of(response, messages) == "0", messages
    [result] = [pb.TradeResult.FromString(payload) for flags, payload in messages if not flags & 0x80]
    assert result.status == pb.TRADE_STATUS_FILLED and result.request_id == "web-text-1"


def test_a_status_stream_over_grpc_web_text_follows_a_trade_to_its_end(gateway):
    trade = pb.TradeRequest(request_id="web-text-2", mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                            amount="0.1", slippage_bps=100)
    httpx.post(f"{gateway.http_url}{SERVICE}/ExecuteTrade", content=text_body(trade), headers=headers(gateway),
               timeout=20).raise_for_status()
    response = httpx.post(f"{gateway.http_url}{SERVICE}/StreamExecutionStatus",
                          content=text_body(spb.StreamExecutionStatusRequest(request_id="web-text-2")),
                          headers=headers(gateway), timeout=20)
    messages = frames(response.content)
    assert status_of(response, messages) == "0", messages
    events = [pb.ExecutionStatus.FromString(payload) for flags, payload in messages if not flags & 0x80]
    transitions = [e for e in events if e.kind == pb.STATUS_KIND_TRANSITION]
    assert [e.sequence for e in transitions] == list(range(1, 10))
    assert transitions[-1].stage == pb.TRADE_STATUS_FILLED


def test_a_grpc_web_text_body_that_is_not_base64_is_invalid_argument(gateway):
    response = httpx.post(f"{gateway.http_url}{SERVICE}/ExecuteTrade", content=b"not base64!",
                          headers=headers(gateway), timeout=20)
    assert response.status_code == 200 and response.headers["grpc-status"] == "3", response.headers
    assert response.headers["content-type"].startswith(TEXT)
