"""CancelTrade across replicas: the asking replica gets the owner's answer — the cancelled
trade, or its refusal as the same error — and "try again" when the owner is gone."""

import pytest
import redis.asyncio as aredis

from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_cancel import RemoteCancel
from tradewire.v1 import trade_pb2 as pb

OWNERS = {("alice", "t-1"): "replica-a", ("alice", "t-2"): "replica-a", ("alice", "t-3"): "replica-gone"}


def replica(url: str, replica_id: str) -> RemoteCancel:
    return RemoteCancel(aredis.Redis.from_url(url), replica_id, lambda p, r: OWNERS.get((p, r)), timeout_s=5)


async def test_the_owner_answers_for_its_trades(redis_server):
    asked: list[tuple] = []

    async def cancel_here(principal: str, request_id: str, reason: str) -> pb.TradeResult:
        asked.append((principal, request_id, reason))
        if request_id == "t-2":
            raise TradewireError("NOT_CANCELLABLE", "it has been sent; it runs to its end",
                                 metadata={"status": "TRADE_STATUS_SUBMITTED"})
        return pb.TradeResult(request_id=request_id, status=pb.TRADE_STATUS_CANCELLED)

    a, b = replica(redis_server.url, "replica-a"), replica(redis_server.url, "replica-b")
    await a.start(cancel_here)
    try:
        assert b.owner("alice", "t-1") == "replica-a" and a.owner("alice", "t-1") is None  # its own: None
        result = await b.cancel("replica-a", "alice", "t-1", "from b")
        assert (result.request_id, result.status) == ("t-1", pb.TRADE_STATUS_CANCELLED)
        with pytest.raises(TradewireError) as refused:
            await b.cancel("replica-a", "alice", "t-2", "")
        assert refused.value.reason == "NOT_CANCELLABLE" and "runs to its end" in refused.value.message
        assert refused.value.metadata == {"status": "TRADE_STATUS_SUBMITTED"}
        assert asked == [("alice", "t-1", "from b"), ("alice", "t-2", "")]

        with pytest.raises(TradewireError) as gone:  # nobody listens for replica-gone
            await b.cancel("replica-gone", "alice", "t-3", "")
        assert gone.value.reason == "UPSTREAM_UNAVAILABLE" and gone.value.retry_after_s
    finally:
        await a.stop()
