"""SPL Token / Associated Token Account instruction builders and account layouts.

solders ships the account layouts (``Mint``, ``TokenAccount``) but no instruction
builders, so the few instructions the devnet needs are encoded here from the programs'
documented layouts (one tag byte, then little-endian fields).
"""

from __future__ import annotations

import struct

from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState

from .constants import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    MINT_LEN,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_ACCOUNT_LEN,
    TOKEN_PROGRAM_ID,
    WSOL_MINT,
)

# Token program instruction tags (spl-token TokenInstruction enum order).
_TRANSFER = 3
_MINT_TO = 7
_CLOSE_ACCOUNT = 9
_TRANSFER_CHECKED = 12
_SYNC_NATIVE = 17
_INITIALIZE_ACCOUNT3 = 18
_INITIALIZE_MINT2 = 20
# Associated token account program: 0 = Create, 1 = CreateIdempotent.
_ATA_CREATE_IDEMPOTENT = 1

TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)


def _meta(pubkey: Pubkey, signer: bool = False, writable: bool = False) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=signer, is_writable=writable)


def initialize_mint2(
    mint: Pubkey,
    decimals: int,
    mint_authority: Pubkey,
    freeze_authority: Pubkey | None = None,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """InitializeMint2: tag 20, u8 decimals, 32-byte authority, COption<Pubkey> freeze."""
    freeze = b"\x01" + bytes(freeze_authority) if freeze_authority else b"\x00" + bytes(32)
    data = bytes([_INITIALIZE_MINT2, decimals]) + bytes(mint_authority) + freeze
    return Instruction(program_id, data, [_meta(mint, writable=True)])


def initialize_account3(
    account: Pubkey, mint: Pubkey, owner: Pubkey, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """InitializeAccount3: tag 18, 32-byte owner; accounts [account, mint]."""
    data = bytes([_INITIALIZE_ACCOUNT3]) + bytes(owner)
    return Instruction(program_id, data, [_meta(account, writable=True), _meta(mint)])


def mint_to(
    mint: Pubkey, destination: Pubkey, authority: Pubkey, amount: int, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """MintTo: tag 7, u64 amount; accounts [mint, destination, authority(signer)]."""
    data = struct.pack("<BQ", _MINT_TO, amount)
    return Instruction(
        program_id,
        data,
        [_meta(mint, writable=True), _meta(destination, writable=True), _meta(authority, signer=True)],
    )


def transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    owner: Pubkey,
    amount: int,
    decimals: int,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """TransferChecked: tag 12, u64 amount, u8 decimals; accounts [src, mint, dst, owner(signer)]."""
    data = struct.pack("<BQB", _TRANSFER_CHECKED, amount, decimals)
    return Instruction(
        program_id,
        data,
        [
            _meta(source, writable=True),
            _meta(mint),
            _meta(destination, writable=True),
            _meta(owner, signer=True),
        ],
    )


def transfer(
    source: Pubkey, destination: Pubkey, owner: Pubkey, amount: int, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """Transfer (unchecked): tag 3, u64 amount; accounts [src, dst, owner(signer)]."""
    data = struct.pack("<BQ", _TRANSFER, amount)
    return Instruction(
        program_id,
        data,
        [_meta(source, writable=True), _meta(destination, writable=True), _meta(owner, signer=True)],
    )


def sync_native(account: Pubkey, program_id: Pubkey = TOKEN_PROGRAM_ID) -> Instruction:
    """SyncNative: tag 17; makes a wSOL account's token amount match its lamports."""
    return Instruction(program_id, bytes([_SYNC_NATIVE]), [_meta(account, writable=True)])


def close_account(
    account: Pubkey, destination: Pubkey, owner: Pubkey, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """CloseAccount: tag 9; for wSOL this is the unwrap (all lamports go to destination)."""
    return Instruction(
        program_id,
        bytes([_CLOSE_ACCOUNT]),
        [_meta(account, writable=True), _meta(destination, writable=True), _meta(owner, signer=True)],
    )


def create_associated_token_account_idempotent(
    payer: Pubkey, owner: Pubkey, mint: Pubkey, token_program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """ATA CreateIdempotent (data [1]): creates owner's ATA for mint unless it already exists."""
    ata = get_associated_token_address(owner, mint, token_program_id)
    return Instruction(
        ASSOCIATED_TOKEN_PROGRAM_ID,
        bytes([_ATA_CREATE_IDEMPOTENT]),
        [
            _meta(payer, signer=True, writable=True),
            _meta(ata, writable=True),
            _meta(owner),
            _meta(mint),
            _meta(SYSTEM_PROGRAM_ID),
            _meta(token_program_id),
        ],
    )


def ata(owner: Pubkey, mint: Pubkey, token_program_id: Pubkey = TOKEN_PROGRAM_ID) -> Pubkey:
    """The associated token account address of (owner, mint)."""
    return get_associated_token_address(owner, mint, token_program_id)


# ----- account layouts (used for seeding via set_account and for parsing) -----


def mint_account(
    decimals: int, supply: int, mint_authority: Pubkey | None, lamports: int, freeze_authority: Pubkey | None = None
) -> Account:
    """A rent-exempt, initialized Mint account owned by the Token program."""
    data = bytes(Mint(mint_authority, supply, decimals, True, freeze_authority))
    assert len(data) == MINT_LEN
    return Account(lamports=lamports, data=data, owner=TOKEN_PROGRAM_ID, executable=False)


def token_account(mint: Pubkey, owner: Pubkey, amount: int, rent_exempt_lamports: int) -> Account:
    """An initialized token account; wSOL accounts are native (lamports = rent + amount)."""
    native = mint == WSOL_MINT
    state = TokenAccount(
        mint,
        owner,
        amount,
        None,
        TokenAccountState.Initialized,
        rent_exempt_lamports if native else None,
        0,
        None,
    )
    data = bytes(state)
    assert len(data) == TOKEN_ACCOUNT_LEN
    lamports = rent_exempt_lamports + (amount if native else 0)
    return Account(lamports=lamports, data=data, owner=TOKEN_PROGRAM_ID, executable=False)


def parse_token_account(account: Account | None) -> TokenAccount | None:
    """The TokenAccount state if ``account`` is an initialized SPL token account, else None."""
    if account is None or account.owner not in TOKEN_PROGRAMS or len(account.data) < TOKEN_ACCOUNT_LEN:
        return None
    if len(account.data) == MINT_LEN:
        return None
    try:
        state = TokenAccount.from_bytes(bytes(account.data[:TOKEN_ACCOUNT_LEN]))
    except Exception:  # noqa: BLE001 - not a token account layout
        return None
    if state.state == TokenAccountState.Uninitialized:
        return None
    return state


def parse_mint(account: Account | None) -> Mint | None:
    """The Mint state if ``account`` is an initialized SPL mint, else None."""
    if account is None or account.owner not in TOKEN_PROGRAMS or len(account.data) < MINT_LEN:
        return None
    if len(account.data) != MINT_LEN and account.owner == TOKEN_PROGRAM_ID:
        return None
    try:
        state = Mint.from_bytes(bytes(account.data[:MINT_LEN]))
    except Exception:  # noqa: BLE001 - not a mint layout
        return None
    return state if state.is_initialized else None
