"""LIVE through a real gateway process, on every protocol, against the devnet over HTTP.

The devnet (and its fault layer) runs in a thread of the test process; the gateway is a
separate `tradewire serve` process with LIVE enabled and a keypair file. The last tests
SIGKILL a gateway right after it sent a transaction and start it again on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from live_support import BONK, LAMPORTS, SOL, USDC, DevnetHost, fund, move_pool, wallet_tx_count
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction
from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.redis_server import RedisServer
from support.trading import equals, metric, stage_on

from tradewire.core.audit import read_journal
from tradewire.devnet import DevnetConfig
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

# A blockhash lives 30 s here, not 3 s: a gateway restarted on a loaded machine can take longer than
# that, and a test that wants a blockhash expired moves the chain past it itself.
DEVNET = DevnetConfig(slot_ms=20, finalize_depth=4, blockhash_valid_blocks=1500)
ENV = {"TRADEWIRE_LIMITS__LIVE_BURST": "10000", "TRADEWIRE_LIMITS__LIVE_REQUESTS_PER_S": "10000"}
_ids = iter(range(10**6))


@pytest.fixture(scope="module")
def host():
    h = DevnetHost(DEVNET).start_thread()
    yield h
    h.stop_thread()


def new_wallet(host: DevnetHost, usdc: int = 5_000) -> Keypair:
    return host.call(lambda: fund(host.devnet, 20 * LAMPORTS, {"USDC": usdc * 10**6}))


def start_gateway(workdir: Path, host: DevnetHost, wallet: Keypair, extra_live: str = "",
                  env: dict[str, str] | None = None) -> GatewayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    wallet_path = workdir / "wallet.json"
    wallet_path.write_text(json.dumps(list(bytes(wallet))))
    wallet_path.chmod(0o600)
    live = (f'[live]\nenabled = true\nrpc_url = "{host.url}"\njupiter_url = "{host.url}"\njito_url = "{host.url}"\n'
            f'wallet_path = "{wallet_path}"\npoll_interval_s = 0.02\nrebroadcast_interval_s = 0.1\n'
            f'retry_backoff_s = 0.01\nhealth_refresh_s = 0.5\nkill_switch_file = "{workdir / "kill"}"\n'
            + extra_live)
    return GatewayProcess(workdir, extra_config=live, env={**ENV, **(env or {})}).start()


@pytest.fixture(scope="module")
def gateway(host, tmp_path_factory):
    wallet = new_wallet(host)
    process = start_gateway(tmp_path_factory.mktemp("live-gateway"), host, wallet)
    process.wallet = wallet
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(params=PROTOCOLS)
async def client(request, gateway):
    c = make_client(request.param, gateway)
    yield c
    await c.close()


@pytest.fixture(autouse=True)
def clean_rules(host):
    host.rules.reset()
    yield
    host.rules.reset()


def live_trade(request_id: str, input_mint: str = USDC, output_mint: str = SOL, amount: str = "5", **kw) -> pb.TradeRequest:
    fields = dict(request_id=request_id, mode=pb.TRADING_MODE_LIVE, input_mint=input_mint, output_mint=output_mint,
                  amount=amount, slippage_bps=50)
    fields.update(kw)
    return pb.TradeRequest(**fields)


def rid(prefix: str, client=None) -> str:
    return f"{prefix}-{client.name if client else 'x'}-{next(_ids)}"


async def chain_tx(host: DevnetHost, signature: str) -> dict:
    async with httpx.AsyncClient(base_url=host.url, timeout=10) as http:
        body = (await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": [
            signature, {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}]})).json()
    return body["result"]


def delta(meta: dict, owner, mint: str) -> int:
    def total(entries):
        return sum(int(e["uiTokenAmount"]["amount"]) for e in entries if e["owner"] == str(owner) and e["mint"] == mint)

    return total(meta["postTokenBalances"]) - total(meta["preTokenBalances"])


def atomic(units: str, decimals: int) -> int:
    return int(Decimal(units).scaleb(decimals))


async def poll(probe, timeout: float = 15.0, interval: float = 0.02):
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {timeout}s (last {value!r})")
        await asyncio.sleep(interval)


# -- the journey, on every protocol ---------------------------------------------------------------


async def test_live_trade_journey_matches_the_chain(client, gateway, host) -> None:
    key = gateway.key("trader")
    request_id = rid("journey", client)
    result, _ = await client.unary("ExecuteTrade", live_trade(request_id, amount="7.5"), key)

    assert result.status == pb.TRADE_STATUS_FILLED and result.mode == pb.TRADING_MODE_LIVE
    tx = await chain_tx(host, result.signature)
    meta = tx["meta"]
    assert meta["err"] is None and result.slot == tx["slot"]
    wallet = gateway.wallet.pubkey()
    assert atomic(result.amount_in, 6) == -delta(meta, wallet, USDC) == 7_500_000
    fees = result.fees
    assert fees.base_fee_lamports + fees.priority_fee_lamports == meta["fee"]
    assert fees.total_lamports == meta["fee"] + fees.jito_tip_lamports + fees.ata_rent_lamports
    sol_change = meta["postBalances"][0] - meta["preBalances"][0]
    assert atomic(result.amount_out, 9) == sol_change + fees.total_lamports

    fetched, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    assert fetched == result
    events = await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id), key)
    stages = [e.stage for e in events if e.kind == pb.STATUS_KIND_TRANSITION]
    assert stages[-4:] == [pb.TRADE_STATUS_SIMULATED, pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_CONFIRMED,
                           pb.TRADE_STATUS_FILLED]
    assert result.signature in next(e.message for e in events if e.stage == pb.TRADE_STATUS_SUBMITTED)

    positions, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_LIVE), key)
    by_mint = {p.mint: p for p in positions.positions}
    lamports = host.call(lambda: host.devnet.chain.balance(wallet))
    assert atomic(by_mint[SOL].amount, 9) == lamports  # the LIVE book is the wallet, to the lamport
    health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest())
    live = next(c for c in health.components if c.name == "live_executor")
    assert live.status == spb.SERVING_STATUS_SERVING


async def test_live_refusals_and_on_chain_failures_keep_their_codes(client, gateway, host) -> None:
    key = gateway.key("trader")
    kill = gateway.workdir / "kill"
    kill.write_text("halt")
    try:
        with pytest.raises(RpcFailure) as refused:
            await client.unary("ExecuteTrade", live_trade(rid("halted", client)), key)
    finally:
        kill.unlink()
    assert refused.value.code == "FAILED_PRECONDITION" and refused.value.reason == "RISK_LIMIT"
    assert "KILL_SWITCH" in refused.value.message
    if client.name == "http":
        assert refused.value.http_status == 400

    with pytest.raises(RpcFailure) as paper_key:
        await client.unary("ExecuteTrade", live_trade(rid("perm", client)), gateway.key("alice"))
    assert paper_key.value.code == "PERMISSION_DENIED"

    request_id = rid("moved", client)
    host.rules.before_send = lambda: move_pool(host.devnet, USDC, BONK, 600_000 * 10**6)
    with pytest.raises(RpcFailure) as aborted:
        await client.unary("ExecuteTrade", live_trade(request_id, output_mint=BONK, amount="20"), key)
    assert aborted.value.code == "ABORTED" and aborted.value.reason == "SLIPPAGE_EXCEEDED"
    if client.name == "http":
        assert aborted.value.http_status == 409
    failed, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    assert failed.status == pb.TRADE_STATUS_FAILED and failed.signature
    meta = (await chain_tx(host, failed.signature))["meta"]
    assert meta["err"]["InstructionError"][1] == {"Custom": 6001}
    assert failed.fees.total_lamports == meta["fee"] and failed.amount_out == "0"


async def test_circuit_open_refusal_carries_retry_info_on_every_protocol(host, tmp_path) -> None:
    """The executor's CIRCUIT_OPEN error reaches the caller as raised, RetryInfo included
    (not rebuilt from the stored TradeError, which has no retry delay)."""
    process = start_gateway(tmp_path / "breaker", host, new_wallet(host),
                            "breaker_failures = 2\nbreaker_cooldown_s = 60\nretry_attempts = 1\n")
    try:
        key = process.key("trader")
        host.rules.fail_paths["/swap/v1/quote"] = -1
        for protocol in PROTOCOLS:
            client = make_client(protocol, process)
            try:
                for _ in range(3):  # two upstream failures open the quote breaker; then it refuses
                    with pytest.raises(RpcFailure) as caught:
                        await client.unary("ExecuteTrade", live_trade(rid("brk", client)), key)
                    if caught.value.reason == "CIRCUIT_OPEN":
                        break
                refused = caught.value
                assert refused.code == "UNAVAILABLE" and refused.reason == "CIRCUIT_OPEN", (protocol, refused)
                assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 60, (protocol, refused)
            finally:
                await client.close()
    finally:
        host.rules.reset()
        assert process.stop() == 0, process.log_text()[-3000:]


async def test_two_live_replicas_on_one_redis_hold_one_daily_loss_limit(host, tmp_path, redis_server) -> None:
    """The day's realised loss of LIVE trades counts every replica's bookings (one wallet)."""
    shared = redis.Redis.from_url(redis_server.url)
    for stale in shared.scan_iter("tw:live:pnl*"):  # today's count starts from this test
        shared.delete(stale)
    wallet = new_wallet(host)
    replicas = [start_gateway(tmp_path / name, host, wallet, "daily_loss_limit = 0.001\n",
                              {"TRADEWIRE_SHARED__REDIS_URL": redis_server.url}) for name in ("a", "b")]
    on_a, on_b = (make_client("grpc", replica) for replica in replicas)
    key = replicas[0].key("trader")
    try:
        # Buying SOL with USDC realises the fees as a loss: past 0.001 USDC after one trade.
        first, _ = await on_a.unary("ExecuteTrade", live_trade("loss-on-a", amount="1"), key)
        assert first.status == pb.TRADE_STATUS_FILLED
        with pytest.raises(RpcFailure) as stopped:
            await on_b.unary("ExecuteTrade", live_trade("loss-on-b", amount="1"), key)
        assert stopped.value.reason == "RISK_LIMIT" and "DAILY_LOSS" in stopped.value.message
    finally:
        await on_a.close()
        await on_b.close()
        for replica in replicas:
            assert replica.stop() == 0, replica.log_text()[-3000:]


def kill_switch(*args: str, redis_url: str | None = None, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    """`tradewire kill-switch ...` as an operator runs it (auditing to ``data_dir``'s journal
    when the command has no configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    if redis_url:
        env["TRADEWIRE_SHARED__REDIS_URL"] = redis_url
    if data_dir:
        env["TRADEWIRE_STORAGE__DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "kill-switch", *args],
                          capture_output=True, text=True, timeout=30, env=env)


async def test_the_kill_switch_command_engages_a_gateways_switch_file(gateway, tmp_path) -> None:
    config = str(gateway.workdir / "tradewire.toml")
    client = make_client("grpc", gateway)
    try:
        engaged = kill_switch("halt", "--config", config)
        assert engaged.returncode == 0 and engaged.stdout.startswith("halt"), engaged.stderr
        with pytest.raises(RpcFailure) as refused:
            await client.unary("ExecuteTrade", live_trade(rid("cli-halted")), gateway.key("trader"))
        assert refused.value.reason == "RISK_LIMIT" and "KILL_SWITCH" in refused.value.message
    finally:
        released = kill_switch("off", "--config", config)
        await client.close()
    assert released.returncode == 0 and released.stdout.startswith("off"), released.stderr
    assert not (gateway.workdir / "kill").exists()
    audited = gateway.audit_rows("tw_admin", action="kill_switch_set")  # in the gateway's own trail
    assert [(row["detail"], row["store"], row["location"]) for row in audited] == [
        ("halt (was off)", "file", str(gateway.workdir / "kill")), ("off (was halt)", "file", str(gateway.workdir / "kill"))]
    bare = tmp_path / "bare.toml"  # no switch file, no shared store: nothing a running gateway reads
    bare.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    nowhere = kill_switch("halt", "--config", str(bare))
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr
    assert nowhere.stderr.startswith("error: a running gateway reads no kill switch it could be given")
    unwritable = tmp_path / "unwritable.toml"  # a switch file in a folder that is not there
    unwritable.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                          f'[live]\nkill_switch_file = "{tmp_path / "missing" / "kill"}"\n')
    refused = kill_switch("halt", "--config", str(unwritable))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: live.kill_switch_file: cannot write") and refused.stdout == ""


async def test_one_kill_switch_command_halts_every_live_replica_on_one_redis(host, tmp_path) -> None:
    store = RedisServer(tmp_path / "redis").start()  # (its own: the switch is one key for every replica)
    wallet = new_wallet(host)
    env = {"TRADEWIRE_SHARED__REDIS_URL": store.url}
    replicas = [start_gateway(tmp_path / name, host, wallet, env=env) for name in ("a", "b")]
    clients = [make_client(protocol, replica) for protocol, replica in zip(("grpc", "http"), replicas)]
    key = replicas[0].key("trader")
    try:
        operator = tmp_path / "operator"  # where the commands audit
        engaged = kill_switch("halt", redis_url=store.url, data_dir=operator)
        assert engaged.returncode == 0, engaged.stderr
        assert engaged.stdout.strip() == "halt (settings and file: off, shared: halt)"
        for client in clients:
            with pytest.raises(RpcFailure) as refused:
                await client.unary("ExecuteTrade", live_trade(rid("halted-everywhere", client)), key)
            assert refused.value.reason == "RISK_LIMIT" and "KILL_SWITCH" in refused.value.message, refused.value
            live = await live_health(client, key)  # said where operators look
            assert live.status == spb.SERVING_STATUS_NOT_SERVING and "kill switch engaged" in live.message, live
        for replica in replicas:
            assert await metric(replica, "tradewire_live_kill_switch", state="halt") == 1.0
            assert await metric(replica, "tradewire_live_kill_switch", state="off") == 0.0
            assert "LIVE kill switch: halt (was off)" in replica.log_text()
        assert kill_switch(redis_url=store.url, data_dir=operator).stdout.startswith("halt")  # shown, unchanged
        assert kill_switch("reduce-only", redis_url=store.url, data_dir=operator).returncode == 0
        with pytest.raises(RpcFailure) as reduce_only:
            await clients[1].unary("ExecuteTrade", live_trade(rid("buy", clients[1])), key)
        assert "REDUCE_ONLY" in reduce_only.value.message
        live = await live_health(clients[0], key)
        assert live.status == spb.SERVING_STATUS_SERVING and "kill switch reduce-only" in live.message, live
        assert kill_switch("off", redis_url=store.url, data_dir=operator).returncode == 0
        audited = [{**row.symbols, **row.columns} for row in read_journal(operator / "audit.jsonl")]
        assert [(row["action"], row["detail"], row["store"]) for row in audited] == [
            ("kill_switch_set", "halt (was off)", "redis"), ("kill_switch_set", "reduce_only (was halt)", "redis"),
            ("kill_switch_set", "off (was reduce_only)", "redis")]
        assert audited[0]["location"].startswith("127.0.0.1:") and "@" not in audited[0]["location"]
        for client in clients:
            filled, _ = await client.unary("ExecuteTrade", live_trade(rid("resumed", client)), key)
            assert filled.status == pb.TRADE_STATUS_FILLED
            live = await live_health(client, key)
            assert live.status == spb.SERVING_STATUS_SERVING and "kill switch" not in live.message, live
        assert await metric(replicas[0], "tradewire_live_kill_switch", state="off") == 1.0
    finally:
        for client in clients:
            await client.close()
        for replica in replicas:
            assert replica.stop() == 0, replica.log_text()[-3000:]
        store.stop()


async def live_health(client, key: str) -> spb.ComponentHealth:
    health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
    return next(c for c in health.components if c.name == "live_executor")


async def test_two_live_replicas_on_one_redis_count_each_others_trades_in_flight(host, tmp_path, redis_server) -> None:
    """What a trade admitted on one replica may still spend is set aside on the other (one wallet)."""
    wallet = new_wallet(host, usdc=100)
    a, b = (start_gateway(tmp_path / name, host, wallet, env={"TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
                                                              "TRADEWIRE_SHARED__REPLICA_ID": f"live-{name}"})
            for name in ("a", "b"))
    key, in_flight = a.key("trader"), rid("in-flight-on-a")
    on_a, on_b = make_client("grpc", a), make_client("grpc", b)
    try:
        host.rules.drop_sends = 10**9  # lost in flight: A's trade stays SUBMITTED until its blockhash expires
        call = asyncio.create_task(on_a.unary("ExecuteTrade", live_trade(in_flight, amount="60"), key))
        await poll(lambda: equals(stage_on(on_b, key, in_flight), pb.TRADE_STATUS_SUBMITTED))
        with pytest.raises(RpcFailure) as refused:
            await on_b.unary("ExecuteTrade", live_trade(rid("on-b"), amount="60"), key)
        assert refused.value.code == "FAILED_PRECONDITION" and refused.value.reason == "INSUFFICIENT_FUNDS", refused.value
        assert "has 40 USDC once the 60 USDC that trades in flight may spend is set aside" in refused.value.message
        assert host.rules.sends and len(set(host.rules.sends)) == 1  # only A's transaction was sent
        held = redis.Redis.from_url(redis_server.url).hgetall(f"tw:live:held:{wallet.pubkey()}")
        assert [(field.split(b"\x00")[1], value.split(b"\n")[0]) for field, value in held.items()] == \
            [(in_flight.encode(), b"live-a")]  # held in the shared book, by replica A

        host.call(lambda: host.devnet.chain.advance_slots(DEVNET.blockhash_valid_blocks + 2))  # nothing spent
        with contextlib.suppress(RpcFailure):
            await call
        await poll(lambda: equals(stage_on(on_b, key, in_flight), pb.TRADE_STATUS_EXPIRED), timeout=30)
        host.rules.drop_sends = 0
        allowed, _ = await on_b.unary("ExecuteTrade", live_trade(rid("on-b-after"), amount="60"), key)
        assert allowed.status == pb.TRADE_STATUS_FILLED, allowed
    finally:
        host.rules.reset()
        await on_a.close()
        await on_b.close()
        for replica in (a, b):
            assert replica.stop() == 0, replica.log_text()[-3000:]


@pytest.mark.parametrize("case", ["landed", "expired"])
async def test_a_live_trade_sent_by_a_replica_that_died_is_settled_by_another_by_its_signature(
        host, tmp_path, redis_server, case: str) -> None:
    wallet = new_wallet(host)  # 5,000 USDC
    env = {"TRADEWIRE_SHARED__REDIS_URL": redis_server.url, "TRADEWIRE_SHARED__REPLICA_TTL_S": "1.5"}
    a, b = (start_gateway(tmp_path / name, host, wallet, env=env) for name in ("a", "b"))
    key, request_id = a.key("trader"), f"sent-then-died-{case}"
    on_a, on_b = make_client("grpc", a), make_client("grpc", b)
    try:
        booked_before = await live_usdc(on_b, key) or 5_000  # (a first LIVE trade seeds the book from the wallet)
        if case == "landed":
            host.rules.hold_statuses = True  # it lands; replica A never hears about it
        else:
            host.rules.drop_sends = 10**9  # lost in flight
        call = asyncio.create_task(on_a.unary("ExecuteTrade", live_trade(request_id, amount="9"), key))
        await poll(lambda: equals(stage_on(on_b, key, request_id), pb.TRADE_STATUS_SUBMITTED))
        if case == "landed":
            await poll(lambda: host.call(lambda: wallet_tx_count(host.devnet, wallet.pubkey())) == 1)
        a.proc.kill()  # SIGKILL, and it never comes back
        a.proc.wait(10)
        with contextlib.suppress(RpcFailure):
            await call
        host.rules.hold_statuses = False
        host.rules.drop_sends = 0
        if case == "expired":  # the chain moves past the transaction's last valid block height
            host.call(lambda: host.devnet.chain.advance_slots(DEVNET.blockhash_valid_blocks + 2))

        final = pb.TRADE_STATUS_FILLED if case == "landed" else pb.TRADE_STATUS_EXPIRED
        await poll(lambda: equals(stage_on(on_b, key, request_id), final), timeout=30)
        trade, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
        [sent] = set(host.rules.sends)  # one transaction, sent by A (B only re-broadcasts the same bytes)
        signature = str(VersionedTransaction.from_bytes(sent).signatures[0])
        assert trade.signature == signature
        assert "sent by a replica that stopped" in b.log_text()
        txs = host.call(lambda: wallet_tx_count(host.devnet, wallet.pubkey()))
        if case == "expired":
            assert trade.error.reason == "TRADE_EXPIRED" and trade.fees.total_lamports == 0 and txs == 0
            return
        meta = (await chain_tx(host, signature))["meta"]
        assert atomic(trade.amount_in, 6) == -delta(meta, wallet.pubkey(), USDC) == 9_000_000
        again, _ = await on_b.unary("ExecuteTrade", live_trade(request_id, amount="9"), key)  # the replay
        assert again.signature == signature and txs == 1
        assert await live_usdc(on_b, key) == booked_before - 9  # booked once (the signature is its fill id)
    finally:
        host.rules.reset()
        await on_a.close()
        await on_b.close()
        assert b.stop() == 0, b.log_text()[-3000:]


async def live_usdc(client, key: str) -> Decimal | None:
    """The caller's LIVE USDC position (None before its first LIVE trade)."""
    positions, _ = await client.unary("GetPositions", spb.GetPositionsRequest(mode=pb.TRADING_MODE_LIVE), key)
    return next((Decimal(p.amount) for p in positions.positions if p.mint == USDC), None)


# -- kill -9 right after send, then restart ------------------------------------------------------------


@pytest.mark.parametrize("case", ["landed", "lost-then-rebroadcast", "expired"])
async def test_gateway_killed_right_after_send_reconciles_on_restart(host, tmp_path, case: str) -> None:
    wallet = new_wallet(host)
    workdir = tmp_path / "gw"
    first = start_gateway(workdir, host, wallet)
    key = first.key("trader")
    request_id = f"killed-{case}"
    if case == "landed":
        host.rules.hold_statuses = True  # it lands; the gateway never hears about it
    else:
        host.rules.drop_sends = 10**9  # lost in flight
    grpc = make_client("grpc", first)
    call = asyncio.create_task(grpc.unary("ExecuteTrade", live_trade(request_id, amount="9"), key))

    async def submitted():
        try:
            trade, _ = await grpc.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
        except RpcFailure:
            return None
        return trade.status == pb.TRADE_STATUS_SUBMITTED

    await poll(submitted)
    if case == "landed":
        await poll(lambda: host.call(lambda: wallet_tx_count(host.devnet, wallet.pubkey())) == 1)
    first.proc.kill()  # SIGKILL: no shutdown, no flush
    first.proc.wait(10)
    first._log.close()
    with contextlib.suppress(RpcFailure):
        await call
    await grpc.close()
    sent = list(host.rules.sends)
    assert len(set(sent)) == 1  # one signed transaction so far (re-broadcasts are the same bytes)
    host.rules.hold_statuses = False
    host.rules.drop_sends = 0
    if case == "expired":  # the chain moves past the transaction's last valid block height meanwhile
        host.call(lambda: host.devnet.chain.advance_slots(DEVNET.blockhash_valid_blocks + 2))

    second = start_gateway(workdir, host, wallet)  # same data directory
    try:
        clients = [make_client(p, second) for p in PROTOCOLS]
        grpc2 = clients[0]

        async def final():
            trade, _ = await grpc2.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
            return trade if trade.status in (pb.TRADE_STATUS_FILLED, pb.TRADE_STATUS_EXPIRED,
                                             pb.TRADE_STATUS_FAILED) else None

        trade = await poll(final)
        signature = str(VersionedTransaction.from_bytes(sent[0]).signatures[0])
        assert trade.signature == signature
        assert len(set(host.rules.sends)) <= 1 and set(host.rules.sends) <= set(sent)  # never a new signature
        txs = host.call(lambda: wallet_tx_count(host.devnet, wallet.pubkey()))
        if case == "expired":
            assert trade.status == pb.TRADE_STATUS_EXPIRED and trade.error.reason == "TRADE_EXPIRED"
            assert txs == 0 and trade.fees.total_lamports == 0
        else:
            assert trade.status == pb.TRADE_STATUS_FILLED and txs == 1
            meta = (await chain_tx(host, signature))["meta"]
            assert atomic(trade.amount_in, 6) == -delta(meta, wallet.pubkey(), USDC) == 9_000_000
            assert trade.fees.base_fee_lamports + trade.fees.priority_fee_lamports == meta["fee"]
        for c in clients:  # the same final state on every protocol, and a replayable stream
            fetched, _ = await c.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
            assert fetched.status == trade.status and fetched.signature == signature
        events = await grpc2.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id), key)
        assert events[-1].terminal and events[-1].result.status == trade.status
        # Retrying the same request after the restart returns the reconciled outcome, sending nothing.
        if trade.status == pb.TRADE_STATUS_FILLED:
            again, _ = await grpc2.unary("ExecuteTrade", live_trade(request_id, amount="9"), key)
            assert again.signature == signature
        assert host.call(lambda: wallet_tx_count(host.devnet, wallet.pubkey())) == txs
        for c in clients:
            await c.close()
    finally:
        assert second.stop() == 0, second.log_text()[-3000:]
    secret = str(wallet)
    for path in workdir.rglob("*"):
        if path.is_file() and path.name != "wallet.json":
            data = path.read_bytes()
            assert secret.encode() not in data and bytes(wallet)[:32] not in data, path


def test_no_secret_in_the_gateway_log_audit_journal_or_stores(gateway) -> None:
    secret = str(gateway.wallet)
    raw = bytes(gateway.wallet)[:32]
    checked = 0
    for path in gateway.workdir.rglob("*"):
        if path.is_file() and path.name not in ("wallet.json", "tradewire.toml"):
            data = path.read_bytes()
            assert secret.encode() not in data and raw not in data, path
            assert str(list(raw)[:8])[1:-1].encode() not in data, path
            checked += 1
    assert checked >= 3  # log, audit journal, trade store, live journal
    assert "live wallet loaded" in gateway.log_text()


def test_breaker_states_are_in_metrics(gateway) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{gateway.http_url}/metrics", timeout=5).text
    states = {(s.labels["upstream"], s.labels["state"]): s.value
              for family in text_string_to_metric_families(text) if family.name == "tradewire_circuit_breaker_state"
              for s in family.samples}
    upstreams = {upstream for upstream, _ in states}
    assert len(upstreams) >= 2  # quote API and RPC (and the block engine when configured)
    for upstream in upstreams:
        assert states[(upstream, "closed")] == 1 and states[(upstream, "open")] == 0
