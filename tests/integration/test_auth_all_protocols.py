"""Identity and limits, identical on every protocol: the JWT attack list, revoked and expired
API keys, oversized credentials, JWT subjects apart from API-key owners, rate limits with a
usable retry delay, failures limited per peer (the socket's, unless a trusted proxy names
it), and an audit row for every attempt with no secret in it."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest

from support.auth_material import AUDIENCE, ISSUER, b64url, new_material
from support.clients import PROTOCOLS, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import metric
from tradewire.core.auth.api_keys import create_key, revoke_key
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MATERIAL = new_material()


def trade(mode=pb.TRADING_MODE_PAPER) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=f"a-{uuid.uuid4().hex[:12]}", mode=mode, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    jwt_config = {"issuer": ISSUER, "audience": AUDIENCE, "keys": [
        {"kid": "hs", "algorithm": "HS256", "secret": MATERIAL.hs_secret.decode()},
        {"kid": "rs", "algorithm": "RS256", "public_key_pem": MATERIAL.rsa_public_pem},
        {"kid": "ed", "algorithm": "EdDSA", "public_key_pem": MATERIAL.ed_public_pem},
    ]}
    gateway = GatewayProcess(workdir, env={
        "TRADEWIRE_AUTH__JWT": json.dumps(jwt_config),
        "TRADEWIRE_AUTH__API_KEY_DB": str(workdir / "keys.db"),
    })
    SqliteApiKeyStore(workdir / "keys.db").close()  # the database exists before the gateway opens it
    yield gateway.start()
    assert gateway.stop() == 0


def token(kid="hs", alg="HS256", **claims) -> str:
    now = int(time.time())
    times = {"iat": now - 5, "nbf": now - 5, "exp": now + 600}
    return MATERIAL.sign(kid, alg, **{**times, **claims})


def attacks() -> dict[str, tuple[str, str]]:
    """name → (authorization header value, expected reason)."""
    now = int(time.time())
    good = token()
    head, payload, signature = good.split(".")
    tampered_payload = MATERIAL.claims(sub="mallory", scope="read trade:paper trade:live admin",
                                       iat=now - 5, nbf=now - 5, exp=now + 600)
    return {
        "alg-none": ("Bearer " + MATERIAL.forge({"alg": "none", "kid": "hs", "typ": "JWT"},
                                                 MATERIAL.claims(iat=now, nbf=now, exp=now + 600)),
                     "TOKEN_ALGORITHM_REJECTED"),
        "hs256-with-rs256-public-key": ("Bearer " + MATERIAL.forge(
            {"alg": "HS256", "kid": "rs", "typ": "JWT"}, MATERIAL.claims(iat=now, nbf=now, exp=now + 600),
            hmac_key=MATERIAL.rsa_public_pem.encode()), "TOKEN_ALGORITHM_REJECTED"),
        "expired": ("Bearer " + token(exp=now - 3600, iat=now - 7200, nbf=now - 7200), "TOKEN_EXPIRED"),
        "not-yet-valid": ("Bearer " + token(nbf=now + 3600), "TOKEN_NOT_YET_VALID"),
        "wrong-audience": ("Bearer " + token(aud="someone-else"), "TOKEN_AUDIENCE_INVALID"),
        "wrong-issuer": ("Bearer " + token(iss="https://evil.test"), "TOKEN_ISSUER_INVALID"),
        "unknown-kid": ("Bearer " + token(kid="nope"), "TOKEN_KEY_UNKNOWN"),
        "tampered-payload": (f"Bearer {head}.{b64url(json.dumps(tampered_payload).encode())}.{signature}",
                             "AUTH_INVALID"),
        "truncated": ("Bearer " + good[: len(good) - 20], "AUTH_INVALID"),
        "missing-bearer-scheme": (good, "AUTH_INVALID"),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_jwt_attack_list_is_refused_with_its_reason(auth_gateway, protocol):
    client = make_client(protocol, auth_gateway)
    try:
        for name, (header, reason) in attacks().items():
            with pytest.raises(RpcFailure) as caught:
                await client.unary("ExecuteTrade", trade(), None, headers={"authorization": header})
            assert caught.value.code == "UNAUTHENTICATED", name
            assert caught.value.reason == reason, (name, caught.value)
            if caught.value.http_status is not None:
                assert caught.value.http_status == 401
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kid,alg", [("hs", "HS256"), ("rs", "RS256"), ("ed", "EdDSA")])
async def test_valid_jwts_trade_with_their_scopes(auth_gateway, protocol, kid, alg):
    client = make_client(protocol, auth_gateway)
    try:
        result, _ = await client.unary("ExecuteTrade", trade(), None,
                                       headers={"authorization": "Bearer " + token(kid, alg, sub=f"jwt-{protocol}")})
        assert result.status == pb.TRADE_STATUS_FILLED
        with pytest.raises(RpcFailure) as caught:  # scope "read trade:paper" does not reach LIVE
            await client.unary("ExecuteTrade", trade(pb.TRADING_MODE_LIVE), None,
                               headers={"authorization": "Bearer " + token(kid, alg)})
        assert caught.value.code == "PERMISSION_DENIED"
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_revoked_and_expired_api_keys_are_refused(auth_gateway, protocol):
    with SqliteApiKeyStore(auth_gateway.workdir / "keys.db") as store:
        live_key, record = create_key(store, f"owner-{protocol}", "test", ["read", "trade:paper"])
        expired_key, _ = create_key(store, f"old-{protocol}", "test", ["read"], expires_in=timedelta(seconds=60),
                                    clock=lambda: time.time() - 3600)
    client = make_client(protocol, auth_gateway)
    try:
        ok, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), live_key)
        assert not ok.trades
        health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), live_key)
        assert health.caller.owner == f"owner-{protocol}" and health.credentials_refused == ""
        with SqliteApiKeyStore(auth_gateway.workdir / "keys.db") as store:
            revoke_key(store, record.prefix)
        for key, reason in ((live_key, "API_KEY_REVOKED"), (expired_key, "API_KEY_EXPIRED")):
            with pytest.raises(RpcFailure) as caught:
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
            assert caught.value.code == "UNAUTHENTICATED" and caught.value.reason == reason
            # HealthCheck answers anyone, and says why these credentials were not taken
            health, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), key)
            assert not health.HasField("caller") and health.credentials_refused == reason
    finally:
        await client.close()


async def test_every_attempt_is_audited_once_without_secrets(auth_gateway):
    run = uuid.uuid4().hex[:8]
    headers_sent = []
    client = make_client("http", auth_gateway)
    try:
        for i, (name, (header, _)) in enumerate(attacks().items()):
            corr = f"{run}-{i}"
            headers_sent.append(header)
            with pytest.raises(RpcFailure):
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), None,
                                   headers={"authorization": header, "x-correlation-id": corr})
        await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), auth_gateway.key("alice"),
                           headers={"x-correlation-id": f"{run}-ok"})
    finally:
        await client.close()
    journal = auth_gateway.workdir / "data" / "audit.jsonl"

    def rows() -> list[dict]:
        if not journal.exists():
            return []
        out = []
        for line in journal.read_text().splitlines():
            record = json.loads(line)
            if record["table"] == "tw_auth_attempts" and record["columns"].get("correlation_id", "").startswith(run):
                out.append(record)
        return out

    wait_until(lambda: len(rows()) >= len(headers_sent) + 1, what="audit rows")
    found = rows()
    assert len(found) == len(headers_sent) + 1
    assert len({r["event_id"] for r in found}) == len(found)
    outcomes = sorted(r["symbols"]["outcome"] for r in found)
    assert outcomes == ["failure"] * len(headers_sent) + ["success"]
    text = journal.read_text()
    for header in [*headers_sent, auth_gateway.key("alice")]:
        secret = header.removeprefix("Bearer ")
        assert secret not in text
        signature = secret.split(".")[-1]
        assert not signature or signature not in text  # not even a signature
    assert auth_gateway.key("alice")[12:] not in auth_gateway.log_text()


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory):
    gateway = GatewayProcess(tmp_path_factory.mktemp("limited"), env={
        "TRADEWIRE_LIMITS__REQUESTS_PER_S": "20", "TRADEWIRE_LIMITS__BURST": "5",
        "TRADEWIRE_LIMITS__AUTH_FAILURES_PER_S": "0.01", "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "10"})
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_burst_above_the_limit_is_429_with_a_usable_retry_delay(limited_gateway, protocol):
    client = make_client(protocol, limited_gateway)
    key = limited_gateway.key({"grpc": "alice", "connect-json": "bob", "connect-proto": "reader",
                               "grpc-web": "trader", "http": "alice"}[protocol])
    try:
        refused = None
        for _ in range(20):
            try:
                _, headers = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
            except RpcFailure as failure:
                refused = failure
                break
            if protocol == "http":
                assert int(headers["ratelimit-limit"]) == 5 and "ratelimit-remaining" in headers
        assert refused is not None, "the burst was never limited"
        assert refused.code == "RESOURCE_EXHAUSTED" and refused.reason == "RATE_LIMITED"
        assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 1
        # the bucket's state goes with the refusal on every protocol (gRPC: in the trailers)
        assert int(refused.headers["retry-after"]) >= 1, refused.headers
        assert refused.headers["ratelimit-limit"] == "5" and refused.headers["ratelimit-remaining"] == "0"
        if protocol == "http":
            assert refused.http_status == 429
        await asyncio.sleep(refused.retry_after_s)  # the delay under test: waiting it out must suffice
        await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), key)
    finally:
        await client.close()


async def test_failed_authentications_are_limited_per_peer(limited_gateway):
    client = make_client("grpc", limited_gateway)
    try:
        codes = []
        for _ in range(15):  # the default failure burst is 10 per peer address
            try:
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), "tw_nobody00_" + "n" * 40)
            except RpcFailure as failure:
                codes.append(failure.code)
        assert codes[:10] == ["UNAUTHENTICATED"] * 10
        assert codes[10:] == ["RESOURCE_EXHAUSTED"] * 5
    finally:
        await client.close()
    assert await metric(limited_gateway, "tradewire_rate_limited_total", bucket="peer") == 5


async def test_auth_attempt_rows_name_peers_alike_and_no_prefix_for_a_malformed_key(auth_gateway):
    run = uuid.uuid4().hex[:8]
    for protocol in PROTOCOLS:
        client = make_client(protocol, auth_gateway)
        try:
            with pytest.raises(RpcFailure):
                await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), None,
                                   headers={"authorization": "Bearer tw_malformed", "x-correlation-id": f"{run}-{protocol}"})
        finally:
            await client.close()
    journal = auth_gateway.workdir / "data" / "audit.jsonl"

    def rows() -> list[dict]:
        records = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
        return [r for r in records if r["table"] == "tw_auth_attempts"
                and r["columns"].get("correlation_id", "").startswith(run)]

    wait_until(lambda: len(rows()) >= len(PROTOCOLS), what="audit rows")
    found = rows()
    assert {r["columns"]["peer"].rsplit(":", 1)[0] for r in found} == {"127.0.0.1"}, [r["columns"] for r in found]
    assert all("key_prefix" not in r["columns"] and r["symbols"]["reason"] == "AUTH_INVALID" for r in found), found


async def test_a_key_made_with_tradewire_keys_works_on_a_gateway_with_the_default_key_database(tmp_path):
    gateway = GatewayProcess(tmp_path / "gw").start()  # no [auth] api_key_db: <data_dir>/auth.db
    try:
        made = subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "keys", "create",
                               "--config", str(tmp_path / "gw" / "tradewire.toml"), "--owner", "carol",
                               "--scopes", "read"], capture_output=True, text=True, timeout=30,
                              env={k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")})
        assert made.returncode == 0, made.stderr
        assert (tmp_path / "gw" / "data" / "auth.db").exists()
        client = make_client("http", gateway)
        try:  # read at once, without a restart
            history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), made.stdout.strip())
        finally:
            await client.close()
        assert not history.trades
    finally:
        assert gateway.stop() == 0


def auth_rows(gateway: GatewayProcess, run: str) -> list[dict]:
    """The gateway's tw_auth_attempts audit rows whose correlation id starts with ``run``."""
    return [row for row in gateway.audit_rows("tw_auth_attempts") if row.get("correlation_id", "").startswith(run)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_oversized_credential_gets_the_same_refusal_on_every_protocol_every_time(auth_gateway, protocol):
    # grpcio's metadata limits must not answer first: by default (8 KiB soft, 16 KiB hard) it
    # refuses such calls itself, at random between the two and always above, saying nothing of why
    client = make_client(protocol, auth_gateway)
    try:
        for size in (60_000, 40_000, 16_500, 12_000, 8_193):
            for _ in range(3):
                with pytest.raises(RpcFailure) as caught:
                    await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), "x" * size)
                failure = caught.value
                assert (failure.code, failure.reason) == ("UNAUTHENTICATED", "AUTH_INVALID"), (size, failure)
                assert failure.message == "credential is longer than 8192 bytes"
                if protocol == "http":
                    assert failure.http_status == 401
    finally:
        await client.close()


@pytest.mark.parametrize("trusted_proxies,believed", [(None, False), (["10.0.0.0/8", "::1"], False),
                                                      (["127.0.0.1"], True)])
async def test_x_forwarded_for_names_the_peer_only_from_a_trusted_proxy(tmp_path, trusted_proxies, believed):
    env = {"TRADEWIRE_LIMITS__AUTH_FAILURES_PER_S": "0.01", "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "4"}
    if trusted_proxies is not None:
        env["TRADEWIRE_SERVER__TRUSTED_PROXIES"] = json.dumps(trusted_proxies)
    gateway = GatewayProcess(tmp_path / "gw", env=env).start()
    run = uuid.uuid4().hex[:8]
    bad_key = "tw_nobody00_" + "n" * 40
    try:
        grpc_client = make_client("grpc", gateway)  # native gRPC never takes its peer from metadata
        try:
            with pytest.raises(RpcFailure):
                await grpc_client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), bad_key,
                                        headers={"x-forwarded-for": "10.9.9.9", "x-correlation-id": f"{run}-grpc"})
        finally:
            await grpc_client.close()
        http = make_client("http", gateway)
        try:
            statuses = []
            for i in range(5):  # each from "another client", as the header would have it
                with pytest.raises(RpcFailure) as caught:
                    await http.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), bad_key,
                                     headers={"x-forwarded-for": f"10.9.8.{i}", "x-correlation-id": f"{run}-{i}"})
                statuses.append(caught.value.http_status)
        finally:
            await http.close()
        # believed, each address has its own failure budget; otherwise the connection's address
        # has one, of which the gRPC call spent the first
        assert statuses == ([401] * 5 if believed else [401] * 3 + [429] * 2)
        failures = 1 + statuses.count(401)  # (a throttled call is refused before its attempt)
        wait_until(lambda: len(auth_rows(gateway, run)) >= failures, what="audit rows")
        peers = {r["correlation_id"].removeprefix(f"{run}-"): r["peer"].rsplit(":", 1)[0]
                 for r in auth_rows(gateway, run)}
        assert peers.pop("grpc") == "127.0.0.1"
        assert peers == ({str(i): f"10.9.8.{i}" for i in range(5)} if believed
                         else {str(i): "127.0.0.1" for i in range(3)}), peers
    finally:
        assert gateway.stop() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_jwt_subject_is_not_the_api_key_owner_of_the_same_name(auth_gateway, protocol):
    client = make_client(protocol, auth_gateway)
    alice_jwt = {"authorization": "Bearer " + token(sub="alice")}
    try:
        by_key = trade()
        result, _ = await client.unary("ExecuteTrade", by_key, auth_gateway.key("alice"))
        assert result.status == pb.TRADE_STATUS_FILLED
        with pytest.raises(RpcFailure) as caught:  # the key owner's trade is not the token subject's
            await client.unary("GetTrade", spb.GetTradeRequest(request_id=by_key.request_id), None, headers=alice_jwt)
        assert caught.value.code == "NOT_FOUND"
        history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(), None, headers=alice_jwt)
        assert by_key.request_id not in {t.request_id for t in history.trades}
        # nor its request id: the same id with another amount is the subject's own new trade
        again = pb.TradeRequest()
        again.CopyFrom(by_key)
        again.amount = "0.02"
        result, _ = await client.unary("ExecuteTrade", again, None, headers=alice_jwt)
        assert result.status == pb.TRADE_STATUS_FILLED and result.requested_amount == "0.02"
        status, _ = await client.unary("HealthCheck", spb.HealthCheckRequest(), None, headers=alice_jwt)
        assert status.caller.owner == "jwt:alice"
    finally:
        await client.close()
