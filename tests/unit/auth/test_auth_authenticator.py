"""Authenticator: header parsing, credential dispatch, Principal, audit metadata."""

from __future__ import annotations

import pytest
from support.auth_material import AUDIENCE, ISSUER, NOW, Material

from tradewire.core.auth.api_keys import create_key, revoke_key
from tradewire.core.auth.authenticator import AuthOutcome, Authenticator
from tradewire.core.auth.jwt_verifier import JwtConfig, JwtVerifier
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.core.auth.verification_keys import JwtKeyConfig
from tradewire.core.context import Principal
from tradewire.core.errors import TradewireError


@pytest.fixture
def store(tmp_path):
    with SqliteApiKeyStore(tmp_path / "auth.db") as s:
        yield s


@pytest.fixture
def verifier(material: Material) -> JwtVerifier:
    keys = (JwtKeyConfig("hs", "HS256", secret=material.hs_secret),)
    return JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=keys), clock=lambda: NOW)


@pytest.fixture
def auth(store: SqliteApiKeyStore, verifier: JwtVerifier) -> Authenticator:
    return Authenticator(api_keys=store, jwt=verifier)


@pytest.fixture
def api_key(store: SqliteApiKeyStore) -> str:
    return create_key(store, "alice", "bot", ["read", "trade:paper"])[0]


def refused(auth: Authenticator, headers: dict[str, str]) -> TradewireError:
    with pytest.raises(TradewireError) as caught:
        auth.authenticate(headers)
    return caught.value


def test_api_key_as_bearer(auth: Authenticator, api_key: str) -> None:
    principal = auth.authenticate({"authorization": f"Bearer {api_key}"})
    assert principal == Principal(
        id="alice", scopes=frozenset({"read", "trade:paper"}), kind="api_key", label=api_key[:11]
    )
    assert api_key.split("_", 2)[2] not in principal.label


def test_api_key_header(auth: Authenticator, api_key: str) -> None:
    assert auth.authenticate({"x-api-key": api_key}).id == "alice"


def test_bearer_scheme_is_case_insensitive(auth: Authenticator, api_key: str) -> None:
    assert auth.authenticate({"authorization": f"bearer   {api_key} "}).kind == "api_key"


def test_a_tab_after_the_bearer_scheme_separates_it_too(auth: Authenticator, api_key: str, material: Material) -> None:
    assert auth.authenticate({"authorization": f"Bearer\t{api_key}"}).kind == "api_key"
    assert auth.authenticate({"authorization": f"Bearer \t {material.sign('hs')}"}).kind == "jwt"


def test_jwt_as_bearer(auth: Authenticator, material: Material) -> None:
    token = material.sign("hs", scope="read trade:live")
    principal = auth.authenticate({"authorization": f"Bearer {token}"})
    assert principal == Principal(id="jwt:alice", scopes=frozenset({"read", "trade:live"}), kind="jwt",
                                  label="jwt:alice")


def test_a_jwt_subject_and_an_api_key_owner_are_not_one_account_by_default(
    auth: Authenticator, api_key: str, material: Material
) -> None:
    by_key = auth.authenticate({"authorization": f"Bearer {api_key}"})
    by_token = auth.authenticate({"authorization": f"Bearer {material.sign('hs', sub='alice')}"})
    assert (by_key.id, by_token.id) == ("alice", "jwt:alice")


@pytest.mark.parametrize("prefix,principal", [("oidc:", "oidc:alice"), ("", "alice")])
def test_jwt_principal_prefix(store: SqliteApiKeyStore, material: Material, prefix: str, principal: str) -> None:
    keys = (JwtKeyConfig("hs", "HS256", secret=material.hs_secret),)
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=keys, principal_prefix=prefix)
    auth = Authenticator(store, JwtVerifier(config, clock=lambda: NOW))
    assert auth.authenticate({"authorization": f"Bearer {material.sign('hs')}"}).id == principal


def test_missing_credentials(auth: Authenticator) -> None:
    err = refused(auth, {"x-correlation-id": "abc"})
    assert err.reason == "AUTH_MISSING"
    assert err.metadata == {"credential": "none", "credential_kind": "none"}


def test_missing_bearer_scheme(auth: Authenticator, api_key: str, material: Material) -> None:
    for bare in (api_key, material.sign("hs")):
        err = refused(auth, {"authorization": bare})
        assert err.reason == "AUTH_INVALID"
        assert "missing the Bearer scheme" in err.message
        assert bare not in str(err)


def test_other_scheme(auth: Authenticator, api_key: str) -> None:
    err = refused(auth, {"authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert err.reason == "AUTH_INVALID"
    assert "'Basic'" in err.message and "Bearer" in err.message
    assert "YWxpY2U6c2VjcmV0" not in err.message
    # an unknown "scheme" might itself be a secret: it is not echoed
    err = refused(auth, {"authorization": f"{api_key} extra"})
    assert api_key not in err.message and "Bearer" in err.message


@pytest.mark.parametrize("value,says", [("Bearer", "no token"), ("Bearer   ", "no token"),
                                        ("", "authorization header is empty"), ("   ", "authorization header is empty")])
def test_empty_bearer(auth: Authenticator, value: str, says: str) -> None:
    err = refused(auth, {"authorization": value})
    assert err.reason == "AUTH_INVALID" and says in err.message, err.message


def test_two_credentials_are_refused(auth: Authenticator, api_key: str) -> None:
    err = refused(auth, {"authorization": f"Bearer {api_key}", "x-api-key": api_key})
    assert err.reason == "AUTH_INVALID" and "not both" in err.message


def test_failure_metadata_identifies_credential_without_secret(
    auth: Authenticator, store: SqliteApiKeyStore, api_key: str, material: Material
) -> None:
    revoke_key(store, api_key[:11])
    err = refused(auth, {"x-api-key": api_key})
    assert err.reason == "API_KEY_REVOKED"
    assert err.metadata["credential"] == api_key[:11]
    assert api_key.split("_", 2)[2] not in f"{err} {err.metadata} {err.to_status()}"

    token = material.sign("hs", exp=int(NOW) - 3600)
    err = refused(auth, {"authorization": f"Bearer {token}"})
    assert (err.reason, err.metadata["credential"]) == ("TOKEN_EXPIRED", "jwt:hs")


def test_attempt_returns_an_outcome(auth: Authenticator, api_key: str) -> None:
    ok = auth.attempt({"x-api-key": api_key})
    assert ok.ok and ok.reason is None and ok.credential == api_key[:11] and ok.credential_kind == "api_key"
    bad = auth.attempt({"x-api-key": api_key[:-1] + ("a" if api_key[-1] != "a" else "b")})
    assert isinstance(bad, AuthOutcome) and not bad.ok
    assert (bad.reason, bad.credential, bad.credential_kind) == ("AUTH_INVALID", api_key[:11], "api_key")
    assert bad.error is not None and bad.error.reason == "AUTH_INVALID"


def test_disabled_mechanisms(store: SqliteApiKeyStore, api_key: str, material: Material) -> None:
    err = refused(Authenticator(api_keys=store, jwt=None), {"authorization": f"Bearer {material.sign('hs')}"})
    assert err.reason == "AUTH_INVALID" and "JWT" in err.message
    err = refused(Authenticator(api_keys=None, jwt=None), {"x-api-key": api_key})
    assert err.reason == "AUTH_INVALID" and "API key" in err.message


def test_oversized_header(auth: Authenticator) -> None:
    err = refused(auth, {"authorization": "Bearer " + "a" * 10_000})
    assert (err.reason, err.message) == ("AUTH_INVALID", "credential is longer than 8192 bytes")
    err = refused(auth, {"x-api-key": "tw_" + "a" * 10_000})
    assert (err.reason, err.message) == ("AUTH_INVALID", "credential is longer than 8192 bytes")


def test_a_configured_token_size_above_the_default_is_the_limit(store: SqliteApiKeyStore, material: Material) -> None:
    keys = (JwtKeyConfig("hs", "HS256", secret=material.hs_secret),)
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, keys=keys, max_token_bytes=16_384)
    auth = Authenticator(store, JwtVerifier(config, clock=lambda: NOW))
    big = material.sign("hs", padding="x" * 12_000)
    assert 12_000 < len(big) < 16_384
    assert auth.authenticate({"authorization": f"Bearer {big}"}).id == "jwt:alice"
    err = refused(auth, {"authorization": "Bearer " + material.sign("hs", padding="x" * 17_000)})
    assert (err.reason, err.message) == ("AUTH_INVALID", "credential is longer than 16384 bytes")


def test_the_scheme_does_not_count_towards_the_credential_size(auth: Authenticator, material: Material) -> None:
    shortest = material.sign("hs", padding="")
    token = material.sign("hs", padding="x" * ((8192 - len(shortest)) * 3 // 4))  # (base64: 4 for 3)
    assert 8192 - 4 < len(token) <= 8192 < len(f"Bearer {token}")
    assert auth.authenticate({"authorization": f"Bearer {token}"}).kind == "jwt"


def test_bearer_that_is_neither_jwt_nor_api_key(auth: Authenticator) -> None:
    err = refused(auth, {"authorization": "Bearer opaque-session-token-123"})
    assert err.reason == "AUTH_INVALID" and "neither a JWT nor" in err.message
    assert "opaque-session-token-123" not in err.message
