"""JWT verification: valid tokens per algorithm, the attack list, JWKS reload, key config."""

from __future__ import annotations

import json
import os

import jwt
import pytest
from support.auth_material import AUDIENCE, ISSUER, NOW, FakeClock, Material, b64url
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tradewire.core.auth.jwt_verifier import JwtConfig, JwtVerifier
from tradewire.core.auth.verification_keys import JwtKeyConfig, KeyConfigError
from tradewire.core.errors import Code, TradewireError


@pytest.fixture
def verifier(material: Material) -> JwtVerifier:
    config = JwtConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=(
            JwtKeyConfig("hs", "HS256", secret=material.hs_secret),
            JwtKeyConfig("rs", "RS256", public_key_pem=material.rsa_public_pem),
            JwtKeyConfig("ed", "EdDSA", public_key_pem=material.ed_public_pem),
        ),
    )
    return JwtVerifier(config, clock=lambda: NOW)


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kid", "alg"), [("hs", "HS256"), ("rs", "RS256"), ("ed", "EdDSA")])
def test_valid_token_is_accepted_with_scopes(verifier: JwtVerifier, material: Material, kid: str, alg: str) -> None:
    verified = verifier.verify(material.sign(kid, alg, scope="read trade:live"))
    assert verified.subject == "alice"
    assert verified.scopes == {"read", "trade:live"}
    assert (verified.kid, verified.algorithm) == (kid, alg)
    assert verified.expires_at == int(NOW) + 600


@pytest.mark.parametrize("claim", ["scp", "scopes"])
def test_scopes_from_list_claims(verifier: JwtVerifier, material: Material, claim: str) -> None:
    token = material.sign("hs", scope=None, **{claim: ["read", "trade:paper"]})
    assert verifier.verify(token).scopes == {"read", "trade:paper"}


def test_no_scope_claim_means_no_scopes(verifier: JwtVerifier, material: Material) -> None:
    assert verifier.verify(material.sign("hs", scope=None)).scopes == frozenset()


def test_configured_scope_claim(material: Material) -> None:
    config = JwtConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),),
        scope_claims=("permissions",),
    )
    v = JwtVerifier(config, clock=lambda: NOW)
    token = material.sign("hs", scope="admin", permissions=["read"])
    assert v.verify(token).scopes == {"read"}  # "scope" is not consulted


def test_expired_within_leeway_is_accepted(verifier: JwtVerifier, material: Material) -> None:
    assert verifier.verify(material.sign("hs", exp=int(NOW) - 20)).subject == "alice"  # leeway 30 s
    assert verifier.verify(material.sign("hs", nbf=int(NOW) + 20, iat=int(NOW) + 20)).subject == "alice"


def test_audience_list_in_token_is_accepted(verifier: JwtVerifier, material: Material) -> None:
    assert verifier.verify(material.sign("hs", aud=["other", AUDIENCE])).subject == "alice"


# -- the attack list -----------------------------------------------------------------------


def _attacks(m: Material) -> dict[str, tuple[str, str]]:
    claims = m.claims()
    valid = m.sign("hs")
    head, payload, sig = valid.split(".")
    tampered_payload = b64url(json.dumps({**claims, "scope": "admin trade:live"}).encode())
    return {
        "alg none": (m.forge({"alg": "none", "kid": "hs"}, claims), "TOKEN_ALGORITHM_REJECTED"),
        "alg None": (m.forge({"alg": "None", "kid": "hs"}, claims), "TOKEN_ALGORITHM_REJECTED"),
        "alg missing": (m.forge({"kid": "hs"}, claims, m.hs_secret), "TOKEN_ALGORITHM_REJECTED"),
        "HS256 signed with the RS256 public key": (
            m.forge({"alg": "HS256", "kid": "rs"}, claims, m.rsa_public_pem.encode()),
            "TOKEN_ALGORITHM_REJECTED",
        ),
        "HS256 signed with the EdDSA public key": (
            m.forge({"alg": "HS256", "kid": "ed"}, claims, m.ed_public_pem.encode()),
            "TOKEN_ALGORITHM_REJECTED",
        ),
        "RS256 token sent with the HS256 kid": (m.sign("hs", "RS256"), "TOKEN_ALGORITHM_REJECTED"),
        "unsupported alg HS512": (m.sign("hs", "HS512", key=m.hs_secret), "TOKEN_ALGORITHM_REJECTED"),
        "expired": (m.sign("hs", exp=int(NOW) - 31), "TOKEN_EXPIRED"),
        "nbf in the future": (m.sign("hs", nbf=int(NOW) + 31), "TOKEN_NOT_YET_VALID"),
        "iat in the future": (m.sign("hs", iat=int(NOW) + 31), "TOKEN_NOT_YET_VALID"),
        "wrong audience": (m.sign("hs", aud="someone-else"), "TOKEN_AUDIENCE_INVALID"),
        "missing audience": (m.sign("hs", aud=None), "TOKEN_AUDIENCE_INVALID"),
        "wrong issuer": (m.sign("rs", "RS256", iss="https://evil.test"), "TOKEN_ISSUER_INVALID"),
        "missing issuer": (m.sign("hs", iss=None), "TOKEN_ISSUER_INVALID"),
        "unknown kid": (m.sign("nope"), "TOKEN_KEY_UNKNOWN"),
        "missing kid": (m.sign(None), "TOKEN_KEY_UNKNOWN"),
        "tampered payload": (f"{head}.{tampered_payload}.{sig}", "AUTH_INVALID"),
        "tampered expired payload keeps AUTH_INVALID": (
            f"{head}.{b64url(json.dumps({**claims, 'exp': 1}).encode())}.{sig}",
            "AUTH_INVALID",
        ),
        "truncated signature": (valid[:-6], "AUTH_INVALID"),
        "signature removed": (f"{head}.{payload}.", "AUTH_INVALID"),
        "only two segments": (f"{head}.{payload}", "AUTH_INVALID"),
        "garbage": ("not-a-token", "AUTH_INVALID"),
        "garbage with dots": ("a.b.c", "AUTH_INVALID"),
        "signed with another secret": (m.sign("hs", key=b"another-secret-that-is-32-bytes-long!!"), "AUTH_INVALID"),
        "EdDSA signed by another key": (
            m.sign("ed", "EdDSA", key=ed25519.Ed25519PrivateKey.generate()),
            "AUTH_INVALID",
        ),
        "missing exp": (m.sign("hs", exp=None), "AUTH_INVALID"),
        "exp not a number": (m.sign("hs", exp="tomorrow"), "AUTH_INVALID"),
        "missing sub": (m.sign("hs", sub=None), "AUTH_INVALID"),
        # the subject becomes the principal id, in store keys and log lines
        "sub with a control character": (m.sign("hs", sub="alice\x00admin"), "AUTH_INVALID"),
        "sub with a line break": (m.sign("hs", sub="alice\nforged log line"), "AUTH_INVALID"),
        "sub of 256 characters": (m.sign("hs", sub="a" * 256), "AUTH_INVALID"),
        # ... and is on every log line: a subject that is someone's API key would be logged
        "sub that is an API key": (m.sign("hs", sub="tw_bob00001_" + "b7Kq" * 10 + "Zz1"), "AUTH_INVALID"),
        "sub that is a JWT": (m.sign("hs", sub="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"), "AUTH_INVALID"),
        "scope of wrong type": (m.sign("hs", scope=42), "AUTH_INVALID"),
    }


@pytest.fixture(scope="module")
def attacks(material: Material) -> dict[str, tuple[str, str]]:
    return _attacks(material)


@pytest.mark.parametrize(
    "name",
    [
        "alg none",
        "alg None",
        "alg missing",
        "HS256 signed with the RS256 public key",
        "HS256 signed with the EdDSA public key",
        "RS256 token sent with the HS256 kid",
        "unsupported alg HS512",
        "expired",
        "nbf in the future",
        "iat in the future",
        "wrong audience",
        "missing audience",
        "wrong issuer",
        "missing issuer",
        "unknown kid",
        "missing kid",
        "tampered payload",
        "tampered expired payload keeps AUTH_INVALID",
        "truncated signature",
        "signature removed",
        "only two segments",
        "garbage",
        "garbage with dots",
        "signed with another secret",
        "EdDSA signed by another key",
        "missing exp",
        "exp not a number",
        "missing sub",
        "sub with a control character",
        "sub with a line break",
        "sub of 256 characters",
        "sub that is an API key",
        "sub that is a JWT",
        "scope of wrong type",
    ],
)
def test_attack_is_refused_with_the_precise_reason(
    verifier: JwtVerifier, attacks: dict[str, tuple[str, str]], name: str
) -> None:
    token, reason = attacks[name]
    with pytest.raises(TradewireError) as caught:
        verifier.verify(token)
    err = caught.value
    assert err.reason == reason, f"{name}: {err}"
    assert err.code is Code.UNAUTHENTICATED
    # the token (or its signature) never appears in what the caller or the audit sees
    visible = f"{err} {err.message} {dict(err.metadata)} {err.to_status()}"
    assert token not in visible
    if token.count(".") == 2 and len(token.rsplit(".", 1)[1]) > 8:
        assert token.rsplit(".", 1)[1] not in visible
    assert err.metadata["credential_kind"] == "jwt"


def test_every_attack_is_parametrized(attacks: dict[str, tuple[str, str]]) -> None:
    marker = test_attack_is_refused_with_the_precise_reason.pytestmark[0]
    assert set(marker.args[1]) == set(attacks)


def test_hs_rs_confusion_would_verify_if_alg_came_from_the_token(material: Material) -> None:
    """Proves the forged token is a real attack: it verifies under HS256 with the PEM bytes."""
    token = Material.forge({"alg": "HS256", "kid": "rs"}, material.claims(), material.rsa_public_pem.encode())
    signing_input, signature = token.rsplit(".", 1)
    import hashlib
    import hmac

    expected = b64url(hmac.new(material.rsa_public_pem.encode(), signing_input.encode(), hashlib.sha256).digest())
    assert signature == expected


def test_a_token_with_critical_extensions_is_refused_saying_so(verifier: JwtVerifier, material: Material) -> None:
    token = jwt.encode(material.claims(), material.hs_secret, algorithm="HS256",
                       headers={"kid": "hs", "crit": ["exp"]})
    with pytest.raises(TradewireError) as caught:
        verifier.verify(token)
    assert caught.value.reason == "AUTH_INVALID"
    assert "'crit'" in caught.value.message and "not supported" in caught.value.message


@pytest.mark.parametrize("token_alg,kid,key_alg", [("RS256", "hs", "HS256"), ("HS256", "rs", "RS256"),
                                                   ("HS256", "ed", "EdDSA")])
def test_an_algorithm_mismatch_does_not_tell_which_algorithm_the_key_takes(
    verifier: JwtVerifier, material: Material, token_alg: str, kid: str, key_alg: str
) -> None:
    key = {"RS256": material.rsa_private, "HS256": material.hs_secret}[token_alg]
    with pytest.raises(TradewireError) as caught:
        verifier.verify(material.sign(kid, token_alg, key=key))
    assert caught.value.reason == "TOKEN_ALGORITHM_REJECTED"
    assert caught.value.message == f"token algorithm {token_alg!r} does not match its key {kid!r}"
    assert key_alg not in f"{caught.value.message} {dict(caught.value.metadata)}"


def test_failure_metadata_names_the_kid_not_the_token(verifier: JwtVerifier, material: Material) -> None:
    with pytest.raises(TradewireError) as caught:
        verifier.verify(material.sign("hs", exp=int(NOW) - 100))
    assert caught.value.metadata["credential"] == "jwt:hs"


def test_hostile_kid_is_sanitised(verifier: JwtVerifier, material: Material) -> None:
    with pytest.raises(TradewireError) as caught:
        verifier.verify(material.sign("evil\nkid\x00" + "x" * 500))
    err = caught.value
    assert err.reason == "TOKEN_KEY_UNKNOWN"
    assert "\n" not in err.message and "\x00" not in err.message
    assert len(err.metadata["credential"]) < 80


def test_oversized_token_is_refused(verifier: JwtVerifier, material: Material) -> None:
    with pytest.raises(TradewireError) as caught:
        verifier.verify(material.sign("hs", padding="x" * 10_000))
    assert caught.value.reason == "AUTH_INVALID"


def test_kidless_token_when_kid_not_required(material: Material) -> None:
    config = JwtConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),),
        require_kid=False,
    )
    v = JwtVerifier(config, clock=lambda: NOW)
    assert v.verify(material.sign(None)).kid == "hs"
    with pytest.raises(TradewireError) as caught:
        v.verify(material.sign(None, "EdDSA"))
    assert caught.value.reason == "TOKEN_KEY_UNKNOWN"


def test_multiple_issuers_and_audiences(material: Material) -> None:
    config = JwtConfig.from_mapping(
        {
            "issuer": [ISSUER, "https://idp2.test"],
            "audience": ["tradewire", "tw-api"],
            "keys": [{"kid": "hs", "algorithm": "HS256", "secret": material.hs_secret.decode()}],
        }
    )
    v = JwtVerifier(config, clock=lambda: NOW)
    assert v.verify(material.sign("hs", iss="https://idp2.test", aud="tw-api")).subject == "alice"
    with pytest.raises(TradewireError) as caught:
        v.verify(material.sign("hs", iss="https://idp3.test"))
    assert caught.value.reason == "TOKEN_ISSUER_INVALID"


# -- JWKS file -----------------------------------------------------------------------------


def _jwks(*keys: tuple[str, ed25519.Ed25519PrivateKey]) -> str:
    entries = []
    for kid, private in keys:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
        entries.append({**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"})
    return json.dumps({"keys": entries})


def _write(path, text: str, mtime_s: int) -> None:
    path.write_text(text)
    os.utime(path, (mtime_s, mtime_s))


def _jwks_verifier(path) -> tuple[JwtVerifier, FakeClock]:
    """A verifier of the keys in the JWKS file ``path`` (checked every 10 s), and its monotonic clock."""
    mono = FakeClock(100.0)
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(path), jwks_check_interval_s=10)
    return JwtVerifier(config, clock=lambda: NOW, monotonic=mono), mono


def test_jwks_reload_on_mtime_change(tmp_path, material: Material) -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwks(("old", old)), 1_700_000_000)
    v, mono = _jwks_verifier(path)
    new_token = material.sign("new", "EdDSA", key=new)
    old_token = material.sign("old", "EdDSA", key=old)
    assert v.verify(old_token).kid == "old"

    def reason(token: str) -> str | None:
        try:
            v.verify(token)
        except TradewireError as exc:
            return exc.reason
        return None

    assert reason(new_token) == "TOKEN_KEY_UNKNOWN"
    # rotate in the new key
    _write(path, _jwks(("old", old), ("new", new)), 1_700_000_100)
    mono.advance(9)
    assert reason(new_token) == "TOKEN_KEY_UNKNOWN"  # not re-checked before the interval
    mono.advance(1)
    assert reason(new_token) is None
    # rotate out the old key
    _write(path, _jwks(("new", new)), 1_700_000_200)
    mono.advance(10)
    assert reason(old_token) == "TOKEN_KEY_UNKNOWN"
    assert reason(new_token) is None
    # a broken rewrite keeps the last good keys
    _write(path, "{ half-written", 1_700_000_300)
    mono.advance(10)
    assert reason(new_token) is None
    # and the next good write is picked up
    _write(path, _jwks(("old", old)), 1_700_000_400)
    mono.advance(10)
    assert reason(old_token) is None
    assert reason(new_token) == "TOKEN_KEY_UNKNOWN"


def test_a_token_presented_again_is_not_checked_again_until_its_times_say_so(material: Material,
                                                                            monkeypatch) -> None:
    clock = FakeClock(NOW)
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),))
    v = JwtVerifier(config, clock=clock)
    decoded = []
    real = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **kw: decoded.append(a[0]) or real(*a, **kw))
    token = material.sign("hs", scope="read")
    first = v.verify(token)
    assert all(v.verify(token) == first for _ in range(5))
    assert len(decoded) == 1  # its signature checked once
    other = material.sign("hs", scope="read trade:paper")
    assert v.verify(other).scopes == {"read", "trade:paper"} and len(decoded) == 2
    with pytest.raises(TradewireError) as forged:  # a token like a kept one, one character off
        v.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    assert forged.value.reason == "AUTH_INVALID"
    clock.advance(600 + 30)  # exp (NOW + 600) and the leeway: a kept token expires as any other
    with pytest.raises(TradewireError) as expired:
        v.verify(token)
    assert expired.value.reason == "TOKEN_EXPIRED"
    assert token not in v._verified  # (not kept once it cannot pass)


def test_a_kept_token_is_checked_again_once_its_key_is_replaced(tmp_path, material: Material) -> None:
    first, second = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwks(("k", first)), 1_700_000_000)
    v, mono = _jwks_verifier(path)
    token = material.sign("k", "EdDSA", key=first)
    assert v.verify(token).kid == "k"
    _write(path, _jwks(("k", second)), 1_700_000_100)  # the same kid, another key
    mono.advance(10)
    with pytest.raises(TradewireError) as refused:
        v.verify(token)
    assert refused.value.reason == "AUTH_INVALID"  # its signature, checked against the new key


def test_jwks_entries_with_mismatched_alg_are_skipped(tmp_path, material: Material) -> None:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(material.rsa_private.public_key()))
    oct_jwk = {"kty": "oct", "k": b64url(material.hs_secret), "kid": "oct", "alg": "HS256"}
    doc = {
        "keys": [
            {**rsa_jwk, "kid": "rs-as-hs", "alg": "HS256"},  # kty RSA cannot be HS256
            {**rsa_jwk, "kid": "rs-enc", "alg": "RS256", "use": "enc"},
            {**rsa_jwk, "kid": "rs-noalg"},  # alg implied by kty -> RS256
            oct_jwk,
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "x", "y": "y"},
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    v = JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(path)), clock=lambda: NOW)
    assert v.known_kids() == ["oct", "rs-noalg"]
    assert v.verify(material.sign("rs-noalg", "RS256")).algorithm == "RS256"
    assert v.verify(material.sign("oct", "HS256")).algorithm == "HS256"
    with pytest.raises(TradewireError) as caught:
        v.verify(
            Material.forge({"alg": "HS256", "kid": "rs-noalg"}, material.claims(), material.rsa_public_pem.encode())
        )
    assert caught.value.reason == "TOKEN_ALGORITHM_REJECTED"


def test_jwks_file_must_load_at_start(tmp_path) -> None:
    with pytest.raises(KeyConfigError):
        JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(tmp_path / "missing.json")))
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a jwks"}')
    with pytest.raises(KeyConfigError):
        JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(bad)))


# -- key configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda m: JwtKeyConfig("k", "HS256", secret=b"short"),
        lambda m: JwtKeyConfig("k", "HS256", secret=m.rsa_public_pem),  # PEM as HMAC secret
        lambda m: JwtKeyConfig("k", "none", secret=m.hs_secret),
        lambda m: JwtKeyConfig("k", "RS256", public_key_pem=m.ed_public_pem),
        lambda m: JwtKeyConfig("k", "EdDSA", public_key_pem=m.rsa_public_pem),
        lambda m: JwtKeyConfig("k", "RS256", secret=m.hs_secret),
        lambda m: JwtKeyConfig("k", "RS256", public_key_pem="not a pem"),
        lambda m: JwtKeyConfig("", "HS256", secret=m.hs_secret),
    ],
)
def test_bad_key_config_fails_at_start(material: Material, build) -> None:
    cfg = build(material)
    with pytest.raises(KeyConfigError) as caught:
        JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(cfg,)))
    assert material.hs_secret.decode() not in str(caught.value)


def test_weak_rsa_key_is_refused(material: Material) -> None:
    from support.auth_material import pem_public

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyConfigError, match="2048"):
        JwtVerifier(
            JwtConfig(
                issuer=ISSUER,
                audience=AUDIENCE,
                keys=(JwtKeyConfig("k", "RS256", public_key_pem=pem_public(weak)),),
            )
        )


def test_config_requires_issuer_audience_and_keys(material: Material) -> None:
    key = JwtKeyConfig("hs", "HS256", secret=material.hs_secret)
    with pytest.raises(KeyConfigError):
        JwtConfig(issuer="", audience=AUDIENCE, keys=(key,))
    with pytest.raises(KeyConfigError):
        JwtConfig(issuer=ISSUER, audience="", keys=(key,))
    with pytest.raises(KeyConfigError):
        JwtConfig(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(KeyConfigError):
        JwtConfig.from_mapping({"issuer": ISSUER, "audience": AUDIENCE, "keys": [], "typo": 1})


def test_secret_not_in_config_repr(material: Material) -> None:
    cfg = JwtKeyConfig("hs", "HS256", secret=material.hs_secret)
    assert material.hs_secret.decode() not in repr(cfg)
    v = JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(cfg,)))
    assert material.hs_secret.decode() not in repr(v._static)
