"""Seeding: mints at their mainnet addresses, pools whose reserves are real SPL token
accounts, funded wallets, and the faucet used by requestAirdrop and ``fund``.

State is written with ``set_account`` using the real Mint / token-account layouts, so
everything afterwards (transfers, balances, RPC reads) runs through the real SPL Token
program. Keypairs (pool authority, mint authority, faucet, named wallets) are derived from
``config.seed`` so a restarted devnet has the same addresses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import base58
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from .chain import Chain
from .config import DevnetConfig, WalletSpec
from .constants import JITO_TIP_ACCOUNTS, MINT_LEN, SYSTEM_PROGRAM_ID, TOKEN_ACCOUNT_LEN, TOKEN_PROGRAM_ID, U64_MAX, WSOL_MINT
from .pools import Reserves
from .spl_token import ata, mint_account, parse_mint, parse_token_account, token_account

FAUCET_LAMPORTS = 10**18


def derive_keypair(seed: str, name: str) -> Keypair:
    """A deterministic keypair for a named devnet role."""
    return Keypair.from_seed(hashlib.sha256(f"{seed}:{name}".encode()).digest())


@dataclass(frozen=True)
class MintInfo:
    symbol: str
    address: Pubkey
    decimals: int


@dataclass(frozen=True)
class Pool:
    """A constant-product pool; its reserves are token accounts owned by the pool authority."""

    amm_key: Pubkey
    label: str
    mint_a: MintInfo
    mint_b: MintInfo
    vault_a: Pubkey
    vault_b: Pubkey
    fee_bps: int

    def has(self, mint: Pubkey) -> bool:
        return mint in (self.mint_a.address, self.mint_b.address)

    def other(self, mint: Pubkey) -> MintInfo:
        return self.mint_b if mint == self.mint_a.address else self.mint_a

    def vaults(self, input_mint: Pubkey) -> tuple[Pubkey, Pubkey]:
        """(input-side vault, output-side vault) for a swap starting with ``input_mint``."""
        return (self.vault_a, self.vault_b) if input_mint == self.mint_a.address else (self.vault_b, self.vault_a)


@dataclass(frozen=True)
class Wallet:
    name: str
    pubkey: Pubkey
    keypair: Keypair | None


class Market:
    """The seeded world: mints, pools, wallets, and the keys that control them."""

    def __init__(self, chain: Chain, config: DevnetConfig) -> None:
        self.chain = chain
        self.config = config
        self.pool_authority = derive_keypair(config.seed, "pool-authority")
        self.mint_authority = derive_keypair(config.seed, "mint-authority")
        self.faucet = derive_keypair(config.seed, "faucet")
        self.mints: dict[Pubkey, MintInfo] = {}
        self.by_symbol: dict[str, MintInfo] = {}
        self.pools: list[Pool] = []
        self.wallets: dict[str, Wallet] = {}
        self._seed()

    # ----- lookups ---------------------------------------------------------------------

    def mint(self, ref: str | Pubkey) -> MintInfo | None:
        """A mint by symbol or address."""
        if isinstance(ref, Pubkey):
            return self.mints.get(ref)
        if ref in self.by_symbol:
            return self.by_symbol[ref]
        try:
            return self.mints.get(Pubkey.from_string(ref))
        except ValueError:
            return None

    def pool_by_key(self, amm_key: Pubkey) -> Pool | None:
        return next((p for p in self.pools if p.amm_key == amm_key), None)

    def pools_between(self, a: Pubkey, b: Pubkey) -> list[Pool]:
        return [p for p in self.pools if p.has(a) and p.has(b)]

    def vault_amount(self, vault: Pubkey) -> int:
        state = parse_token_account(self.chain.get_account(vault))
        return state.amount if state else 0

    def reserves(self, pool: Pool, input_mint: Pubkey) -> Reserves:
        """Current on-chain reserves of ``pool`` oriented for a swap from ``input_mint``."""
        v_in, v_out = pool.vaults(input_mint)
        return Reserves(self.vault_amount(v_in), self.vault_amount(v_out), pool.fee_bps)

    # ----- seeding ---------------------------------------------------------------------

    def _seed(self) -> None:
        chain = self.chain
        chain.set_account(self.faucet.pubkey(), Account(FAUCET_LAMPORTS, b"", SYSTEM_PROGRAM_ID))
        for tip in JITO_TIP_ACCOUNTS:  # they exist (and are rent-exempt) on mainnet, so small tips work
            chain.set_account(Pubkey.from_string(tip), Account(chain.rent_exempt(0), b"", SYSTEM_PROGRAM_ID))
        for spec in self.config.mints:
            address = Pubkey.from_string(spec.address)
            info = MintInfo(spec.symbol, address, spec.decimals)
            self.mints[address] = info
            self.by_symbol[spec.symbol] = info
            # wSOL has no mint authority on mainnet; the others are ours so supply stays honest.
            authority = None if address == WSOL_MINT else self.mint_authority.pubkey()
            chain.set_account(address, mint_account(spec.decimals, 0, authority, chain.rent_exempt(MINT_LEN)))
        authority = self.pool_authority.pubkey()
        for spec in self.config.pools:
            a = self.mint(spec.a)
            b = self.mint(spec.b)
            assert a is not None and b is not None  # validated by DevnetConfig
            name = f"{a.symbol}-{b.symbol}"
            pool = Pool(
                amm_key=Pubkey.create_with_seed(authority, f"amm:{name}"[:32], SYSTEM_PROGRAM_ID),
                label=spec.label,
                mint_a=a,
                mint_b=b,
                vault_a=Pubkey.create_with_seed(authority, f"vault:{name}:a"[:32], TOKEN_PROGRAM_ID),
                vault_b=Pubkey.create_with_seed(authority, f"vault:{name}:b"[:32], TOKEN_PROGRAM_ID),
                fee_bps=spec.fee_bps,
            )
            self._credit_token(pool.vault_a, a.address, authority, spec.reserve_a)
            self._credit_token(pool.vault_b, b.address, authority, spec.reserve_b)
            self.pools.append(pool)
        for wallet in self.config.wallets:
            self.add_wallet(wallet)

    def add_wallet(self, spec: WalletSpec) -> Wallet:
        """Register and fund a wallet from its spec."""
        keypair: Keypair | None = None
        if spec.secret:
            keypair = Keypair.from_bytes(base58.b58decode(spec.secret))
            pubkey = keypair.pubkey()
        elif spec.pubkey:
            pubkey = Pubkey.from_string(spec.pubkey)
        else:
            keypair = derive_keypair(self.config.seed, f"wallet:{spec.name}")
            pubkey = keypair.pubkey()
        wallet = Wallet(spec.name, pubkey, keypair)
        self.wallets[spec.name] = wallet
        self.fund(pubkey, lamports=spec.lamports, tokens=spec.tokens)
        return wallet

    # ----- funding ---------------------------------------------------------------------

    def fund(self, owner: Pubkey, lamports: int = 0, tokens: dict[str, int] | None = None) -> dict[str, int]:
        """Give ``owner`` lamports and tokens (into its associated token accounts).

        Tokens are minted (mint supply grows); wSOL is wrapped (its ATA holds the lamports).
        Returns the resulting balances by symbol ("SOL" = native lamports).
        """
        if lamports < 0:
            raise ValueError("lamports must be >= 0")
        if lamports:
            acct = self.chain.get_account(owner)
            if acct is None:
                acct = Account(0, b"", SYSTEM_PROGRAM_ID)
            if acct.lamports + lamports > U64_MAX:
                raise ValueError("lamports overflow")
            self.chain.set_account(
                owner, Account(acct.lamports + lamports, bytes(acct.data), acct.owner, acct.executable, acct.rent_epoch)
            )
        result = {"SOL": self.chain.balance(owner)}
        for ref, amount in (tokens or {}).items():
            info = self.mint(ref)
            if info is None:
                raise KeyError(f"unknown mint {ref!r}")
            if amount < 0:
                raise ValueError(f"amount for {ref} must be >= 0")
            account = ata(owner, info.address)
            self._credit_token(account, info.address, owner, amount)
            result[info.symbol] = self.vault_amount(account)
        return result

    def _credit_token(self, account: Pubkey, mint: Pubkey, owner: Pubkey, amount: int) -> None:
        chain = self.chain
        rent = chain.rent_exempt(TOKEN_ACCOUNT_LEN)
        existing = parse_token_account(chain.get_account(account))
        if existing is not None and (existing.mint != mint or existing.owner != owner):
            raise ValueError(f"{account} is a token account of another mint/owner")
        current = existing.amount if existing else 0
        if current + amount > U64_MAX:
            raise ValueError("token amount overflow")
        chain.set_account(account, token_account(mint, owner, current + amount, rent))
        if mint != WSOL_MINT:
            mint_acct = chain.get_account(mint)
            state = parse_mint(mint_acct)
            assert state is not None and mint_acct is not None
            chain.set_account(
                mint,
                mint_account(state.decimals, state.supply + amount, state.mint_authority, mint_acct.lamports),
            )
