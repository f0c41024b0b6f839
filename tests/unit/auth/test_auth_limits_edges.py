"""Edges of authentication and limits: time claims no float can hold, a scope claim named
alone in the configuration, a LIVE trade racing another replica for the last token, and the
address a peer's failed authentications are counted under (IPv6 networks, IPv4 seen through
IPv6)."""

from __future__ import annotations

import pytest
from support.auth_material import AUDIENCE, ISSUER, NOW, FakeClock, Material

from tradewire.core.auth.authenticator import Authenticator
from tradewire.core.auth.jwt_verifier import JwtConfig, JwtVerifier
from tradewire.core.auth.verification_keys import JwtKeyConfig
from tradewire.core.errors import Code, TradewireError
from tradewire.core.ratelimit import RateDecision, RateLimitConfig, RateLimits, TokenBucketLimiter, peer_bucket
from tradewire.core.pipeline import peer_host
from tradewire.gateway.grpc_server import peer_of


@pytest.fixture
def verifier(material: Material) -> JwtVerifier:
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),))
    return JwtVerifier(config, clock=lambda: NOW)


# -- time claims ----------------------------------------------------------------------------


@pytest.mark.parametrize(("claim", "value"), [("exp", 10**400), ("nbf", 10**400), ("iat", -(10**400))],
                         ids=["exp", "nbf", "iat"])
def test_a_time_claim_too_large_for_a_float_is_refused_not_a_crash(
    verifier: JwtVerifier, material: Material, claim: str, value: int
) -> None:
    # JSON integers have no size limit: a signed token may carry one no float can hold
    token = Material.forge({"alg": "HS256", "kid": "hs"}, material.claims(**{claim: value}), material.hs_secret)
    with pytest.raises(TradewireError) as caught:
        verifier.verify(token)
    assert caught.value.reason == "AUTH_INVALID"
    assert caught.value.code is Code.UNAUTHENTICATED
    assert f"{claim!r} claim must be a number of seconds" in caught.value.message


def test_an_authentication_attempt_with_such_a_claim_is_a_recorded_failure(
    verifier: JwtVerifier, material: Material
) -> None:
    token = Material.forge({"alg": "HS256", "kid": "hs"}, material.claims(exp=10**400), material.hs_secret)
    outcome = Authenticator(jwt=verifier).attempt({"authorization": f"Bearer {token}"})
    assert not outcome.ok
    assert (outcome.reason, outcome.credential, outcome.credential_kind) == ("AUTH_INVALID", "jwt:hs", "jwt")


def test_a_single_scope_claim_name_in_the_configuration_is_that_claim(material: Material) -> None:
    # `scope_claims = "scp"` in TOML: the claim "scp", not the claims "s", "c" and "p"
    config = JwtConfig.from_mapping({"issuer": ISSUER, "audience": AUDIENCE, "scope_claims": "scp",
                                     "keys": [{"kid": "hs", "algorithm": "HS256", "secret": material.hs_secret}]})
    assert config.scope_claims == ("scp",)
    verified = JwtVerifier(config, clock=lambda: NOW).verify(material.sign("hs", scope=None, scp="read trade:live"))
    assert verified.scopes == {"read", "trade:live"}


# -- LIVE trades ---------------------------------------------------------------------------


class _RacedLimiter(TokenBucketLimiter):
    """A shared bucket whose last token another replica takes right after this one peeks."""

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        decision = super().peek(key, cost)
        super().acquire(key, cost)  # the other replica's LIVE trade
        return decision


def test_a_live_trade_whose_last_token_another_replica_took_after_the_peek_is_refused(
    fake_clock: FakeClock,
) -> None:
    def factory(name: str, rate: float, burst: int) -> TokenBucketLimiter:
        kind = _RacedLimiter if name == "live" else TokenBucketLimiter
        return kind(rate, burst, fake_clock)

    limits = RateLimits(RateLimitConfig(live_rate_per_s=0.01, live_burst=1), limiter_factory=factory)
    with pytest.raises(TradewireError) as caught:
        limits.check_call("alice", "ExecuteTrade", "LIVE")
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.metadata["subject"] == "live:alice"
    # refused by the LIVE bucket before the other was touched: the caller's own bucket is whole
    # (a peek tells what taking one token would leave)
    assert limits.principal.peek("principal:alice").remaining == RateLimitConfig().principal_burst - 1


# -- failed authentications per peer ---------------------------------------------------------


@pytest.fixture
def limits(fake_clock: FakeClock) -> RateLimits:
    return RateLimits(RateLimitConfig(auth_failure_rate_per_s=0.01, auth_failure_burst=3), clock=fake_clock)


def _spend_failures(limits: RateLimits, peers: list[str]) -> None:
    for peer in peers:
        limits.check_peer(peer)
        limits.record_auth_failure(peer)


def test_every_address_of_one_ipv6_64_shares_one_failure_budget(limits: RateLimits) -> None:
    # one host may use any of its /64's addresses: a new one per guess must not buy new guesses
    _spend_failures(limits, ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"])
    with pytest.raises(TradewireError) as caught:
        limits.check_peer("2001:db8:1:2:abcd::9")
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.metadata["subject"] == "peer:2001:db8:1:2::/64"
    limits.check_peer("2001:db8:1:3::1")  # the next /64 is another caller


def test_an_ipv4_caller_seen_through_a_dual_stack_listener_is_that_ipv4_caller(limits: RateLimits) -> None:
    # the HTTP listener on "::" sees 192.0.2.7 as ::ffff:192.0.2.7; native gRPC as 192.0.2.7
    _spend_failures(limits, ["::ffff:192.0.2.7", "192.0.2.7", "::ffff:192.0.2.7"])
    for peer in ("192.0.2.7", "::ffff:192.0.2.7"):
        with pytest.raises(TradewireError) as caught:
            limits.check_peer(peer)
        assert caught.value.metadata["subject"] == "peer:192.0.2.7"
    limits.check_peer("192.0.2.8")


def test_a_grpc_ipv6_peer_is_named_as_on_http_and_counted_by_its_address(limits: RateLimits) -> None:
    class GrpcContext:  # grpc names an IPv6 peer in its URI form, brackets percent-encoded
        def peer(self) -> str:
            return "ipv6:%5B2001:db8::5%5D:443"

    peer = peer_of(GrpcContext())
    assert peer == "[2001:db8::5]:443"  # as logged and audited, as the HTTP listener names it
    _spend_failures(limits, [peer_host(peer)] * 3)
    with pytest.raises(TradewireError):
        limits.check_peer("2001:db8::6")


@pytest.mark.parametrize(
    ("peer", "bucket"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix:/run/tradewire.sock", "unix:/run/tradewire.sock"),  # not an IP address: as it is
    ],
)
def test_peer_bucket(peer: str, bucket: str) -> None:
    assert peer_bucket(peer) == bucket
