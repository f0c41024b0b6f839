"""Verify bearer JWTs (PyJWT) and map every failure to one precise, safe reason.

Order of checks: size -> header (alg, kid, no crit) -> key lookup -> alg must equal the KEY's
algorithm -> signature + iss/aud/sub (PyJWT) -> exp/nbf/iat against an injectable clock
(so tests need no sleeps) -> scopes. Signature comes before any claim, so a tampered
token is AUTH_INVALID whatever its claims say. Messages never contain the token; the
only token-derived value echoed is the (sanitised) ``kid``, in metadata ``credential``; the
``sub`` (the principal's id, logged) must be printable ASCII of at most 255 characters.
Header fields such as ``jku``/``x5u``/``jwk`` are ignored: keys come only from config.

A caller presents the same token on every call until it expires, and checking its signature
is most of the cost (HS256 ~0.1 ms, EdDSA ~0.3 ms: bench/auth_bench.py). So a token that
verified is kept (by its exact text, at most ``cache_size`` of them) with the key that
verified it; presented again, its times are checked against the clock as before, and it is
taken only while that kid still names that very key (a JWKS reload that drops or replaces a
key drops what it verified). Only tokens that verified are kept: a forged one costs its check.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt

from tradewire.core.audit.events import looks_like_credential
from tradewire.core.errors import TradewireError

from ._text import safe_label
from .verification_keys import (
    SUPPORTED_ALGORITHMS,
    JwksFile,
    JwtKeyConfig,
    KeyConfigError,
    VerificationKey,
    load_config_key,
)

_B64URL_SEGMENT = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_SUBJECT = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class JwtConfig:
    """What the gateway builds from its configuration (see ``from_mapping`` for the shape)."""

    issuer: str | tuple[str, ...]
    audience: str | tuple[str, ...]
    keys: tuple[JwtKeyConfig, ...] = ()
    jwks_path: str | None = None
    jwks_check_interval_s: float = 5.0
    leeway_s: float = 30.0
    # Claims holding scopes, tried in order; each may be a space-separated string or a list.
    scope_claims: tuple[str, ...] = ("scope", "scp", "scopes")
    # Without a kid a token could only be matched by guessing; refuse it unless turned off,
    # in which case the single key whose algorithm matches the header is used.
    require_kid: bool = True
    # Prepended to ``sub`` to form Principal.id: by default a token's subject "alice" is not the
    # API-key owner "alice" (trades, rate limits and request ids are per principal). Empty: one
    # namespace, for an operator whose identity provider's subjects are the key owners.
    principal_prefix: str = "jwt:"
    max_token_bytes: int = 8192

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise KeyConfigError("JWT config needs a non-empty 'issuer' and 'audience'")
        for name in ("issuer", "audience"):  # compared with the token's claims: text only
            value = getattr(self, name)
            if not all(isinstance(v, str) and v for v in (value if isinstance(value, tuple) else (value,))):
                raise KeyConfigError(f"JWT config '{name}' must be a string or a list of strings, got {value!r}")
        if not self.keys and not self.jwks_path:
            raise KeyConfigError("JWT config needs 'keys' or 'jwks_path'")
        # a NaN leeway compares false with every time and an infinite one outlasts every token:
        # either would let expired tokens through
        if not all(math.isfinite(v) and v >= 0 for v in (self.leeway_s, self.jwks_check_interval_s)):
            raise KeyConfigError("leeway_s and jwks_check_interval_s must be finite numbers >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JwtConfig:
        """Build from plain config data, e.g.::

            {"issuer": "https://idp.example", "audience": "tradewire",
             "keys": [{"kid": "k1", "algorithm": "HS256", "secret": "..."},
                      {"kid": "k2", "algorithm": "RS256", "public_key_pem": "-----BEGIN..."}],
             "jwks_path": "/etc/tradewire/jwks.json", "jwks_check_interval_s": 5,
             "leeway_s": 30, "scope_claims": ["scope", "scp"]}
        """
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise KeyConfigError(f"unknown JWT config field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        for name in ("issuer", "audience"):
            if isinstance(values.get(name), list | tuple):
                values[name] = tuple(values[name])
        values["keys"] = tuple(
            k if isinstance(k, JwtKeyConfig) else JwtKeyConfig.from_mapping(k) for k in values.get("keys", ())
        )
        if "scope_claims" in values:  # one claim's name, or a list of them
            claims = values["scope_claims"]
            values["scope_claims"] = (claims,) if isinstance(claims, str) else tuple(claims)
        return cls(**values)


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    scopes: frozenset[str]
    kid: str
    algorithm: str
    expires_at: float
    claims: Mapping[str, Any] = field(repr=False)


def token_namespace(owner: str, jwt: Mapping[str, Any] | None) -> str | None:
    """The JWT callers' principal prefix when ``owner`` is in it (``jwt:<sub>``), else None:
    an API key owned there would act on that subject's trades, limits and request ids.
    ``jwt``: the ``[auth.jwt]`` mapping (the default prefix when there is none)."""
    prefix = (jwt or {}).get("principal_prefix", JwtConfig.principal_prefix)
    return prefix if prefix and owner.startswith(prefix) else None


class JwtVerifier:
    """Verifies tokens against configured keys and/or a JWKS file. Sync: pure CPU, µs."""

    def __init__(
        self,
        config: JwtConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cache_size: int = 1024,
    ) -> None:
        self.config = config
        self._clock = clock
        # token → (what it verified to, its header's kid, the key that verified it)
        self._verified: OrderedDict[str, tuple[VerifiedToken, Any, VerificationKey]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._static: dict[str, VerificationKey] = {}
        for key_cfg in config.keys:
            key = load_config_key(key_cfg)
            if key.kid in self._static:
                raise KeyConfigError(f"duplicate JWT key id {key.kid!r}")
            self._static[key.kid] = key
        self._jwks = (
            JwksFile(config.jwks_path, config.jwks_check_interval_s, monotonic) if config.jwks_path else None
        )
        self._audience: str | list[str] = (
            config.audience if isinstance(config.audience, str) else list(config.audience)
        )

    # -- public ------------------------------------------------------------------------

    def verify(self, token: str) -> VerifiedToken:
        with self._lock:
            kept = self._verified.get(token) if isinstance(token, str) else None
        if kept is not None:
            verified, kid, key = kept
            credential = f"jwt:{safe_label(kid)}" if isinstance(kid, str) else "jwt"
            try:
                current = self._key_for(kid, verified.algorithm, credential)
            except TradewireError:
                current = None
            if current is key:
                try:
                    self._check_times(verified.claims, credential)
                except TradewireError:  # expired: it will not pass again
                    with self._lock:
                        self._verified.pop(token, None)
                    raise
                with self._lock:
                    if token in self._verified:
                        self._verified.move_to_end(token)
                return verified
            with self._lock:
                self._verified.pop(token, None)
        verified, kid, key = self._verify(token)
        with self._lock:
            self._verified[token] = (verified, kid, key)
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return verified

    def _verify(self, token: str) -> tuple[VerifiedToken, Any, VerificationKey]:
        """The whole check: the token's claims, its header's kid and the key that verified it."""
        if not isinstance(token, str) or not token:
            raise _fail("AUTH_INVALID", "bearer token is empty")
        if len(token) > self.config.max_token_bytes:
            raise _fail("AUTH_INVALID", f"token is longer than {self.config.max_token_bytes} bytes")
        header = _read_header(token)

        alg = header.get("alg")
        kid = header.get("kid")
        credential = f"jwt:{safe_label(kid)}" if isinstance(kid, str) else "jwt"
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise _fail("TOKEN_ALGORITHM_REJECTED", f"token algorithm {safe_label(alg)!r} is not accepted", credential)
        if "crit" in header:  # RFC 7515 4.1.11: extensions a verifier does not know must be refused
            raise _fail("AUTH_INVALID", "token header has 'crit': critical header extensions are not supported",
                        credential)
        key = self._key_for(kid, alg, credential)
        if alg != key.algorithm:  # (which algorithm the key takes is not for an unauthenticated caller)
            raise _fail("TOKEN_ALGORITHM_REJECTED",
                        f"token algorithm {alg!r} does not match its key {safe_label(key.kid)!r}", credential)
        claims = self._decode(token, key, credential)
        expires_at = self._check_times(claims, credential)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise _fail("AUTH_INVALID", "token 'sub' claim is empty", credential)
        if not _SUBJECT.fullmatch(subject):  # it becomes the principal id: in store keys, logs, the audit
            raise _fail("AUTH_INVALID", "token 'sub' claim must be 1 to 255 printable ASCII characters "
                        "without spaces (OpenID Connect's limit)", credential)
        if looks_like_credential(subject):  # (as a request id is refused: a principal id is on every log line)
            raise _fail("AUTH_INVALID", "token 'sub' claim looks like a credential (a JWT, an API key or its "
                        "secret): the subject names the caller in logs and the audit, so it must not be a secret",
                        credential)
        return VerifiedToken(
            subject=subject,
            scopes=self._scopes(claims, credential),
            kid=key.kid,
            algorithm=key.algorithm,
            expires_at=expires_at,
            claims=MappingProxyType(claims),
        ), kid, key

    def known_kids(self) -> list[str]:
        kids = set(self._static)
        if self._jwks is not None:
            kids |= set(self._jwks.keys())
        return sorted(kids)

    # -- steps -------------------------------------------------------------------------

    def _key_for(self, kid: Any, alg: str, credential: str) -> VerificationKey:
        if kid is None:
            if self.config.require_kid:
                raise _fail("TOKEN_KEY_UNKNOWN", "token header has no 'kid'", credential)
            candidates = [k for k in self._all_keys() if k.algorithm == alg]
            if len(candidates) != 1:
                raise _fail("TOKEN_KEY_UNKNOWN", "token header has no 'kid' and no single key matches it", credential)
            return candidates[0]
        key = self._static.get(kid)
        if key is None and self._jwks is not None:
            key = self._jwks.get(kid)
        if key is None:
            raise _fail("TOKEN_KEY_UNKNOWN", f"no key with kid {safe_label(kid)!r}", credential)
        return key

    def _all_keys(self) -> list[VerificationKey]:
        keys = list(self._static.values())
        if self._jwks is not None:
            keys += [k for kid, k in self._jwks.keys().items() if kid not in self._static]
        return keys

    def _decode(self, token: str, key: VerificationKey, credential: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],  # from the key, never from the token
                audience=self._audience,
                issuer=self.config.issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_signature": True,
                    "verify_iss": True,
                    "verify_aud": True,
                    "verify_sub": True,
                    # times are checked in _check_times against the injectable clock
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAlgorithmError:
            raise _fail(
                "TOKEN_ALGORITHM_REJECTED", "token algorithm is not accepted for this key", credential
            ) from None
        except jwt.InvalidSignatureError:
            raise _fail("AUTH_INVALID", "token signature is invalid", credential) from None
        except jwt.MissingRequiredClaimError as exc:
            reason = {"iss": "TOKEN_ISSUER_INVALID", "aud": "TOKEN_AUDIENCE_INVALID"}.get(exc.claim, "AUTH_INVALID")
            raise _fail(reason, f"token has no {exc.claim!r} claim", credential) from None
        except jwt.InvalidIssuerError:
            raise _fail("TOKEN_ISSUER_INVALID", "token issuer is not accepted", credential) from None
        except jwt.InvalidAudienceError:
            raise _fail("TOKEN_AUDIENCE_INVALID", "token audience does not include this service", credential) from None
        except jwt.exceptions.InvalidSubjectError:
            raise _fail("AUTH_INVALID", "token 'sub' claim must be a string", credential) from None
        except jwt.DecodeError:
            raise _fail("AUTH_INVALID", "token is malformed", credential) from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _fail("AUTH_INVALID", "token could not be verified", credential) from None

    def _check_times(self, claims: Mapping[str, Any], credential: str) -> float:
        now, leeway = self._clock(), self.config.leeway_s
        values = {}
        for name in ("exp", "nbf", "iat"):
            if name in claims:
                value = claims[name]
                try:  # an integer past a float's range (10**400) is no time either
                    seconds = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
                except OverflowError:
                    seconds = None
                if seconds is None or not math.isfinite(seconds):
                    raise _fail("AUTH_INVALID", f"token {name!r} claim must be a number of seconds", credential)
                values[name] = seconds
        if values["exp"] <= now - leeway:
            raise _fail("TOKEN_EXPIRED", "token has expired", credential)
        for name in ("nbf", "iat"):
            if name in values and values[name] > now + leeway:
                raise _fail("TOKEN_NOT_YET_VALID", f"token is not valid yet ({name} is in the future)", credential)
        return values["exp"]

    def _scopes(self, claims: Mapping[str, Any], credential: str) -> frozenset[str]:
        for name in self.config.scope_claims:
            if name not in claims:
                continue
            value = claims[name]
            if isinstance(value, str):
                # RFC 6749 §3.3: scopes are separated by spaces (%x20) and nothing else. A tab, line break
                # or Unicode space is part of one (unknown) scope, never a separator making two.
                return frozenset(s for s in value.split(" ") if s)
            if isinstance(value, Sequence) and all(isinstance(s, str) for s in value):
                return frozenset(s for s in value if s)
            raise _fail("AUTH_INVALID", f"token {name!r} claim must be a string or a list of strings", credential)
        return frozenset()


def _read_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header — only to pick the key; PyJWT re-parses and checks it.
    (Done here because ``jwt.get_unverified_header`` decodes the whole token, doubling
    the per-request parse cost.)"""
    segment, _, rest = token.partition(".")
    if rest.count(".") != 1 or not _B64URL_SEGMENT.fullmatch(segment):
        raise _fail("AUTH_INVALID", "token is malformed (not a compact JWS)")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment.rstrip("=") + "=" * (-len(segment.rstrip("=")) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise _fail("AUTH_INVALID", "token header is malformed") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise _fail("AUTH_INVALID", "token header is malformed")
    return header


def _fail(reason: str, message: str, credential: str = "jwt") -> TradewireError:
    return TradewireError(reason, message, metadata={"credential": credential, "credential_kind": "jwt"})
