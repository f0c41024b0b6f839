"""One background task that confirms every in-flight LIVE transaction.

Each round, for all watched signatures at once: the block height FIRST (``getEpochInfo``: the
height and the slot of the bank it was read from), then ONE ``getSignatureStatuses`` (chunks
of 256; the recent status cache, which spans every valid blockhash) and, for Jito bundles
still unseen, one ``getInflightBundleStatuses`` (chunks of 5). Per transaction:

* status at the configured commitment → landed (success or on-chain failure) → finalize;
* status ``processed`` → it is in a block; wait (no re-broadcast);
* no status and the height read *before* the statuses is past lastValidBlockHeight → it can
  never land from now on; but a lagging status cache is no proof it never did. Its absence is
  confirmed first with the reads that find any landed transaction — ``getSignatureStatuses``
  with ``searchTransactionHistory`` and ``getTransaction`` at the configured commitment —
  and only when both find nothing is it expired (found → landed; an error → still pending).
  (Reading the height first makes this sound: a transaction that landed in a valid block
  shows up in the reads made afterwards — by a node at least as far along: a history search
  answered from a slot before the height's, by a node behind a load balancer, proves
  nothing, and the transaction stays pending.)
* Jito bundle reported Failed → the executor tells why (``finalize``); the engine's word is no
  proof that the same signed bytes never land (another region, a leader, a re-broadcast in
  flight), so unless the diagnosis is that they can no longer land (the node, at least as far
  along as the height read, says their blockhash is no longer valid), the finalizer answers
  None: the bundle is not sent again and the transaction is followed by its signature until
  it lands or its validity has passed (then the diagnosis is its outcome);
* otherwise re-broadcast the SAME signed bytes every ``rebroadcast_interval_s``
  (``skipPreflight``; the same bundle for Jito, which has the same id).

An unreachable RPC or an open breaker only skips a round: the transaction stays pending and
is reconciled by signature later. Such an outage is logged when it starts and when it ends
(with how long it lasted), not every round. Finalization runs once per transaction, in its
own task, so a slow read never stalls the rounds; a failed finalization is tried again,
backing off (an upstream's failure or malformed answer, or the quote source that values the
fill not answering, is one warning line, no traceback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.breaker import CircuitOpen
from tradewire.core.executors.live.jito_client import JitoClient
from tradewire.core.executors.live.solana_rpc import RpcError, SignatureStatus, SolanaRpc
from tradewire.core.executors.live.upstreams import UpstreamError
from tradewire.core.outage import Outage
from tradewire.core.store.live_orders import ROUTE_JITO, LiveOrder, LiveOrderStore

log = logging.getLogger("tradewire.live.confirmer")

LANDED, EXPIRED, DROPPED = "landed", "expired", "dropped"
# What an upstream can do to a round or a finalization (malformed answers are UpstreamErrors too).
UPSTREAM_FAILURES = (UpstreamError, CircuitOpen, RpcError)


@dataclass(frozen=True)
class Resolution:
    kind: str  # landed | expired | dropped
    height: int = 0
    detail: str = ""
    slot: int = 0  # of the bank the height was read from (0: not known)


@dataclass(eq=False)
class Watch:
    order: LiveOrder
    future: asyncio.Future
    next_broadcast: float
    added_at: float
    bundle_id: str | None = None
    attached: int = 0  # executor generators waiting for this outcome
    in_block: bool = False  # seen at "processed"
    finalizing: bool = False
    broadcasts: int = 0
    last_error: str = ""
    finalize_failures: int = 0
    finalize_after: float = 0.0  # backoff after a failed finalization
    # Past its last valid height, and the node could not say whether it landed (why, or "").
    undetermined: str = ""
    # The block engine reported the bundle Failed, and the executor said it may still land:
    # followed by signature only (no re-broadcast) until it lands or its validity has passed.
    engine_failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        return self.order.signature


# The outcome; or None when the transaction may still land (see "Jito bundle reported Failed"),
# or, landed, the other transactions of its bundle may (the executor's _landed_fills).
Finalizer = Callable[[Watch, Resolution], Awaitable[dict[str, Any] | None]]


class Confirmer:
    def __init__(self, rpc: SolanaRpc, jito: JitoClient | None, orders: LiveOrderStore, finalize: Finalizer, *,
                 commitment: str, poll_interval_s: float, rebroadcast_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rpc = rpc
        self.jito = jito
        self.orders = orders
        self.finalize = finalize
        self.commitment = commitment
        self.poll_interval_s = poll_interval_s
        self.rebroadcast_interval_s = rebroadcast_interval_s
        self._clock = clock
        self.watches: dict[str, Watch] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._finalizing: set[asyncio.Task] = set()
        # Counters (tests, metrics, health).
        self.rounds = 0
        self.status_calls = 0
        self.signatures_polled = 0
        self.rebroadcasts = 0
        self.failed_rounds = 0
        paused = "confirmation paused; transactions stay pending"
        self.rpc_outage = Outage(log, "rpc", paused, clock=clock)
        self.jito_outage = Outage(log, "Jito block engine", paused, clock=clock)

    # -- tracking ------------------------------------------------------------------------

    def track(self, order: LiveOrder) -> Watch:
        """Watch a pending transaction (idempotent: one watch per signature)."""
        watch = self.watches.get(order.signature)
        if watch is None:
            now = self._clock()
            watch = Watch(order, asyncio.get_running_loop().create_future(), now + self.rebroadcast_interval_s, now,
                          bundle_id=order.bundle_id)
            self.watches[order.signature] = watch
            self._changed.set()
        return watch

    def note_bundle_id(self, watch: Watch, returned: Any) -> None:
        """The id the block engine answered a send of the bundle with: its statuses are asked by
        that one (a send whose answer was lost leaves the id computed before sending)."""
        if isinstance(returned, str) and returned and returned != watch.bundle_id:
            watch.bundle_id = returned
            self.orders.set_bundle_id(watch.signature, returned)

    def forget(self, signature: str) -> None:
        self.watches.pop(signature, None)

    def stalled(self, older_than_s: float) -> int:
        cutoff = self._clock() - older_than_s
        return sum(1 for w in self.watches.values() if w.added_at < cutoff)

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-confirmer")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._finalizing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for watch in self.watches.values():  # the rows stay pending: reconciled after the restart
            if not watch.future.done():
                watch.future.cancel()

    async def _run(self) -> None:
        while True:
            if not self.watches:
                self._changed.clear()
                await self._changed.wait()
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("confirmation round failed")
            await asyncio.sleep(self.poll_interval_s)

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for the finalizations started so far (start-up reconciliation)."""
        if self._finalizing:
            await asyncio.wait(set(self._finalizing), timeout=timeout_s)

    async def poll_once(self) -> None:
        now = self._clock()
        watches = [w for w in self.watches.values() if not w.finalizing and now >= w.finalize_after]
        if not watches:
            return
        self.rounds += 1
        try:
            height, slot = await self.rpc.block_height_at(self.commitment)
            statuses = await self.rpc.get_signature_statuses([w.signature for w in watches])
        except UPSTREAM_FAILURES as exc:
            self.failed_rounds += 1
            self.rpc_outage.failed(exc, in_flight=len(watches))
            return
        self.rpc_outage.answered()
        self.status_calls += 1
        self.signatures_polled += len(watches)
        now = self._clock()
        unseen_bundles: list[Watch] = []
        to_broadcast: list[Watch] = []
        past_validity: list[Watch] = []
        for watch, status in zip(watches, statuses):
            if status is not None:
                self._seen(watch, status, height, slot)
                continue
            watch.in_block = False
            if height > watch.order.last_valid_block_height:
                past_validity.append(watch)
            elif watch.order.route == ROUTE_JITO:
                # (never through the plain RPC: its swap would go out alone, outside its bundle)
                if self.jito is not None and not watch.engine_failed:
                    unseen_bundles.append(watch)
            elif now >= watch.next_broadcast:
                to_broadcast.append(watch)
        if unseen_bundles:
            try:
                bundle_states = await self.jito.inflight_statuses([w.bundle_id for w in unseen_bundles if w.bundle_id])
            except UPSTREAM_FAILURES as exc:
                self.jito_outage.failed(exc, in_flight=len(unseen_bundles))
                bundle_states = {}
            else:
                self.jito_outage.answered()
            for watch in unseen_bundles:
                state = bundle_states.get(watch.bundle_id or "")
                if state == "Failed":
                    self._start_finalize(watch, Resolution(DROPPED, height, "the block engine reported the bundle Failed",
                                                           slot))
                elif state in (None, "Invalid") and now >= watch.next_broadcast:
                    to_broadcast.append(watch)
        for watch in to_broadcast:
            await self.broadcast(watch)
        if past_validity:
            await self._landed_or_expired(past_validity, height, slot)

    def _seen(self, watch: Watch, status: SignatureStatus, height: int, slot: int) -> None:
        if _reached(status.confirmation_status, self.commitment):
            self._start_finalize(watch, Resolution(LANDED, height, slot=slot))
        else:
            watch.in_block = True

    async def _landed_or_expired(self, watches: list[Watch], height: int, slot: int) -> None:
        """Past their last valid height (read at ``slot``) with no recent status: look them up in
        the node's history before calling them expired; whatever cannot be looked up, or only
        by a node behind ``slot``, stays pending."""
        try:
            found, seen_at = await self.rpc.signature_statuses_at([w.signature for w in watches],
                                                                  search_history=True)
        except UPSTREAM_FAILURES as exc:
            for watch in watches:
                self._undetermined(watch, str(exc))
            return
        for watch, status in zip(watches, found):
            if status is not None:
                self._seen(watch, status, height, slot)
                continue
            if seen_at < slot:  # it may have landed in a slot this node has not reached
                self._undetermined(watch, f"the node that searched its history is behind: it answered at slot "
                                          f"{seen_at}, the block height was read at slot {slot}")
                continue
            try:  # the ledger itself (history search can cover rooted slots only)
                landed = await self.rpc.get_transaction(watch.signature, self.commitment) is not None
            except UPSTREAM_FAILURES as exc:
                self._undetermined(watch, str(exc))
                continue
            self._start_finalize(watch, Resolution(LANDED if landed else EXPIRED, height, slot=slot))

    def _undetermined(self, watch: Watch, why: str) -> None:
        """It stays pending (SUBMITTED) until the node can say: said once as a warning (a node
        without transaction history never will), then in the executor's health."""
        if not watch.undetermined:
            log.warning("a transaction past its last valid block height cannot be looked up; it stays "
                        "submitted until the RPC node can say whether it landed",
                        extra={"signature": watch.signature, "error": why})
        watch.undetermined = why

    def undetermined(self) -> list[Watch]:
        """Watched transactions past their validity whose landing the node could not determine."""
        return [w for w in self.watches.values() if w.undetermined]

    async def broadcast(self, watch: Watch) -> None:
        """Send the same signed bytes again; whatever happens, the signature decides."""
        if self.watches.get(watch.signature) is not watch:
            return  # forgotten while this round ran (refused at its first send): it must not go out now
        watch.next_broadcast = self._clock() + self.rebroadcast_interval_s
        watch.broadcasts += 1
        self.rebroadcasts += 1
        self.orders.note_broadcast(watch.signature)
        try:
            if watch.order.route == ROUTE_JITO:
                self.note_bundle_id(watch, await self.jito.send_bundle(watch.order.wires))
            else:
                await self.rpc.send(watch.order.tx, skip_preflight=True)
        except UPSTREAM_FAILURES as exc:
            watch.last_error = str(exc)
            log.info("re-broadcast not accepted; still reconciling by signature",
                     extra={"signature": watch.signature, "error": str(exc)})

    # -- finalization ----------------------------------------------------------------------

    def _start_finalize(self, watch: Watch, resolution: Resolution) -> None:
        watch.finalizing = True
        task = asyncio.create_task(self._finalize(watch, resolution), name=f"live-finalize-{watch.signature[:8]}")
        self._finalizing.add(task)
        task.add_done_callback(self._finalizing.discard)

    async def _finalize(self, watch: Watch, resolution: Resolution) -> None:
        try:
            outcome = await self.finalize(watch, resolution)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - it stays pending (SUBMITTED); try again, backing off
            watch.finalize_failures += 1
            delay = min(30.0, self.poll_interval_s * 2 ** watch.finalize_failures)
            watch.finalize_after = self._clock() + delay
            extra = {"signature": watch.signature, "failures": watch.finalize_failures, "retry_in_s": round(delay, 3)}
            if _anticipated(exc):  # an upstream's answer or outage, not our fault
                log.warning("finalizing a live transaction failed; retrying", extra={**extra, "error": str(exc)})
            else:
                log.exception("finalizing a live transaction failed; retrying", extra=extra)
            watch.finalizing = False
            return
        if outcome is None:  # a Failed bundle that may still land, or a swap that landed without the
            # rest of its bundle, which may still land: followed by signature only, looked at again
            watch.engine_failed = True
            watch.finalizing = False
            return
        self.watches.pop(watch.signature, None)
        if not watch.future.done():
            watch.future.set_result(outcome)


def _anticipated(exc: Exception) -> bool:
    """A finalization failure an upstream caused: the RPC's or block engine's, or the quote
    source that values the fill being unavailable (the booking waits for it)."""
    return isinstance(exc, UPSTREAM_FAILURES) or (
        isinstance(exc, TradewireError) and exc.reason in ("UPSTREAM_UNAVAILABLE", "CIRCUIT_OPEN"))


def _reached(status: str | None, commitment: str) -> bool:
    if commitment == "finalized":
        return status == "finalized"
    return status in ("confirmed", "finalized")
