"""Micro-benchmark of the per-request auth costs (pipeline steps 2-4).

Plain ``time.perf_counter`` loops: for each operation, several rounds of N calls; the
per-call figure is the median round (µs), with the best round alongside. Prints a
Markdown table and writes bench/results/auth.json. The Redis key store (several replicas)
is measured against a local redis-server (Debian's, started here): a verification that reads
Redis, the one a replica makes while it keeps the key it proved (1 s), and a bare PING.

    python -m bench.auth_bench [--n 5000] [--rounds 7] [--out bench/results/auth.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tradewire.core.auth import (
    Authenticator,
    JwtConfig,
    JwtKeyConfig,
    JwtVerifier,
    SqliteApiKeyStore,
    authorize,
    create_key,
)
from tradewire.core.ratelimit import RateLimits, TokenBucketLimiter

ISSUER, AUDIENCE = "https://idp.bench", "tradewire"
RESULTS = Path(__file__).parent / "results" / "auth.json"


def measure(fn: Callable[[], object], n: int, rounds: int) -> dict[str, float]:
    for _ in range(min(n, 200)):  # warm caches
        fn()
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - start) / n * 1e6)
    return {"median_us": statistics.median(per_call), "best_us": min(per_call), "calls": n * rounds}


def measure_redis_store(workdir: Path, n: int, rounds: int) -> dict[str, dict[str, float]]:
    from bench.servers import RedisServer
    from tradewire.core.shared.fail_fast import fail_fast_client
    from tradewire.core.shared.redis_key_store import RedisApiKeyStore

    server = RedisServer(workdir).start()
    try:
        client = fail_fast_client(server.url, 1.0, 1.0)  # the gateway's own kind of client
        reading, keeping = RedisApiKeyStore(client, cache_s=0), RedisApiKeyStore(client)
        key, _ = create_key(reading, "bench", "bench", ["read", "trade:paper"])
        return {
            "API key verify (Redis store, reads Redis)": measure(lambda: reading.verify(key), n, rounds),
            "API key verify (Redis store, key kept 1 s)": measure(lambda: keeping.verify(key), n, rounds),
            "Redis PING round trip (redis-py, fail-fast client)": measure(client.ping, n, rounds),
        }
    finally:
        server.stop()


def pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)

    hs_secret = b"bench-secret-bench-secret-bench-secret-0123456789abcdef"[:48]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    jwt_config = JwtConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=(
            JwtKeyConfig("hs", "HS256", secret=hs_secret),
            JwtKeyConfig("rs", "RS256", public_key_pem=pem(rsa_key)),
            JwtKeyConfig("ed", "EdDSA", public_key_pem=pem(ed_key)),
        ),
    )
    verifier = JwtVerifier(jwt_config)
    first_time = JwtVerifier(jwt_config, cache_size=0)  # keeps nothing: every token checked in full
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now, "exp": now + 3600}
    claims["scope"] = "read trade:paper"
    tokens = {
        "HS256": jwt.encode(claims, hs_secret, algorithm="HS256", headers={"kid": "hs"}),
        "RS256": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rs"}),
        "EdDSA": jwt.encode(claims, ed_key, algorithm="EdDSA", headers={"kid": "ed"}),
    }

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteApiKeyStore(Path(tmp) / "auth.db")
        key, _ = create_key(store, "bench", "bench", ["read", "trade:paper"])
        auth = Authenticator(api_keys=store, jwt=verifier)
        key_headers = {"x-api-key": key}
        principal = auth.authenticate(key_headers)
        limiter = TokenBucketLimiter(rate_per_s=1e9, burst=1_000_000)
        limits = RateLimits()
        limits_keys = iter(range(10**9))

        ops: list[tuple[str, Callable[[], object]]] = [
            ("API key auth (SQLite store, cached)", lambda: auth.authenticate(key_headers)),
            ("API key verify only (store.verify, cached)", lambda: store.verify(key)),
            *(
                (f"JWT {alg} verify, first presentation", (lambda t: lambda: first_time.verify(t))(tok))
                for alg, tok in tokens.items()
            ),
            *(
                (f"JWT {alg} auth, token presented again (kept)",
                 (lambda h: lambda: auth.authenticate(h))({"authorization": f"Bearer {tok}"}))
                for alg, tok in tokens.items()
            ),
            ("permission check (authorize ExecuteTrade PAPER)", lambda: authorize(principal, "ExecuteTrade", "PAPER")),
            ("rate-limit acquire (TokenBucketLimiter)", lambda: limiter.acquire("bench")),
            (
                "rate-limit check_call (RateLimits, PAPER, fresh key)",
                lambda: limits.check_call(f"p{next(limits_keys)}", "ExecuteTrade", "PAPER"),
            ),
        ]
        results = {name: measure(fn, args.n, args.rounds) for name, fn in ops}
        store.close()
        results.update(measure_redis_store(Path(tmp) / "redis", args.n, args.rounds))

    print(f"auth micro-benchmark: {args.rounds} rounds x {args.n} calls, median round (best)\n")
    print("| operation | µs / request (median) | best |")
    print("|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_us']:.2f} | {r['best_us']:.2f} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "auth",
                "unit": "microseconds per request",
                "n_per_round": args.n,
                "rounds": args.rounds,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "pyjwt": jwt.__version__,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
