"""The swap guard: a tiny on-chain (sBPF) program that enforces a swap's minimum fill.

Why it exists: a devnet swap is plain SPL ``TransferChecked`` legs with amounts fixed
when the transaction is built, and plain transfers cannot check a minimum. The guard
instruction runs before the legs, reads the pool reserve token accounts as they are at
execution time and fails with custom program error 6001 (0x1771, Jupiter's
``SlippageToleranceExceeded``) unless every reserve is inside the bounds the builder
computed (``pools.guard_bounds``): a box of reserve states in which the constant-product
fill is still at or above the quote's ``otherAmountThreshold``. Being a real program, the
failure is ordinary on-chain failure: the whole transaction rolls back, the fee is paid,
and RPC / getTransaction report ``{"InstructionError": [i, {"Custom": 6001}]}``.

No SBF toolchain is needed: the program is ~40 hand-assembled instructions wrapped in a
minimal ELF (``.text`` + ``.shstrtab``, no relocations, no syscalls) built at import.

Instruction: accounts = N distinct SPL token accounts (read-only);
data = N × (u64 min_amount, u64 max_amount), little endian. Errors: 6001 when an amount
is out of bounds, InvalidInstructionData when the data length is not 16·N,
InvalidAccountData for a duplicate or non-token account.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from .constants import SLIPPAGE_ERROR_CODE

GUARD_PROGRAM_ID = Pubkey.from_string("SwapGuard1111111111111111111111111111111111")

# Serialized-input layout (aligned loader ABI) per non-duplicate account:
# 8 header bytes, key 32, owner 32, lamports 8, data_len 8, data, 10 KiB realloc room,
# pad to 8, rent_epoch 8.
_OFF_OWNER = 40
_OFF_DATA_LEN = 80
_OFF_DATA = 88
_REALLOC_ROOM = 10_240
_TOKEN_AMOUNT_OFFSET = 64
_TOKEN_ACCOUNT_LEN = 165
_INVALID_INSTRUCTION_DATA = 3  # builtin ProgramError codes are (n << 32)
_INVALID_ACCOUNT_DATA = 4


class _Asm:
    """A two-pass assembler for the handful of eBPF opcodes the guard needs."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.items)

    def op(self, opcode: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.items.append((opcode, dst, src, off, imm))

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (opcode, dst, src, off, imm) in enumerate(self.items):
            if isinstance(off, str):
                off = self.labels[off] - (pc + 1)
            out += struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)
        return bytes(out)


# opcodes (eBPF / sBPF v0)
_LDXB, _LDXDW = 0x71, 0x79
_MOV_IMM, _MOV_REG = 0xB7, 0xBF
_ADD_IMM, _ADD_REG = 0x07, 0x0F
_AND_IMM, _LSH_IMM = 0x57, 0x67
_JA, _JNE_IMM, _JNE_REG = 0x05, 0x55, 0x5D
_JGE_REG, _JGT_REG, _JLT_REG, _JLT_IMM = 0x3D, 0x2D, 0xAD, 0xA5
_EXIT = 0x95


def _skip_account(a: _Asm, cursor: int, data_len: int) -> None:
    """cursor += 88 + data_len + 10240, rounded up to 8, + 8 (rent_epoch)."""
    a.op(_ADD_REG, cursor, data_len)
    a.op(_ADD_IMM, cursor, imm=_OFF_DATA + _REALLOC_ROOM + 7)
    a.op(_AND_IMM, cursor, imm=-8)
    a.op(_ADD_IMM, cursor, imm=8)


def _program_text() -> bytes:
    a = _Asm()
    # r9 = input, r2 = account count, r3 = cursor, r4 = index
    a.op(_MOV_REG, 9, 1)
    a.op(_LDXDW, 2, 9, 0)
    a.op(_MOV_REG, 3, 9)
    a.op(_ADD_IMM, 3, imm=8)
    a.op(_MOV_IMM, 4, imm=0)
    # pass 1: walk the accounts to find the instruction data
    a.label("walk")
    a.op(_JGE_REG, 4, 2, "walked")
    a.op(_LDXB, 5, 3, 0)
    a.op(_JNE_IMM, 5, off="bad_account", imm=0xFF)  # duplicates are refused
    a.op(_LDXDW, 6, 3, _OFF_DATA_LEN)
    _skip_account(a, 3, 6)
    a.op(_ADD_IMM, 4, imm=1)
    a.op(_JA, off="walk")
    a.label("walked")
    a.op(_LDXDW, 7, 3, 0)  # r7 = instruction data length
    a.op(_MOV_REG, 8, 3)
    a.op(_ADD_IMM, 8, imm=8)  # r8 = instruction data
    a.op(_MOV_REG, 5, 2)
    a.op(_LSH_IMM, 5, imm=4)
    a.op(_JNE_REG, 7, 5, "bad_data")  # need 16 bytes per account
    # pass 2: check every token amount against [min, max]
    a.op(_MOV_REG, 3, 9)
    a.op(_ADD_IMM, 3, imm=8)
    a.op(_MOV_IMM, 4, imm=0)
    a.label("check")
    a.op(_JGE_REG, 4, 2, "ok")
    a.op(_LDXDW, 6, 3, _OFF_DATA_LEN)
    a.op(_JLT_IMM, 6, off="bad_account", imm=_TOKEN_ACCOUNT_LEN)
    a.op(_LDXDW, 0, 3, _OFF_DATA + _TOKEN_AMOUNT_OFFSET)
    a.op(_LDXDW, 5, 8, 0)
    a.op(_JLT_REG, 0, 5, "slippage")
    a.op(_LDXDW, 5, 8, 8)
    a.op(_JGT_REG, 0, 5, "slippage")
    a.op(_ADD_IMM, 8, imm=16)
    _skip_account(a, 3, 6)
    a.op(_ADD_IMM, 4, imm=1)
    a.op(_JA, off="check")
    a.label("ok")
    a.op(_MOV_IMM, 0, imm=0)
    a.op(_EXIT)
    a.label("slippage")
    a.op(_MOV_IMM, 0, imm=SLIPPAGE_ERROR_CODE)
    a.op(_EXIT)
    a.label("bad_data")
    a.op(_MOV_IMM, 0, imm=_INVALID_INSTRUCTION_DATA)
    a.op(_LSH_IMM, 0, imm=32)
    a.op(_EXIT)
    a.label("bad_account")
    a.op(_MOV_IMM, 0, imm=_INVALID_ACCOUNT_DATA)
    a.op(_LSH_IMM, 0, imm=32)
    a.op(_EXIT)
    return a.assemble()


def _elf(text: bytes) -> bytes:
    """A minimal ET_DYN / EM_BPF ELF64 with one .text section (sh_addr == file offset)."""
    shstr = b"\0.text\0.shstrtab\0"
    text_off = 64
    shstr_off = text_off + len(text)
    sh_off = (shstr_off + len(shstr) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, LE, v1, SysV ABI
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, 247, 1, text_off, 0, sh_off, 0, 64, 56, 0, 64, 3, 2
    )
    body = bytearray(header + text + shstr)
    body += bytes(sh_off - len(body))

    def section(name: int, kind: int, flags: int, addr: int, off: int, size: int, align: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, kind, flags, addr, off, size, 0, 0, align, 0)

    body += section(0, 0, 0, 0, 0, 0, 0)
    body += section(1, 1, 0x6, text_off, text_off, len(text), 8)  # PROGBITS, ALLOC|EXECINSTR
    body += section(7, 3, 0, 0, shstr_off, len(shstr), 1)  # STRTAB
    return bytes(body)


GUARD_PROGRAM_ELF: bytes = _elf(_program_text())


def guard_instruction(bounds: Sequence[tuple[Pubkey, int, int]]) -> Instruction:
    """Instruction asserting ``min <= amount(account) <= max`` for each (account, min, max)."""
    data = b"".join(struct.pack("<QQ", lo, hi) for _, lo, hi in bounds)
    metas = [AccountMeta(acct, is_signer=False, is_writable=False) for acct, _, _ in bounds]
    return Instruction(GUARD_PROGRAM_ID, data, metas)
