"""Turn request headers into a Principal (pipeline step 2), or a precise refusal.

Credentials: ``authorization: Bearer <token>`` — a JWT when the token has exactly two
dots, an API key otherwise — or ``x-api-key: <key>``. Sending both is refused (two
credentials would make "who is calling" ambiguous). Header names arrive lower-cased.

Synchronous by design: JWT verification is pure CPU and an API-key check is an
in-memory cache hit or one indexed SQLite read, all measured in µs
(bench/auth_bench.py), so calling it on the event loop blocks nothing noticeable.

Every refusal is a TradewireError whose metadata carries ``credential`` (``tw_<prefix>``,
``jwt:<kid>``, ``none`` ...) and ``credential_kind`` for the audit trail — never a secret.
:meth:`Authenticator.attempt` returns the same facts as an :class:`AuthOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tradewire.core.context import Principal
from tradewire.core.errors import TradewireError

from .api_keys import ApiKeyStore
from .jwt_verifier import JwtVerifier

KIND_API_KEY = "api_key"
KIND_JWT = "jwt"
# The longest credential read; a JWT configuration may allow longer tokens ([auth.jwt] max_token_bytes).
MAX_CREDENTIAL_BYTES = 8192
_KNOWN_SCHEMES = {"basic", "digest", "token", "apikey", "api-key", "negotiate", "hoba", "mutual", "dpop"}


@dataclass(frozen=True)
class AuthOutcome:
    """One authentication attempt, for the audit trail. ``credential`` is safe to log."""

    principal: Principal | None
    credential: str
    credential_kind: str
    reason: str | None = None  # None on success
    error: TradewireError | None = None

    @property
    def ok(self) -> bool:
        return self.principal is not None

    @classmethod
    def from_error(cls, error: TradewireError) -> AuthOutcome:
        return cls(
            principal=None,
            credential=error.metadata.get("credential", "none"),
            credential_kind=error.metadata.get("credential_kind", "none"),
            reason=error.reason,
            error=error,
        )


class Authenticator:
    def __init__(self, api_keys: ApiKeyStore | None = None, jwt: JwtVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.jwt = jwt
        # A configured token size is the real limit: a cap below it would refuse tokens the
        # configuration accepts, saying another number.
        self.max_credential_bytes = max(MAX_CREDENTIAL_BYTES, jwt.config.max_token_bytes if jwt else 0)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's Principal, or TradewireError (AUTH_* / TOKEN_* / API_KEY_*)."""
        kind, credential = _credential(headers, self.max_credential_bytes)
        if kind == KIND_JWT:
            return self._from_jwt(credential)
        return self._from_api_key(credential)

    def attempt(self, headers: Mapping[str, str]) -> AuthOutcome:
        """Like :meth:`authenticate` but never raises for an auth failure."""
        try:
            principal = self.authenticate(headers)
        except TradewireError as exc:
            return AuthOutcome.from_error(exc)
        return AuthOutcome(principal, principal.label, principal.kind)

    # -- per credential kind -----------------------------------------------------------

    def _from_api_key(self, key: str) -> Principal:
        if self.api_keys is None:
            raise _refuse("AUTH_INVALID", "API key authentication is not enabled on this server", KIND_API_KEY)
        record = self.api_keys.verify(key)
        return Principal(id=record.owner, scopes=record.scopes, kind=KIND_API_KEY, label=record.key_id)

    def _from_jwt(self, token: str) -> Principal:
        if self.jwt is None:
            raise _refuse("AUTH_INVALID", "JWT authentication is not enabled on this server", KIND_JWT)
        verified = self.jwt.verify(token)
        return Principal(
            id=self.jwt.config.principal_prefix + verified.subject,
            scopes=verified.scopes,
            kind=KIND_JWT,
            label=f"jwt:{verified.subject}",
        )


def _credential(headers: Mapping[str, str], max_bytes: int = MAX_CREDENTIAL_BYTES) -> tuple[str, str]:
    """(kind, credential) from the headers, or the precise refusal."""
    authorization = headers.get("authorization")
    api_key = headers.get("x-api-key")
    if authorization is not None and api_key is not None:
        raise _refuse("AUTH_INVALID", "send exactly one credential: 'authorization' or 'x-api-key', not both")
    if authorization is None and api_key is None:
        raise _refuse(
            "AUTH_MISSING",
            "no credentials: send 'authorization: Bearer <token or API key>' or 'x-api-key: <API key>'",
        )
    header = "authorization" if authorization is not None else "x-api-key"
    value = (authorization if authorization is not None else api_key).strip()
    if not value:
        raise _refuse("AUTH_INVALID", f"{header} header is empty", KIND_API_KEY if api_key is not None else "none")
    if "," in value:  # the header came more than once (joined, see combine_headers): no credential has a comma
        raise _refuse("AUTH_INVALID", f"send exactly one credential: the '{header}' header came more than once")
    if api_key is not None:
        return KIND_API_KEY, _within(value, max_bytes)
    # RFC 7235 separates the scheme from the token with spaces; a tab is taken as one too
    scheme, *rest = value.split(maxsplit=1)
    token = rest[0] if rest else ""
    if scheme.lower() == "bearer":
        token = _within(token, max_bytes)
        if not token:
            raise _refuse("AUTH_INVALID", "authorization header has the Bearer scheme but no token")
        if token.count(".") == 2:
            return KIND_JWT, token
        if not token.startswith("tw_"):
            raise _refuse("AUTH_INVALID", "bearer token is neither a JWT nor a tradewire API key")
        return KIND_API_KEY, token
    if not token:  # a single word: most likely the bare token or key
        raise _refuse(
            "AUTH_INVALID", "authorization header is missing the Bearer scheme: send 'authorization: Bearer <token>'"
        )
    # echo the scheme only when it is a well-known one (anything else might be a secret)
    shown = f" {scheme!r}" if scheme.lower() in _KNOWN_SCHEMES else ""
    raise _refuse(
        "AUTH_INVALID", f"authorization scheme{shown} is not supported: send 'authorization: Bearer <token>'"
    )


def _within(credential: str, max_bytes: int) -> str:
    """The credential (its scheme not counted), or the refusal of one that is too long."""
    if len(credential) > max_bytes:
        raise _refuse("AUTH_INVALID", f"credential is longer than {max_bytes} bytes")
    return credential


def _refuse(reason: str, message: str, kind: str = "none") -> TradewireError:
    return TradewireError(reason, message, metadata={"credential": kind, "credential_kind": kind})
