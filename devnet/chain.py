"""The ledger: LiteSVM plus a slot clock, a blockhash window and a signature store.

LiteSVM has no blocks: it accepts only its single latest blockhash and keeps a short
history. Mainnet accepts any blockhash issued in the last 150 blocks and answers for every
signature it ever landed. So LiteSVM's own blockhash check and history are switched off and
this module does both the way a validator does:

* Slots advance on a wall clock (``slot_ms``), one block per slot, lazily: every call that
  reads or writes state first catches the chain up to "now" (``sync``), so no background
  task is needed and nothing happens between requests that anyone could observe.
* Each new slot asks LiteSVM for a fresh blockhash (``expire_blockhash``) and remembers the
  block height it was issued at. A transaction is accepted while the current height is at
  most ``issued + blockhash_valid_blocks`` (= the ``lastValidBlockHeight`` we handed out);
  otherwise it fails with BlockhashNotFound, before executing and without paying a fee.
* Simulation (simulateTransaction, sendTransaction's preflight) wants the blockhash to stay
  valid a few blocks longer (``preflight_margin``), as a validator's does: in the last
  blocks of its life preflight says BlockhashNotFound while the same bytes sent with
  skipPreflight can still land.
* Every landed transaction (success, or failure that paid the fee) is kept by signature
  with its meta (fee, err, logs, CUs, pre/post lamports and token balances), which is what
  getSignatureStatuses / getTransaction serve. A signature already landed is refused with
  AlreadyProcessed, so resending the same bytes never executes twice. Like a validator's
  status cache, plain getSignatureStatuses sees only recent slots (``in_status_cache``).
* Bundles execute all-or-nothing: touched accounts are snapshotted and restored if any
  transaction of the bundle fails.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, SimulatedTransactionInfo
from solders.transaction_status import TransactionErrorFieldless

from .config import DevnetConfig
from .constants import MAX_PROCESSING_AGE, MAX_TRANSACTION_FORWARDING_DELAY, SYSTEM_PROGRAM_ID
from .guard_program import GUARD_PROGRAM_ELF, GUARD_PROGRAM_ID
from .spl_token import parse_mint, parse_token_account
from .txutil import LoadedKeys, compute_budget, fee_for_message, load_keys

SLOTS_PER_EPOCH = 432_000
_FEE_HISTORY_SLOTS = 150


@dataclass(frozen=True)
class TokenBalance:
    """One entry of pre/postTokenBalances."""

    account_index: int
    mint: Pubkey
    owner: Pubkey
    program_id: Pubkey
    amount: int
    decimals: int


@dataclass
class TxRecord:
    """Everything getTransaction / getSignatureStatuses need about a landed transaction."""

    signature: Signature
    tx: VersionedTransaction
    slot: int
    block_time: int
    err: Any  # solders TransactionErrorType or None
    fee: int
    logs: list[str]
    compute_units: int
    keys: LoadedKeys
    pre_balances: list[int]
    post_balances: list[int]
    pre_token_balances: list[TokenBalance]
    post_token_balances: list[TokenBalance]
    inner_instructions: list[Any]
    return_data: Any
    cu_price: int


@dataclass
class SimResult:
    """Outcome of a simulation (never committed)."""

    err: Any
    logs: list[str]
    units_consumed: int
    fee: int
    return_data: Any = None
    inner_instructions: list[Any] = field(default_factory=list)
    post_accounts: dict[Pubkey, Account] = field(default_factory=dict)
    keys: LoadedKeys | None = None
    pre_balances: list[int] = field(default_factory=list)
    post_balances: list[int] = field(default_factory=list)


@dataclass
class ExecResult:
    """Outcome of executing a transaction: ``record`` is set when it landed."""

    signature: Signature
    err: Any
    record: TxRecord | None


class Chain:
    """LiteSVM with mainnet-like blockhash expiry, signature history and slot clock."""

    def __init__(self, config: DevnetConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._origin = clock()
        self._manual_slots = 0
        self.svm = LiteSVM()
        self.svm.with_blockhash_check(False)
        self.svm.with_transaction_history(0)
        self.svm.add_program(GUARD_PROGRAM_ID, GUARD_PROGRAM_ELF)
        self.slot = config.start_slot
        self.block_height = config.start_block_height
        window = config.blockhash_valid_blocks
        # Agave keeps MAX_RECENT_BLOCKHASHES rooted slots of statuses: twice the blockhash lifetime.
        self.status_cache_roots = 2 * window
        # Blocks of a blockhash's life simulation refuses (6 of 150 on mainnet; a shorter test
        # window keeps the same share, so a 5-block window keeps none).
        self.preflight_margin = (
            MAX_TRANSACTION_FORWARDING_DELAY * min(window, MAX_PROCESSING_AGE) // MAX_PROCESSING_AGE
        )
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict()
        self._latest = self.svm.latest_blockhash()
        self._blockhashes[self._latest] = self.block_height
        self.records: dict[Signature, TxRecord] = {}
        self.tx_count = 0
        # per slot: (min CU price of the block, {write-locked account: min CU price})
        self._slot_fees: deque[tuple[int, int | None, dict[Pubkey, int]]] = deque(maxlen=_FEE_HISTORY_SLOTS)
        self._slot_hooks: list[Callable[[int], None]] = []
        self._decimals: dict[Pubkey, int] = {}
        self._clock_slot = -1
        self._advancing = False
        self._set_clock()

    # ----- clock -----------------------------------------------------------------------

    def add_slot_hook(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(new_slot)`` at the start of each new slot (e.g. to land queued bundles)."""
        self._slot_hooks.append(hook)

    def _target_slot(self) -> int:
        elapsed_ms = (self._clock() - self._origin) * 1000.0
        return self.config.start_slot + int(elapsed_ms // self.config.slot_ms) + self._manual_slots

    def sync(self) -> int:
        """Catch the chain up with the wall clock; returns the current slot."""
        if self._advancing:  # a slot hook is running inside _advance: the slot is already set
            return self.slot
        target = self._target_slot()
        if target > self.slot:
            self._advancing = True
            try:
                self._advance(target - self.slot)
            finally:
                self._advancing = False
        return self.slot

    def advance_slots(self, n: int) -> int:
        """Move the chain forward ``n`` slots now (tests, the /devnet/advance endpoint)."""
        if n < 0:
            raise ValueError("cannot go back in time")
        self._manual_slots += n
        return self.sync()

    def _advance(self, n: int) -> None:
        window = self.config.blockhash_valid_blocks
        step = 0
        while step < n:
            if step and n - step > window + 1:
                # Slots in which nothing can happen: the hooks ran at the first one (nothing is
                # queued meanwhile) and a blockhash issued in them would be expired at the end.
                skipped = n - step - (window + 1)
                self.slot += skipped
                self.block_height += skipped
                step += skipped
                continue
            self.slot += 1
            self.block_height += 1
            if n - step <= window + 1:  # older hashes would be expired at the end anyway
                self.svm.expire_blockhash()
                self._latest = self.svm.latest_blockhash()
                self._blockhashes[self._latest] = self.block_height
            for hook in self._slot_hooks:
                hook(self.slot)
            step += 1
        oldest_valid = self.block_height - window
        while self._blockhashes:
            first, height = next(iter(self._blockhashes.items()))
            if height >= oldest_valid or first == self._latest:
                break
            self._blockhashes.popitem(last=False)

    def _set_clock(self) -> None:
        """Keep LiteSVM's Clock sysvar on our slot (done lazily, right before executing)."""
        if self._clock_slot == self.slot:
            return
        epoch = self.slot // SLOTS_PER_EPOCH
        now = int(time.time())
        self.svm.set_clock(Clock(self.slot, now, epoch, epoch + 1, now))
        self._clock_slot = self.slot

    def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash, lastValidBlockHeight) as getLatestBlockhash returns them."""
        self.sync()
        return self._latest, self.block_height + self.config.blockhash_valid_blocks

    def blockhash_last_valid_height(self, blockhash: Hash) -> int | None:
        """lastValidBlockHeight of a known blockhash, None if unknown or expired."""
        issued = self._blockhashes.get(blockhash)
        if issued is None:
            return None
        last = issued + self.config.blockhash_valid_blocks
        return last if self.block_height <= last else None

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        self.sync()
        return self.blockhash_last_valid_height(blockhash) is not None

    def epoch(self) -> int:
        return self.slot // SLOTS_PER_EPOCH

    # ----- accounts --------------------------------------------------------------------

    def get_account(self, pubkey: Pubkey) -> Account | None:
        """The account, or None when it does not exist (zero lamports means absent)."""
        acct = self.svm.get_account(pubkey)
        if acct is None or acct.lamports == 0:
            return None
        return acct

    def set_account(self, pubkey: Pubkey, account: Account) -> None:
        self.svm.set_account(pubkey, account)

    def balance(self, pubkey: Pubkey) -> int:
        acct = self.get_account(pubkey)
        return acct.lamports if acct else 0

    def decimals(self, mint: Pubkey) -> int | None:
        if mint in self._decimals:
            return self._decimals[mint]
        state = parse_mint(self.get_account(mint))
        if state is None:
            return None
        self._decimals[mint] = state.decimals
        return state.decimals

    def rent_exempt(self, data_len: int) -> int:
        return self.svm.minimum_balance_for_rent_exemption(data_len)

    def _snapshot(self, keys: Sequence[Pubkey]) -> tuple[list[int], list[TokenBalance]]:
        lamports: list[int] = []
        tokens: list[TokenBalance] = []
        for i, key in enumerate(keys):
            acct = self.get_account(key)
            lamports.append(acct.lamports if acct else 0)
            state = parse_token_account(acct)
            if state is not None and acct is not None:
                dec = self.decimals(state.mint)
                if dec is not None:
                    tokens.append(TokenBalance(i, state.mint, state.owner, acct.owner, state.amount, dec))
        return lamports, tokens

    # ----- checks ----------------------------------------------------------------------

    def check(self, tx: VersionedTransaction, margin: int = 0) -> Any:
        """Pre-execution checks a validator makes: blockhash age (valid ``margin`` blocks
        more), then the status cache."""
        self.sync()
        last_valid = self.blockhash_last_valid_height(tx.message.recent_blockhash)
        if last_valid is None or self.block_height > last_valid - margin:
            return TransactionErrorFieldless.BlockhashNotFound
        if tx.signatures[0] in self.records:
            return TransactionErrorFieldless.AlreadyProcessed
        return None

    # ----- simulate --------------------------------------------------------------------

    def simulate(
        self, tx: VersionedTransaction, *, check_blockhash: bool = True, verify_signatures: bool = False
    ) -> SimResult:
        """Run without committing. Signatures are not verified unless asked (RPC default)."""
        self.sync()
        keys = load_keys(tx, self.get_account)
        fee = _fee(tx)
        if check_blockhash:
            err = self.check(tx, self.preflight_margin)
            if err is not None:
                return SimResult(err=err, logs=[], units_consumed=0, fee=0, keys=keys)
        elif tx.signatures[0] in self.records:
            return SimResult(err=TransactionErrorFieldless.AlreadyProcessed, logs=[], units_consumed=0, fee=0, keys=keys)
        pre_lamports, _ = self._snapshot(keys.keys)
        self._set_clock()
        self.svm.with_sigverify(verify_signatures)
        try:
            res = self.svm.simulate_transaction(tx)
        finally:
            self.svm.with_sigverify(True)
        if isinstance(res, FailedTransactionMetadata):
            meta = res.meta()
            return SimResult(
                err=res.err(),
                logs=list(meta.logs()),
                units_consumed=meta.compute_units_consumed(),
                fee=meta.fee() or fee,
                return_data=meta.return_data(),
                inner_instructions=list(meta.inner_instructions()),
                keys=keys,
                pre_balances=pre_lamports,
                post_balances=pre_lamports,
            )
        assert isinstance(res, SimulatedTransactionInfo)
        meta = res.meta()
        post = {k: a for k, a in res.post_accounts()}
        post_lamports = [post[k].lamports if k in post else pre_lamports[i] for i, k in enumerate(keys.keys)]
        return SimResult(
            err=None,
            logs=list(meta.logs()),
            units_consumed=meta.compute_units_consumed(),
            fee=meta.fee(),
            return_data=meta.return_data(),
            inner_instructions=list(meta.inner_instructions()),
            post_accounts=post,
            keys=keys,
            pre_balances=pre_lamports,
            post_balances=post_lamports,
        )

    # ----- execute ---------------------------------------------------------------------

    def execute(self, tx: VersionedTransaction) -> ExecResult:
        """Process a transaction for real in the current slot.

        Returns ``record=None`` when it did not land (expired blockhash, duplicate, payer
        cannot pay the fee, bad signature): like mainnet, nothing is charged or stored.
        """
        sig = tx.signatures[0]
        err = self.check(tx)
        if err is not None:
            return ExecResult(sig, err, None)
        keys = load_keys(tx, self.get_account)
        pre_lamports, pre_tokens = self._snapshot(keys.keys)
        self._set_clock()
        res = self.svm.send_transaction(tx)
        post_lamports, post_tokens = self._snapshot(keys.keys)
        if isinstance(res, FailedTransactionMetadata):
            err = res.err()
            meta = res.meta()
            if pre_lamports[0] == post_lamports[0]:  # fee not charged: never landed
                return ExecResult(sig, err, None)
        else:
            err = None
            meta = res
        budget = compute_budget(tx.message)
        record = TxRecord(
            signature=sig,
            tx=tx,
            slot=self.slot,
            block_time=int(time.time()),
            err=err,
            fee=meta.fee(),
            logs=list(meta.logs()),
            compute_units=meta.compute_units_consumed(),
            keys=keys,
            pre_balances=pre_lamports,
            post_balances=post_lamports,
            pre_token_balances=pre_tokens,
            post_token_balances=post_tokens,
            inner_instructions=list(meta.inner_instructions()),
            return_data=meta.return_data(),
            cu_price=budget.unit_price,
        )
        self.records[sig] = record
        self.tx_count += 1
        self._note_fee(record)
        return ExecResult(sig, err, record)

    def execute_bundle(self, txs: Sequence[VersionedTransaction]) -> tuple[list[ExecResult], int | None]:
        """Execute ``txs`` in order, all-or-nothing.

        Returns (results, failed_index). On failure every touched account is restored and no
        signature is recorded: the bundle never happened (no fees either, as with Jito).
        """
        self.sync()
        touched: dict[Pubkey, Account | None] = {}
        for tx in txs:
            for key in load_keys(tx, self.get_account).keys:
                if key not in touched:
                    touched[key] = self.svm.get_account(key)
        results: list[ExecResult] = []
        for i, tx in enumerate(txs):
            result = self.execute(tx)
            results.append(result)
            if result.record is None or result.err is not None:
                self._rollback(touched, results)
                return results, i
        return results, None

    def _rollback(self, touched: dict[Pubkey, Account | None], results: list[ExecResult]) -> None:
        for key, before in touched.items():
            now = self.svm.get_account(key)
            if now == before or (before is not None and before.executable):
                continue  # untouched, or a program (transactions cannot modify those)
            self.svm.set_account(key, before if before is not None else Account(0, b"", SYSTEM_PROGRAM_ID))
        for result in results:
            if result.record is not None and self.records.get(result.signature) is result.record:
                del self.records[result.signature]
                self.tx_count -= 1

    def _note_fee(self, record: TxRecord) -> None:
        price = record.cu_price
        if not self._slot_fees or self._slot_fees[-1][0] != record.slot:
            self._slot_fees.append((record.slot, None, {}))
        slot, block_min, per_account = self._slot_fees[-1]
        block_min = price if block_min is None else min(block_min, price)
        for key, writable in zip(record.keys.keys, record.keys.writable):
            if writable:
                per_account[key] = min(per_account.get(key, price), price)
        self._slot_fees[-1] = (slot, block_min, per_account)

    def recent_prioritization_fees(self, accounts: Sequence[Pubkey] = ()) -> list[tuple[int, int]]:
        """[(slot, fee)] for the last 150 slots, as getRecentPrioritizationFees reports them."""
        self.sync()
        by_slot = {slot: (block_min, per) for slot, block_min, per in self._slot_fees}
        out = []
        for slot in range(max(self.config.start_slot, self.slot - _FEE_HISTORY_SLOTS + 1), self.slot + 1):
            block_min, per = by_slot.get(slot, (None, {}))
            if accounts:
                fee = max((per.get(a, 0) for a in accounts), default=0)
            else:
                fee = block_min or 0
            out.append((slot, fee))
        return out

    def recent_cu_prices(self) -> list[int]:
        """CU prices of the recent blocks' cheapest transactions (for priority-level estimates)."""
        return [block_min for _, block_min, _ in self._slot_fees if block_min]

    # ----- status ----------------------------------------------------------------------

    def in_status_cache(self, record: TxRecord) -> bool:
        """Whether a validator's status cache still holds this status: every slot not rooted
        yet plus the last ``status_cache_roots`` rooted ones (older: only the ledger)."""
        root = self.slot - self.config.finalize_depth
        return record.slot > root - self.status_cache_roots

    def commitment_of(self, record: TxRecord) -> str:
        depth = self.slot - record.slot
        if depth >= self.config.finalize_depth:
            return "finalized"
        if depth >= self.config.confirm_depth:
            return "confirmed"
        return "processed"

    # ----- faucet ----------------------------------------------------------------------

    def transfer_from(self, payer: Keypair, to: Pubkey, lamports: int) -> ExecResult:
        """A real system transfer signed by ``payer`` through the normal execution path."""
        blockhash, _ = self.latest_blockhash()
        ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
        msg = MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash)
        return self.execute(VersionedTransaction(msg, [payer]))


def _fee(tx: VersionedTransaction) -> int:
    return fee_for_message(tx.message)


def sign_partial(tx: VersionedTransaction, keypair: Keypair) -> VersionedTransaction:
    """Fill ``keypair``'s signature slot in a partially signed transaction, keeping the others.

    The Jupiter-compatible swap transactions carry the pool authority's signature already;
    this is how a client adds its own (works for single-signer transactions too).
    """
    msg = tx.message
    signers = list(msg.account_keys)[: msg.header.num_required_signatures]
    sigs = list(tx.signatures)
    sigs[signers.index(keypair.pubkey())] = keypair.sign_message(to_bytes_versioned(msg))
    return VersionedTransaction.populate(msg, sigs)


__all__ = ["Chain", "ExecResult", "SimResult", "TokenBalance", "TxRecord", "sign_partial"]
