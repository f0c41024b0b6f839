"""Authentication and authorization (pipeline steps 2 and 3): transport-neutral.

The gateway builds, once at start-up::

    jwt = JwtVerifier(JwtConfig.from_mapping(cfg["jwt"]))               # optional
    keys = ChainApiKeyStore(StaticApiKeyStore(cfg["api_keys"]),          # optional
                            SqliteApiKeyStore(cfg["auth_db"]))
    authenticator = Authenticator(api_keys=keys, jwt=jwt)

and per call: ``principal = authenticator.authenticate(ctx.headers)`` then
``authorize(principal, ctx.method, mode)``.
"""

from .api_keys import (
    ApiKeyStore,
    DuplicatePrefix,
    KeyNotFound,
    KeyRecord,
    ReadOnlyStore,
    create_key,
    hash_key,
    list_keys,
    revoke_key,
)
from .authenticator import AuthOutcome, Authenticator
from .jwt_verifier import JwtConfig, JwtVerifier, VerifiedToken
from .key_stores import ChainApiKeyStore, StaticApiKeyStore, StaticKeyConfig
from .permissions import METHOD_ACCESS, authorize, required_scopes
from .sqlite_key_store import SqliteApiKeyStore
from .verification_keys import JwksFile, JwtKeyConfig, KeyConfigError, VerificationKey

__all__ = [
    "ApiKeyStore",
    "AuthOutcome",
    "Authenticator",
    "ChainApiKeyStore",
    "DuplicatePrefix",
    "JwksFile",
    "JwtConfig",
    "JwtKeyConfig",
    "JwtVerifier",
    "KeyConfigError",
    "KeyNotFound",
    "KeyRecord",
    "METHOD_ACCESS",
    "ReadOnlyStore",
    "SqliteApiKeyStore",
    "StaticApiKeyStore",
    "StaticKeyConfig",
    "VerificationKey",
    "VerifiedToken",
    "authorize",
    "create_key",
    "hash_key",
    "list_keys",
    "required_scopes",
    "revoke_key",
]
