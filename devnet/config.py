"""Devnet configuration: clock, limits and the seed state (mints, pools, wallets).

Embedded defaults give a ready-to-use chain (mainnet mint addresses, deep pools at
realistic prices); every amount is an integer in atomic units.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator


class MintSpec(BaseModel):
    symbol: str
    address: str
    decimals: int = Field(ge=0, le=18)


class PoolSpec(BaseModel):
    """A constant-product pool; ``reserve_a`` / ``reserve_b`` are atomic units of ``a`` / ``b``."""

    a: str
    b: str
    reserve_a: int = Field(gt=0, le=2**64 - 1)
    reserve_b: int = Field(gt=0, le=2**64 - 1)
    fee_bps: int = Field(default=25, ge=0, lt=10_000)
    label: str = "Tradewire CPMM"


class WalletSpec(BaseModel):
    """A funded wallet: ``secret`` (base58 64-byte keypair) or ``pubkey`` (fund only), or neither
    (a keypair is derived deterministically from ``name``)."""

    name: str
    secret: str | None = None
    pubkey: str | None = None
    lamports: int = Field(default=0, ge=0, le=2**64 - 1)
    tokens: dict[str, int] = Field(default_factory=dict)  # symbol or mint address -> atomic units


SOL, USDC, USDT, JUP, BONK = 10**9, 10**6, 10**6, 10**6, 10**5

DEFAULT_MINTS = [
    MintSpec(symbol="SOL", address="So11111111111111111111111111111111111111112", decimals=9),
    MintSpec(symbol="USDC", address="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", decimals=6),
    MintSpec(symbol="USDT", address="Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", decimals=6),
    MintSpec(symbol="JUP", address="JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", decimals=6),
    MintSpec(symbol="BONK", address="DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", decimals=5),
]

DEFAULT_POOLS = [
    # ~150 USDC per SOL, ~30M USD depth
    PoolSpec(a="SOL", b="USDC", reserve_a=100_000 * SOL, reserve_b=15_000_000 * USDC, fee_bps=25),
    PoolSpec(a="SOL", b="USDT", reserve_a=40_000 * SOL, reserve_b=6_000_000 * USDT, fee_bps=25),
    PoolSpec(a="USDC", b="USDT", reserve_a=20_000_000 * USDC, reserve_b=20_000_000 * USDT, fee_bps=1),
    # ~0.80 USDC per JUP
    PoolSpec(a="JUP", b="USDC", reserve_a=10_000_000 * JUP, reserve_b=8_000_000 * USDC, fee_bps=30),
    # ~187.5 JUP per SOL
    PoolSpec(a="SOL", b="JUP", reserve_a=20_000 * SOL, reserve_b=3_750_000 * JUP, fee_bps=30),
    # ~0.00002 USDC per BONK
    PoolSpec(a="BONK", b="USDC", reserve_a=250_000_000_000 * BONK, reserve_b=5_000_000 * USDC, fee_bps=30),
]

DEFAULT_WALLETS = [
    WalletSpec(
        name="trader",
        lamports=1_000 * SOL,
        tokens={"USDC": 1_000_000 * USDC, "USDT": 100_000 * USDT, "JUP": 100_000 * JUP, "BONK": 1_000_000_000 * BONK},
    ),
    WalletSpec(name="whale", lamports=100_000 * SOL, tokens={"USDC": 50_000_000 * USDC}),
]


class DevnetConfig(BaseModel):
    """Everything ``Devnet`` needs; defaults mirror mainnet timing and limits."""

    slot_ms: int = Field(default=400, gt=0, description="wall-clock milliseconds per slot (one block per slot)")
    blockhash_valid_blocks: int = Field(default=150, gt=0, description="lastValidBlockHeight = height + this")
    confirm_depth: int = Field(default=1, ge=0, description="slots until a landed tx reads 'confirmed'")
    finalize_depth: int = Field(default=32, ge=0, description="slots until a landed tx reads 'finalized'")
    start_slot: int = Field(default=300_000_000, ge=0)
    start_block_height: int = Field(default=280_000_000, ge=0)
    seed: str = Field(default="tradewire-devnet", description="derives the pool/mint/faucet keypairs")
    mints: list[MintSpec] = Field(default_factory=lambda: list(DEFAULT_MINTS))
    pools: list[PoolSpec] = Field(default_factory=lambda: list(DEFAULT_POOLS))
    wallets: list[WalletSpec] = Field(default_factory=lambda: list(DEFAULT_WALLETS))
    airdrop_max_lamports: int = Field(default=1_000_000 * SOL, gt=0)
    jito_min_tip_lamports: int = Field(default=1_000, ge=0)
    jito_max_bundle_txs: int = Field(default=5, gt=0)
    #: CU price floors (micro-lamports) used by Jupiter's priorityLevel estimates.
    priority_levels: dict[str, int] = Field(
        default_factory=lambda: {"medium": 10_000, "high": 50_000, "veryHigh": 200_000}
    )
    intermediate_tokens: list[str] = Field(default_factory=lambda: ["SOL", "USDC", "USDT"])
    default_compute_unit_limit: int = Field(default=1_400_000, gt=0, description="swap CU limit when not dynamic")

    @field_validator("mints")
    @classmethod
    def _unique_mints(cls, mints: list[MintSpec]) -> list[MintSpec]:
        symbols = [m.symbol for m in mints]
        if len(set(symbols)) != len(symbols):
            raise ValueError("mint symbols must be unique")
        return mints

    @model_validator(mode="after")
    def _pools_reference_mints(self) -> DevnetConfig:
        known = {m.symbol for m in self.mints} | {m.address for m in self.mints}
        for pool in self.pools:
            for side in (pool.a, pool.b):
                if side not in known:
                    raise ValueError(f"pool {pool.a}/{pool.b} references unknown mint {side!r}")
            if pool.a == pool.b:
                raise ValueError("a pool needs two different mints")
        if self.confirm_depth > self.finalize_depth:
            raise ValueError("confirm_depth must not exceed finalize_depth")
        return self
