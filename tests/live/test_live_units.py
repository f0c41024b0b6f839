"""Unit tests of the LIVE building blocks: breaker, wallet, journal, marker insertion, kill switch,
the mints the LIVE limits name."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from tradewire.core.config import ConfigError, LiveConfig, MarketConfig, load_settings
from tradewire.core.executors.live.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from tradewire.core.executors.live.executor import _with_dont_front
from tradewire.core.executors.live.jito_client import DONT_FRONT_ACCOUNT, TIP_ACCOUNTS
from tradewire.core.executors.live.outcomes import chain_error, swap_simulation_err
from tradewire.core.executors.live.safety import SafetyChecks, kill_switch_state
from tradewire.core.market import Market
from tradewire.core.executors.live.wallet import Wallet, WalletError, load_wallet
from tradewire.core.store.live_orders import (
    DROPPED, EXPIRED, LANDED, PENDING, PREPARED, VOID, AlreadyRecorded, LiveOrderStore,
)
from tradewire.v1 import trade_pb2 as pb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- breaker ------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_fails_fast_with_retry_after() -> None:
    clock = Clock()
    breaker = CircuitBreaker("rpc", failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == OPEN and breaker.opened_count == 1
    clock.now += 4
    with pytest.raises(CircuitOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after_s == pytest.approx(6)


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker("quote", failure_threshold=2, cooldown_s=1, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == CLOSED


def test_breaker_half_open_allows_one_probe_then_closes_or_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker("jito", failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.state == HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second call while the probe is out
    breaker.record_failure()  # probe failed: open again for a full cool-down
    assert breaker.state == OPEN and breaker.opened_count == 2
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == CLOSED
    breaker.before_call()


# -- wallet -------------------------------------------------------------------------------


def test_wallet_loads_from_a_keypair_file_and_from_the_environment(tmp_path: Path) -> None:
    keypair = Keypair()
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(bytes(keypair))))
    path.chmod(0o600)
    assert load_wallet(path, "UNUSED", {}).pubkey == keypair.pubkey()
    assert load_wallet(None, "MY_KEY", {"MY_KEY": str(keypair)}).pubkey == keypair.pubkey()


def test_wallet_never_shows_its_secret(tmp_path: Path, caplog) -> None:
    keypair = Keypair()
    secret_b58 = str(keypair)
    wallet = Wallet(keypair)
    assert secret_b58 not in repr(wallet) and secret_b58 not in str(wallet)
    with pytest.raises(TypeError):
        pickle.dumps(wallet)
    # A malformed file holding most of the secret: the error names the file, never the content.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(list(bytes(keypair))[:63]))
    with pytest.raises(WalletError) as err:
        load_wallet(bad, "UNUSED", {})
    assert str(list(bytes(keypair))[:10])[1:-1] not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(WalletError) as err:
        load_wallet(None, "MY_KEY", {"MY_KEY": secret_b58[:-3]})
    assert secret_b58[:20] not in str(err.value)
    with pytest.raises(WalletError, match="MY_KEY"):
        load_wallet(None, "MY_KEY", {})
    assert secret_b58 not in caplog.text


def test_live_config_refuses_a_tradewire_prefixed_wallet_variable_name() -> None:
    # TRADEWIRE_* variables are configuration overrides; the secret must not be parsed as one.
    assert LiveConfig().wallet_env == "LIVE_WALLET_KEYPAIR"
    with pytest.raises(ValueError):
        LiveConfig(wallet_env="not a name")
    with pytest.raises(ValueError, match="TRADEWIRE_"):
        LiveConfig(wallet_env="TRADEWIRE_KEYPAIR")


# -- the journal of sent transactions --------------------------------------------------------


def _prepare(store: LiveOrderStore, signature: str, request_id: str = "r1", **kw):
    args = dict(signature=signature, principal="alice", request_id=request_id, route="rpc", tx=b"tx-" + signature.encode(),
                bundle=(), bundle_id=None, last_valid_block_height=100, request=b"req", quote={"in_amount": 1})
    args.update(kw)
    return store.prepare(**args)


def test_journal_allows_one_possibly_live_transaction_per_request(tmp_path: Path) -> None:
    store = LiveOrderStore(tmp_path / "live.db")
    _prepare(store, "sig1")
    with pytest.raises(AlreadyRecorded):
        _prepare(store, "sig2")  # a second signature for the same request, while the first is prepared
    assert store.void("sig1")
    _prepare(store, "sig2")  # the first never left: a new one may be signed
    assert store.mark_pending("sig2")
    assert not store.void("sig2")  # pending may be on the network: it can no longer be voided
    with pytest.raises(AlreadyRecorded):
        _prepare(store, "sig3")
    assert store.finalize("sig2", LANDED, {"status": 9})
    with pytest.raises(AlreadyRecorded):
        _prepare(store, "sig3")  # landed: the request is done for good
    assert store.for_request("alice", "r1").signature == "sig2"
    assert [o.signature for o in store.in_state(VOID)] == ["sig1"]


def test_journal_state_machine_and_start_up_voiding(tmp_path: Path) -> None:
    store = LiveOrderStore(tmp_path / "live.db")
    _prepare(store, "a", "r-a")
    _prepare(store, "b", "r-b", route="jito", bundle=(b"lead", b"swap"), bundle_id="bid")
    store.mark_pending("b")
    assert not store.mark_pending("b")
    assert not store.finalize("a", EXPIRED, {})  # only pending rows become final
    assert store.get("b").wires == (b"lead", b"swap")
    # A restart voids prepared rows of the previous run only.
    later = LiveOrderStore(tmp_path / "live.db")
    assert later.void_prepared(created_before_ns=0) == 0
    assert later.void_prepared(created_before_ns=2**62) == 1
    assert later.get("a").state == VOID and later.get("b").state == PENDING
    assert later.finalize("b", DROPPED, {"status": 11})
    assert later.claim_booking("b") and not later.claim_booking("b")
    later.booked("b", -1500)
    assert later.realized_since(0) == -1500
    assert [o.signature for o in later.final_since(0)] == ["b"]
    with pytest.raises(ValueError):
        later.finalize("b", PREPARED, {})


def test_a_claimed_booking_notes_where_its_pnl_starts_and_is_listed_until_booked(tmp_path: Path) -> None:
    store = LiveOrderStore(tmp_path / "live.db")
    _prepare(store, "s")
    store.mark_pending("s")
    store.finalize("s", LANDED, {"status": 6})
    assert store.claim_booking("s", realized_before=-700) and not store.claim_booking("s", realized_before=0)
    assert [(o.signature, o.booked, o.realized_before) for o in store.booking_interrupted()] == [("s", 1, -700)]
    store.booked("s", -20)
    assert store.booking_interrupted() == [] and store.get("s").booked == 2


def test_a_journal_from_before_realized_before_gains_the_column(tmp_path: Path) -> None:
    old = LiveOrderStore(tmp_path / "live.db")
    _prepare(old, "s")
    old._db.execute("ALTER TABLE live_orders DROP COLUMN realized_before")  # the earlier schema
    old.close()
    store = LiveOrderStore(tmp_path / "live.db")
    assert store.get("s").realized_before is None
    assert store.claim_booking("s", realized_before=5) and store.get("s").realized_before == 5


# -- MEV protection: the jitodontfront marker --------------------------------------------------


def test_dont_front_marker_is_added_to_the_tip_transfer_and_lookup_indices_shift() -> None:
    payer = Keypair().pubkey()
    table_key = Pubkey.new_unique()
    looked_up = [Pubkey.new_unique() for _ in range(3)]
    tip = Pubkey.from_string(TIP_ACCOUNTS[2])
    program = Pubkey.new_unique()
    ixs = [
        Instruction(program, b"\x01", [AccountMeta(payer, True, True), AccountMeta(looked_up[0], False, True),
                                       AccountMeta(looked_up[1], False, False)]),
        transfer(TransferParams(from_pubkey=payer, to_pubkey=tip, lamports=5_000)),
    ]
    msg = MessageV0.try_compile(payer, ixs, [AddressLookupTableAccount(table_key, looked_up)], Hash.new_unique())

    def resolved(m: MessageV0) -> list[tuple[Pubkey, list[Pubkey]]]:
        lookup = m.address_table_lookups[0]
        keys = list(m.account_keys) + [looked_up[i] for i in bytes(lookup.writable_indexes)] + \
            [looked_up[i] for i in bytes(lookup.readonly_indexes)]
        return [(keys[ix.program_id_index], [keys[a] for a in bytes(ix.accounts)]) for ix in m.instructions]

    marked = _with_dont_front(msg)
    assert marked is not None
    assert list(marked.account_keys)[-1] == DONT_FRONT_ACCOUNT
    assert marked.header.num_readonly_unsigned_accounts == msg.header.num_readonly_unsigned_accounts + 1
    before, after = resolved(msg), resolved(marked)
    assert after[0] == before[0]  # the looked-up accounts still resolve to the same keys
    assert after[1] == (before[1][0], before[1][1] + [DONT_FRONT_ACCOUNT])
    assert not marked.is_maybe_writable(len(marked.account_keys) - 1)
    assert _with_dont_front(marked) is marked  # idempotent
    no_tip = MessageV0.try_compile(payer, ixs[:1], [], Hash.new_unique())
    assert _with_dont_front(no_tip) is None


def test_kill_switch_file_tightens_never_loosens_and_fails_safe(tmp_path: Path) -> None:
    path = tmp_path / "kill"
    config = LiveConfig(kill_switch="off", kill_switch_file=path)
    assert kill_switch_state(config) == "off"
    path.write_text("reduce_only\n")
    assert kill_switch_state(config) == "reduce_only"
    assert kill_switch_state(LiveConfig(kill_switch="halt", kill_switch_file=path)) == "halt"  # the strictest
    path.write_text("anything else")
    assert kill_switch_state(config) == "halt"
    path.unlink()
    assert kill_switch_state(LiveConfig(kill_switch="halt")) == "halt"


# -- every mint a LIVE limit names is one of the market's -------------------------------------------

SOL_ADDRESS = "So11111111111111111111111111111111111111112"
USDC_ADDRESS = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.mark.parametrize("variable, value, said", [
    ("TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS", '{"sol": "1"}', "live.mint_exposure_caps (from "
     "TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS__*): 'sol' is not a configured mint (did you mean 'SOL'?)"),
    ("TRADEWIRE_LIVE__REDUCE_ONLY_OUTPUTS", '["usdc"]', "live.reduce_only_outputs (from "
     "TRADEWIRE_LIVE__REDUCE_ONLY_OUTPUTS): 'usdc' is not a configured mint (did you mean 'USDC'?)"),
    ("TRADEWIRE_LIVE__ALLOWED_MINTS", '["SOL", "So11111111111111111111111111111111111111113"]',
     "live.allowed_mints (from TRADEWIRE_LIVE__ALLOWED_MINTS): 'So11111111111111111111111111111111111111113' is "
     "not a configured mint"),
])
def test_a_live_limit_naming_no_configured_mint_is_a_configuration_error(variable: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env={variable: value})
    assert said in str(refused.value)
    assert "(BONK, JUP, SOL, USDC, USDT)" in str(refused.value)  # what it may name instead


def test_live_limits_name_mints_by_symbol_or_by_address(tmp_path: Path) -> None:
    settings = load_settings(env={"TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS": json.dumps({"SOL": "1", USDC_ADDRESS: "2"}),
                                  "TRADEWIRE_LIVE__ALLOWED_MINTS": json.dumps(["JUP", SOL_ADDRESS, USDC_ADDRESS])})
    assert settings.live.mint_exposure_caps == {"SOL": Decimal("1"), USDC_ADDRESS: Decimal("2")}
    # Built without Settings (which checked them), the checks refuse such a name too.
    orders = LiveOrderStore(tmp_path / "live.db")
    with pytest.raises(ConfigError, match="live.mint_exposure_caps: 'sol' is not a configured mint"):
        SafetyChecks(LiveConfig(mint_exposure_caps={"sol": Decimal("1")}), Market(MarketConfig()), orders)


def test_the_gateway_does_not_start_with_a_live_limit_on_no_configured_mint(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env["TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS"] = '{"sol": "1"}'
    done = subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in out, out
    said = [line for line in done.stderr.splitlines() if line.startswith("tradewire:")]
    assert len(said) == 1, out
    assert "live.mint_exposure_caps (from TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS__*): 'sol'" in out, out


# -- Jupiter's simulationError ----------------------------------------------------------------

@pytest.mark.parametrize("simulation_error, reason", [
    # The shape Jupiter documents: the node's words carry what failed, whatever the errorCode.
    ({"errorCode": "TRANSACTION_ERROR",
      "error": "Error processing Instruction 3: custom program error: 0x1771"}, "SLIPPAGE_EXCEEDED"),
    ({"errorCode": "TRANSACTION_ERROR", "error": "Insufficient funds for fee"}, "INSUFFICIENT_FUNDS"),
    ({"errorCode": "TRANSACTION_ERROR", "error": "Attempt to debit an account but found no record of a prior "
                                                 "credit."}, "INSUFFICIENT_FUNDS"),
    ({"errorCode": "TRANSACTION_ERROR", "error": "Error processing Instruction 2: custom program error: 0x1"},
     "INSUFFICIENT_FUNDS"),  # (SPL Token's InsufficientFunds)
    ({"errorCode": "SLIPPAGE_TOLERANCE_EXCEEDED", "error": ""}, "SLIPPAGE_EXCEEDED"),
    ({"errorCode": "TRANSACTION_ERROR", "error": "Program failed to complete"}, "RISK_LIMIT"),
    # A deployment that adds the RPC's own err: that is what counts.
    ({"errorCode": "TRANSACTION_ERROR", "error": "", "err": {"InstructionError": [1, {"Custom": 6001}]}},
     "SLIPPAGE_EXCEEDED"),
])
def test_a_swap_refused_at_build_is_told_by_what_its_simulation_says(simulation_error, reason) -> None:
    order = SimpleNamespace(slippage_bps=50)  # (all of the order a refusal's words use)
    status, error = chain_error(order, swap_simulation_err(simulation_error), where="when the swap was built",
                                charged=False, sent=False)
    assert (status, error.reason) == (pb.TRADE_STATUS_REJECTED, reason), error.message
