"""The hand-encoded SPL Token / ATA instructions, run by the real programs inside LiteSVM."""

from __future__ import annotations

from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import CreateAccountParams, TransferParams, create_account, transfer
from solders.transaction import VersionedTransaction

from tradewire.devnet import spl_token as st
from tradewire.devnet.chain import Chain
from tradewire.devnet.config import DevnetConfig
from tradewire.devnet.constants import TOKEN_PROGRAM_ID, WSOL_MINT
from tradewire.devnet.seed import Market


def execute(chain: Chain, payer: Keypair, ixs: list, signers: list[Keypair]) -> None:
    blockhash, _ = chain.latest_blockhash()
    tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), ixs, [], blockhash), signers)
    result = chain.execute(tx)
    assert result.err is None, (result.err, result.record.logs if result.record else None)


def amount(chain: Chain, account) -> int:
    state = st.parse_token_account(chain.get_account(account))
    assert state is not None
    return state.amount


def test_mint_lifecycle_with_the_builders() -> None:
    config = DevnetConfig(pools=[], wallets=[])
    chain = Chain(config)
    market = Market(chain, config)
    payer, mint, bob, holder = Keypair(), Keypair(), Keypair(), Keypair()
    market.fund(payer.pubkey(), lamports=10**10)
    create_mint = create_account(CreateAccountParams(
        from_pubkey=payer.pubkey(), to_pubkey=mint.pubkey(), lamports=chain.rent_exempt(82), space=82,
        owner=TOKEN_PROGRAM_ID))
    execute(chain, payer, [create_mint, st.initialize_mint2(mint.pubkey(), 6, payer.pubkey())], [payer, mint])
    state = st.parse_mint(chain.get_account(mint.pubkey()))
    assert state is not None and state.decimals == 6 and state.mint_authority == payer.pubkey()

    payer_ata = st.ata(payer.pubkey(), mint.pubkey())
    bob_ata = st.ata(bob.pubkey(), mint.pubkey())
    execute(chain, payer, [
        st.create_associated_token_account_idempotent(payer.pubkey(), payer.pubkey(), mint.pubkey()),
        st.create_associated_token_account_idempotent(payer.pubkey(), payer.pubkey(), mint.pubkey()),  # idempotent
        st.mint_to(mint.pubkey(), payer_ata, payer.pubkey(), 1_000_000),
        st.create_associated_token_account_idempotent(payer.pubkey(), bob.pubkey(), mint.pubkey()),
        st.transfer_checked(payer_ata, mint.pubkey(), bob_ata, payer.pubkey(), 250_000, 6),
        st.transfer(payer_ata, bob_ata, payer.pubkey(), 50_000),
    ], [payer])
    assert amount(chain, payer_ata) == 700_000 and amount(chain, bob_ata) == 300_000
    assert st.parse_mint(chain.get_account(mint.pubkey())).supply == 1_000_000

    # a plain (non-ATA) account via InitializeAccount3, then closed again
    create_holder = create_account(CreateAccountParams(
        from_pubkey=payer.pubkey(), to_pubkey=holder.pubkey(), lamports=chain.rent_exempt(165), space=165,
        owner=TOKEN_PROGRAM_ID))
    execute(chain, payer, [
        create_holder,
        st.initialize_account3(holder.pubkey(), mint.pubkey(), payer.pubkey()),
        st.close_account(holder.pubkey(), payer.pubkey(), payer.pubkey()),
    ], [payer, holder])
    assert chain.get_account(holder.pubkey()) is None

    # wrong decimals are refused by TransferChecked (MintDecimalsMismatch = custom error 18)
    blockhash, _ = chain.latest_blockhash()
    bad = st.transfer_checked(payer_ata, mint.pubkey(), bob_ata, payer.pubkey(), 1, 9)
    tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [bad], [], blockhash), [payer])
    assert "Custom(18)" in str(chain.execute(tx).err)


def test_wrapped_sol_sync_native_and_unwrap() -> None:
    config = DevnetConfig(pools=[], wallets=[])
    chain = Chain(config)
    market = Market(chain, config)
    user = Keypair()
    market.fund(user.pubkey(), lamports=5 * 10**9)
    wsol = st.ata(user.pubkey(), WSOL_MINT)
    execute(chain, user, [
        st.create_associated_token_account_idempotent(user.pubkey(), user.pubkey(), WSOL_MINT),
        transfer(TransferParams(from_pubkey=user.pubkey(), to_pubkey=wsol, lamports=10**9)),
        st.sync_native(wsol),
    ], [user])
    assert amount(chain, wsol) == 10**9
    execute(chain, user, [st.close_account(wsol, user.pubkey(), user.pubkey())], [user])
    assert chain.get_account(wsol) is None
    assert chain.balance(user.pubkey()) == 5 * 10**9 - 2 * 5_000
