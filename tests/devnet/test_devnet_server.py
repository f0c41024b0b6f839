"""Server lifecycle, control endpoints and the ``tradewire devnet`` command."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx
import pytest
from devnet_support import SOL, USDC, Api

from tradewire.devnet import Devnet, DevnetConfig, DevnetServer, main

MAINNET_MINTS = {
    "SOL": SOL,
    "USDC": USDC,
    "USDT": "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
    "JUP": "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "BONK": "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263",
}


async def test_info_lists_the_seeded_world_without_secrets(api: Api) -> None:
    resp = await api.http.get("/devnet/info")
    info = resp.json()
    assert {m["symbol"]: m["address"] for m in info["mints"]} == MAINNET_MINTS
    sol_usdc = next(p for p in info["pools"] if {p["mintA"], p["mintB"]} == {SOL, USDC})
    reserves = {sol_usdc["mintA"]: int(sol_usdc["reserveA"]), sol_usdc["mintB"]: int(sol_usdc["reserveB"])}
    price = reserves[USDC] * 10**9 // reserves[SOL]  # USDC atoms per SOL
    assert 100 * 10**6 < price < 200 * 10**6
    assert reserves[USDC] >= 10_000_000 * 10**6  # tens of millions of USD of depth
    assert info["rpcUrl"] == api.server.rpc_url
    trader = api.server.devnet.wallet("trader")
    assert str(trader) not in resp.text  # the secret key is never served
    assert str(trader.pubkey()) in resp.text


async def test_fund_endpoint_validates_input(api: Api) -> None:
    assert (await api.http.post("/devnet/fund", json={"pubkey": "nope"})).status_code == 400
    bad_mint = await api.http.post("/devnet/fund", json={"pubkey": USDC, "tokens": {"DOGE": 1}})
    assert bad_mint.status_code == 400 and "DOGE" in bad_mint.json()["error"]
    negative = await api.http.post("/devnet/fund", json={"pubkey": USDC, "lamports": -1})
    assert negative.status_code == 400


async def test_servers_bind_free_ports_and_stop_cleanly() -> None:
    config = DevnetConfig(pools=[], wallets=[])
    a, b = DevnetServer(Devnet(config)), DevnetServer(Devnet(config))
    port_a, port_b = await a.start(), await b.start()
    assert port_a != port_b and port_a > 0
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{a.rpc_url}/health")).text == "ok"
        await a.stop()
        await b.stop()
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{a.rpc_url}/health")


def test_cli_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "devnet.json"
    bad.write_text(json.dumps({"slot_ms": 0}))
    assert main(["--config", str(bad)]) == 2
    missing_mint = tmp_path / "pools.json"
    missing_mint.write_text(json.dumps({"pools": [{"a": "SOL", "b": "DOGE", "reserve_a": 1, "reserve_b": 1}]}))
    assert main(["--config", str(missing_mint)]) == 2


async def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    config = tmp_path / "devnet.json"
    config.write_text(json.dumps({"wallets": [], "slot_ms": 50}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from tradewire.devnet import main; sys.exit(main(sys.argv[1:]))",
        "--port", "0", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        started = json.loads(line)
        assert started["event"] == "devnet_started"
        async with httpx.AsyncClient() as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
            assert (await http.post(started["rpc_url"], json=body)).json()["result"] == "ok"
            quote = await http.get(f"{started['jupiter_url']}/swap/v1/quote",
                                   params={"inputMint": SOL, "outputMint": USDC, "amount": "1000"})
            assert quote.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
