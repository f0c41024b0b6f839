"""JWT edges that must fail closed: scope separators, non-finite time settings, JWK key_ops, JWKS
entries of odd shape."""

from __future__ import annotations

import json
import math
import os

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError
from support.auth_material import AUDIENCE, ISSUER, NOW, FakeClock, Material

from tradewire.core.auth.jwt_verifier import JwtConfig, JwtVerifier
from tradewire.core.auth.permissions import authorize
from tradewire.core.auth.verification_keys import JwtKeyConfig, KeyConfigError, key_from_jwk, parse_jwks
from tradewire.core.config import AuthConfig
from tradewire.core.context import Principal
from tradewire.core.errors import TradewireError


@pytest.fixture
def verifier(material: Material) -> JwtVerifier:
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),))
    return JwtVerifier(config, clock=lambda: NOW)


# -- scope strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator",
    ["\t", "\n", "\r", "\x0b", "\x0c", "\x1f", "\x85", "\u00a0", "\u2003", "\u3000"],
    ids=repr,
)
def test_only_a_space_separates_scopes(verifier: JwtVerifier, material: Material, separator: str) -> None:
    # "read<TAB>trade:live" is one scope token an identity provider may have let through as
    # an unknown name; read as two it would grant LIVE trading
    verified = verifier.verify(material.sign("hs", scope=f"read{separator}trade:live"))
    assert verified.scopes == {f"read{separator}trade:live"}
    principal = Principal(id="jwt:alice", scopes=verified.scopes, kind="jwt", label="jwt:alice")
    with pytest.raises(TradewireError) as caught:
        authorize(principal, "ExecuteTrade", "LIVE")
    assert caught.value.reason == "PERMISSION_DENIED"


def test_runs_of_spaces_still_separate_scopes(verifier: JwtVerifier, material: Material) -> None:
    assert verifier.verify(material.sign("hs", scope="  read   trade:paper ")).scopes == {"read", "trade:paper"}


# -- time settings -------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["leeway_s", "jwks_check_interval_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_time_setting_is_refused(material: Material, setting: str, value: float) -> None:
    with pytest.raises(KeyConfigError, match="finite"):
        JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=(JwtKeyConfig("hs", "HS256", secret=material.hs_secret),),
                  **{setting: value})


def test_a_leeway_of_nan_from_the_configuration_does_not_start(material: Material) -> None:
    # (as TRADEWIRE_AUTH__JWT__LEEWAY_S=nan gives it: text pydantic reads as a float)
    jwt_settings = {"issuer": ISSUER, "audience": AUDIENCE, "leeway_s": "nan",
                    "keys": [{"kid": "hs", "algorithm": "HS256", "secret": material.hs_secret.decode()}]}
    with pytest.raises(ValidationError, match="finite"):
        AuthConfig.model_validate({"jwt": jwt_settings})


# -- JWK key_ops ---------------------------------------------------------------------------


def _rsa_jwk(material: Material, **fields: object) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(material.rsa_private.public_key()))
    return {**jwk, "kid": "rs", **fields}


@pytest.mark.parametrize("key_ops", [["encrypt", "wrapKey"], ["sign"], [], "verify"], ids=repr)
def test_a_jwk_not_meant_for_verifying_is_not_used(material: Material, key_ops: object) -> None:
    with pytest.raises(KeyConfigError, match="key_ops"):
        key_from_jwk(_rsa_jwk(material, key_ops=key_ops))
    assert parse_jwks(json.dumps({"keys": [_rsa_jwk(material, key_ops=key_ops)]})) == {}


@pytest.mark.parametrize("fields", [{}, {"key_ops": ["verify"]}, {"key_ops": ["sign", "verify"]}], ids=repr)
def test_a_jwk_meant_for_verifying_is_used(material: Material, fields: dict) -> None:
    assert key_from_jwk(_rsa_jwk(material, **fields)).algorithm == "RS256"


# -- JWKS entries of odd shape -------------------------------------------------------------


def _ed_jwk(key: ed25519.Ed25519PrivateKey, kid: str, **fields: object) -> dict:
    return {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key())), "kid": kid, **fields}


@pytest.mark.parametrize("alg", [["EdDSA"], {"name": "EdDSA"}], ids=repr)
def test_a_jwks_entry_whose_alg_is_not_a_string_is_skipped_not_a_crash(tmp_path, material: Material,
                                                                       alg: object) -> None:
    """At start, and in a reload on the request path: the rotation the same file brings is taken."""
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    assert set(parse_jwks(json.dumps({"keys": [_ed_jwk(old, "old"), _ed_jwk(old, "odd", alg=alg)]}))) == {"old"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_ed_jwk(old, "old")]}))
    mono = FakeClock(0.0)
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_path=str(path), jwks_check_interval_s=1)
    verifier = JwtVerifier(config, clock=lambda: NOW, monotonic=mono)
    assert verifier.known_kids() == ["old"]

    path.write_text(json.dumps({"keys": [_ed_jwk(new, "new"), _ed_jwk(new, "odd", alg=alg)]}))
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    mono.advance(1)
    assert verifier.verify(material.sign("new", "EdDSA", key=new)).kid == "new"
    assert verifier.known_kids() == ["new"]


def test_a_jwks_nested_too_deep_is_not_a_jwks() -> None:
    with pytest.raises(KeyConfigError, match="not valid JSON"):
        parse_jwks("[" * 100_000)
