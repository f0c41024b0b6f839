"""The internal form of a validated trade and of its outcome (integer atomic units only)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tradewire.core.market import Mint
from tradewire.v1 import trade_pb2

BASE_FEE_LAMPORTS_PER_SIGNATURE = 5_000
ATA_RENT_LAMPORTS = 2_039_280
DEFAULT_COMPUTE_UNIT_LIMIT = 200_000


@dataclass(frozen=True)
class MevParams:
    strategy: int  # trade_pb2.MevStrategy
    compute_unit_price_micro_lamports: int = 0
    compute_unit_limit: int = 0  # 0: sized by the router
    max_priority_fee_lamports: int = 0  # 0: no cap
    jito_tip_lamports: int = 0

    @property
    def uses_jito(self) -> bool:
        return self.strategy in (trade_pb2.MEV_STRATEGY_JITO_BUNDLE, trade_pb2.MEV_STRATEGY_JITO_DONT_FRONT)


_MODE_NAMES = {trade_pb2.TRADING_MODE_PAPER: "PAPER", trade_pb2.TRADING_MODE_LIVE: "LIVE"}


def mode_name(mode: int) -> str | None:
    """"PAPER" or "LIVE", as permissions and rate limits name a mode; None when unset."""
    return _MODE_NAMES.get(mode)


@dataclass(frozen=True)
class Order:
    principal_id: str
    request_id: str
    mode: int  # trade_pb2.TradingMode
    input_mint: Mint
    output_mint: Mint
    exact_out: bool
    amount_atomic: int  # of the input mint (exact in) or output mint (exact out)
    slippage_bps: int
    mev: MevParams
    max_price_impact_bps: int
    deadline_unix_ns: int | None
    client_metadata: dict[str, str]
    webhook_url: str
    request: trade_pb2.TradeRequest = field(repr=False, compare=False)

    @property
    def mode_name(self) -> str:
        return "LIVE" if self.mode == trade_pb2.TRADING_MODE_LIVE else "PAPER"


# Fingerprints of the canonical form below carry this prefix; those stored before it hash
# the request's bytes as they came (same_payload still reads them).
_CANONICAL_FINGERPRINT = "v2:"


def fingerprint(order: Order) -> str:
    """Identity of a trade's payload for de-duplication: one order, one fingerprint.

    Hashes the request as this gateway reads it, so two spellings of one order match: an
    amount written "0.5" or "0.50", a default written out or left unset (swap mode, MEV
    strategy), a field this version does not know. Any other field that differs counts.
    """
    canonical = trade_pb2.TradeRequest()
    canonical.CopyFrom(order.request)
    canonical.DiscardUnknownFields()
    canonical.amount = str(order.amount_atomic)
    canonical.swap_mode = trade_pb2.SWAP_MODE_EXACT_OUT if order.exact_out else trade_pb2.SWAP_MODE_EXACT_IN
    canonical.mev_protection.strategy = order.mev.strategy  # (present from here on: unset == empty)
    return _CANONICAL_FINGERPRINT + hashlib.sha256(canonical.SerializeToString(deterministic=True)).hexdigest()


def same_payload(stored: str, current: str, request: trade_pb2.TradeRequest) -> bool:
    """Whether a stored fingerprint is this payload's (``current`` is ``fingerprint`` of it)."""
    if stored.startswith(_CANONICAL_FINGERPRINT):
        return stored == current
    return stored == hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


@dataclass(frozen=True)
class Quote:
    in_amount: int
    out_amount: int
    other_amount_threshold: int  # min out (exact in) or max in (exact out)
    price_impact_pct: str  # decimal string, as Jupiter reports it
    route: str = ""
    context_slot: int = 0


@dataclass(frozen=True)
class FeeBreakdown:
    base_fee_lamports: int = 0
    priority_fee_lamports: int = 0
    jito_tip_lamports: int = 0
    ata_rent_lamports: int = 0
    rent_refunded_lamports: int = 0  # (not a cost: not in the total)

    @property
    def total_lamports(self) -> int:
        return self.base_fee_lamports + self.priority_fee_lamports + self.jito_tip_lamports + self.ata_rent_lamports

    def to_proto(self) -> trade_pb2.Fees:
        return trade_pb2.Fees(
            base_fee_lamports=self.base_fee_lamports,
            priority_fee_lamports=self.priority_fee_lamports,
            jito_tip_lamports=self.jito_tip_lamports,
            ata_rent_lamports=self.ata_rent_lamports,
            total_lamports=self.total_lamports,
            rent_refunded_lamports=self.rent_refunded_lamports,
        )


def priority_fee_lamports(mev: MevParams, compute_unit_limit: int) -> int:
    """ceil(CU price in micro-lamports × CU limit / 1e6), capped by the request's maximum."""
    fee = -(-mev.compute_unit_price_micro_lamports * compute_unit_limit // 1_000_000)
    return min(fee, mev.max_priority_fee_lamports) if mev.max_priority_fee_lamports else fee


@dataclass(frozen=True)
class Fill:
    """What an executor reports for a filled (or failed-on-chain) trade."""

    quote: Quote
    amount_in: int
    amount_out: int
    fees: FeeBreakdown
    signature: str = ""
    slot: int = 0
