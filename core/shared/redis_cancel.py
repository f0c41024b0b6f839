"""CancelTrade for a trade running on another replica.

Only the replica running a trade can stop it (its task waits inside the executor), and a
caller's CancelTrade lands on whichever replica the load balancer picks. So a replica asked to
cancel a trade it does not run publishes the request on the owner's channel,
``tw:cancel:{replica}`` (the owner is in the trade's hash), and waits for the answer on a
reply list of its own: the cancelled trade's result, or the owner's refusal (NOT_CANCELLABLE
once sent). Nobody listening on the channel means the owner is gone — its trade is about to
be taken over (core/shared/redis_replicas.py) — and the caller is asked to try again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aredis

from tradewire.core.errors import TradewireError
from tradewire.core.outage import Outage
from tradewire.core.shared import blocking_read_s, log_failure
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.shared")

LocalCancel = Callable[[str, str, str], Awaitable[pb.TradeResult]]  # principal, request id, reason
_REPLY_KEPT_S = 60


def _channel(replica_id: str) -> str:
    return f"tw:cancel:{replica_id}"


class RemoteCancel:
    def __init__(self, async_client: aredis.Redis, replica_id: str, owner_of: Callable[[str, str], str | None],
                 timeout_s: float = 10.0) -> None:
        """``owner_of(principal, request id)``: the replica that runs the trade (the store's)."""
        self._ar = async_client
        self.replica_id = replica_id
        self._owner_of = owner_of
        self.timeout_s = timeout_s
        self._block_s = blocking_read_s(async_client, 1.0)
        self._listener: asyncio.Task | None = None
        self._handlers: set[asyncio.Task] = set()

    # -- the asking side ---------------------------------------------------------------------

    def owner(self, principal_id: str, request_id: str) -> str | None:
        """The replica running the trade, when that is another one."""
        owner = self._owner_of(principal_id, request_id)
        return owner if owner and owner != self.replica_id else None

    async def cancel(self, owner: str, principal_id: str, request_id: str, reason: str) -> pb.TradeResult:
        """Ask ``owner`` to cancel the trade; its result, or the owner's refusal raised."""
        reply = f"tw:cancel-reply:{uuid.uuid4().hex}"
        request = orjson.dumps({"principal": principal_id, "request_id": request_id, "reason": reason, "reply": reply})
        if not await self._ar.publish(_channel(owner), request):
            raise TradewireError("UPSTREAM_UNAVAILABLE", f"the replica running trade {request_id!r} does not answer; "
                                 "another one takes it over shortly — try again", retry_after_s=2.0)
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while asyncio.get_running_loop().time() < deadline:
            answer = await self._ar.blpop([reply], timeout=self._block_s)
            if answer is not None:
                return _decode(answer[1])
        raise TradewireError("UPSTREAM_UNAVAILABLE", f"the replica running trade {request_id!r} did not answer in "
                             f"{self.timeout_s:.0f} s; try again", retry_after_s=2.0)

    # -- the owning side ---------------------------------------------------------------------

    async def start(self, local_cancel: LocalCancel) -> None:
        """Answer the cancel requests other replicas send this one."""
        pubsub = self._ar.pubsub()
        await pubsub.subscribe(_channel(self.replica_id))
        self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub, local_cancel),
                                                                name="remote-cancel")

    async def _listen(self, pubsub, local_cancel: LocalCancel) -> None:
        outage = Outage(log, "cancel requests from other replicas (Redis)",
                        "resubscribing; cancels sent here by other replicas wait")
        try:
            while True:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._block_s)
                except (OSError, aredis.RedisError) as exc:
                    outage.failed(exc)
                    await asyncio.sleep(self._block_s)
                    continue
                outage.answered()
                if message is None:
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(message["data"], local_cancel))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        finally:
            await pubsub.aclose()

    async def _answer(self, raw: bytes, local_cancel: LocalCancel) -> None:
        try:
            request = orjson.loads(raw)
            try:
                result = await local_cancel(request["principal"], request["request_id"], request["reason"])
                answer = {"result": base64.b64encode(result.SerializeToString()).decode()}
            except TradewireError as exc:
                answer = {"error": {"reason": exc.reason, "message": exc.message, "metadata": dict(exc.metadata),
                                    "retry_after_s": exc.retry_after_s}}
            pipe = self._ar.pipeline(transaction=True)
            pipe.rpush(request["reply"], orjson.dumps(answer))
            pipe.expire(request["reply"], _REPLY_KEPT_S)
            await pipe.execute()
        except Exception:  # one bad request must not stop the listener
            log_failure(log, "answering a cancel request from another replica failed")

    async def stop(self) -> None:
        tasks = [t for t in (self._listener, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listener = None


def _decode(raw: bytes) -> pb.TradeResult:
    answer = orjson.loads(raw)
    if "result" in answer:
        return pb.TradeResult.FromString(base64.b64decode(answer["result"]))
    error = answer["error"]
    raise TradewireError(error["reason"], error["message"], retry_after_s=error.get("retry_after_s"),
                         metadata=error.get("metadata") or {})
