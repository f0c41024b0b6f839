"""Well-known Solana addresses and limits the devnet mirrors from mainnet.

Kept in one place so every module (RPC, Jupiter, Jito, seeding) agrees on them.
"""

from __future__ import annotations

from solders.pubkey import Pubkey

SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
COMPUTE_BUDGET_PROGRAM_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
WSOL_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")

#: The eight mainnet Jito tip accounts (getTipAccounts returns these).
JITO_TIP_ACCOUNTS: tuple[str, ...] = (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
)
JITO_TIP_PUBKEYS: frozenset[Pubkey] = frozenset(Pubkey.from_string(a) for a in JITO_TIP_ACCOUNTS)

LAMPORTS_PER_SIGNATURE = 5_000
MAX_COMPUTE_UNIT_LIMIT = 1_400_000
DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT = 200_000
MICRO_LAMPORTS_PER_LAMPORT = 1_000_000
U64_MAX = 2**64 - 1
TOKEN_ACCOUNT_LEN = 165
MINT_LEN = 82
#: Jupiter's program error for "slippage tolerance exceeded" (0x1771); our guard program returns it.
SLIPPAGE_ERROR_CODE = 6001
#: Agave's blockhash lifetime in blocks (MAX_PROCESSING_AGE) and the share of it that
#: simulation keeps back for forwarding (MAX_TRANSACTION_FORWARDING_DELAY, CPU sigverify).
MAX_PROCESSING_AGE = 150
MAX_TRANSACTION_FORWARDING_DELAY = 6
