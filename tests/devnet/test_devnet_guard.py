"""The on-chain swap guard program, executed by LiteSVM's real sBPF VM."""

from __future__ import annotations

import struct

import pytest
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tradewire.devnet.chain import Chain
from tradewire.devnet.config import DevnetConfig
from tradewire.devnet.guard_program import GUARD_PROGRAM_ID, guard_instruction
from tradewire.devnet.seed import Market
from tradewire.devnet.spl_token import ata
from tradewire.devnet.txutil import err_json

U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def world() -> tuple[Chain, Market, Keypair, Pubkey, Pubkey]:
    config = DevnetConfig(pools=[], wallets=[])
    chain = Chain(config)
    market = Market(chain, config)
    payer = Keypair()
    market.fund(payer.pubkey(), lamports=10**9, tokens={"USDC": 1_000, "USDT": 5_000})
    usdc = ata(payer.pubkey(), market.mint("USDC").address)
    usdt = ata(payer.pubkey(), market.mint("USDT").address)
    return chain, market, payer, usdc, usdt


def run(chain: Chain, payer: Keypair, ix: Instruction) -> object:
    blockhash, _ = chain.latest_blockhash()
    tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash), [payer])
    return err_json(chain.simulate(tx).err)


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ([(1_000, 1_000), (0, U64_MAX)], None),
        ([(0, U64_MAX), (5_000, 5_000)], None),
        ([(1_001, U64_MAX), (0, U64_MAX)], {"InstructionError": [0, {"Custom": 6001}]}),
        ([(0, 999), (0, U64_MAX)], {"InstructionError": [0, {"Custom": 6001}]}),
        ([(0, U64_MAX), (5_001, U64_MAX)], {"InstructionError": [0, {"Custom": 6001}]}),
        ([(0, U64_MAX), (0, 4_999)], {"InstructionError": [0, {"Custom": 6001}]}),
    ],
)
def test_guard_checks_every_account_against_its_bounds(world, bounds, expected) -> None:
    chain, _, payer, usdc, usdt = world
    ix = guard_instruction([(usdc, *bounds[0]), (usdt, *bounds[1])])
    assert run(chain, payer, ix) == expected


def test_guard_rejects_malformed_input(world) -> None:
    chain, market, payer, usdc, _ = world
    short = Instruction(GUARD_PROGRAM_ID, struct.pack("<Q", 0), guard_instruction([(usdc, 0, 1)]).accounts)
    assert run(chain, payer, short) == {"InstructionError": [0, "InvalidInstructionData"]}
    mint = market.mint("USDC").address  # 82 bytes: not a token account
    assert run(chain, payer, guard_instruction([(mint, 0, U64_MAX)])) == {"InstructionError": [0, "InvalidAccountData"]}
    dup = guard_instruction([(usdc, 0, U64_MAX), (usdc, 0, U64_MAX)])
    assert run(chain, payer, dup) == {"InstructionError": [0, "InvalidAccountData"]}


def test_guard_failure_logs_the_jupiter_error_number(world) -> None:
    chain, _, payer, usdc, _ = world
    blockhash, _ = chain.latest_blockhash()
    ix = guard_instruction([(usdc, 2_000, U64_MAX)])
    tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash), [payer])
    result = chain.execute(tx)
    assert result.record is not None  # landed: the fee is paid
    assert result.record.fee == 5_000
    assert any("custom program error: 0x1771" in line for line in result.record.logs)
