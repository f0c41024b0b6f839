"""JWT verification keys, each bound to exactly ONE algorithm, from config or a JWKS file.

Binding the algorithm to the key — instead of trusting the token's ``alg`` header — is
what defeats algorithm confusion (``alg: none``; HS256 "signed" with an RS256 public key;
RFC 8725 §2.1). Keys are parsed and size-checked once, at load time, so a bad key fails
start-up (or is skipped on a JWKS reload) rather than failing requests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from ._text import safe_label

log = logging.getLogger("tradewire.auth.keys")

# Supported algorithm -> the JWK key type it needs. Anything else (``none`` included) is
# refused. Add a row (and a check in ``_checked_key``) to support another algorithm.
SUPPORTED_ALGORITHMS: Mapping[str, str] = {"HS256": "oct", "RS256": "RSA", "EdDSA": "OKP"}
MIN_HMAC_SECRET_BYTES = 32  # RFC 7518 §3.2: at least the hash output size
MIN_RSA_BITS = 2048


class KeyConfigError(ValueError):
    """A configured key or JWKS file is unusable. Messages name the kid, never key material."""


@dataclass(frozen=True)
class VerificationKey:
    """A ready-to-use key: ``key`` is HMAC secret bytes or a cryptography public key."""

    kid: str
    algorithm: str
    key: Any = field(repr=False)
    source: str = "config"


@dataclass(frozen=True)
class JwtKeyConfig:
    """One configured key: ``secret`` for HS256, ``public_key_pem`` for RS256 / EdDSA."""

    kid: str
    algorithm: str
    secret: str | bytes | None = field(default=None, repr=False)
    public_key_pem: str | bytes | None = field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JwtKeyConfig:
        unknown = set(data) - {"kid", "algorithm", "alg", "secret", "public_key_pem"}
        if unknown:
            raise KeyConfigError(f"unknown JWT key field(s): {', '.join(sorted(unknown))}")
        return cls(
            kid=str(data.get("kid", "")),
            algorithm=str(data.get("algorithm", data.get("alg", ""))),
            secret=data.get("secret"),
            public_key_pem=data.get("public_key_pem"),
        )


def load_config_key(cfg: JwtKeyConfig) -> VerificationKey:
    """Parse and check one configured key."""
    kid = _checked_kid(cfg.kid)
    alg = _checked_algorithm(cfg.algorithm, kid)
    if alg == "HS256":
        if cfg.secret is None or cfg.public_key_pem is not None:
            raise KeyConfigError(f"key {kid!r}: HS256 needs 'secret' (and no public_key_pem)")
        material: Any = cfg.secret.encode() if isinstance(cfg.secret, str) else bytes(cfg.secret)
    else:
        if cfg.public_key_pem is None or cfg.secret is not None:
            raise KeyConfigError(f"key {kid!r}: {alg} needs 'public_key_pem' (and no secret)")
        pem = cfg.public_key_pem.encode() if isinstance(cfg.public_key_pem, str) else cfg.public_key_pem
        try:
            material = load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise KeyConfigError(f"key {kid!r}: public_key_pem is not a PEM public key") from exc
    return VerificationKey(kid, alg, _checked_key(kid, alg, material), "config")


def key_from_jwk(jwk: Mapping[str, Any], source: str = "jwks") -> VerificationKey:
    """One RFC 7517 JWK -> key. ``alg`` is taken from the JWK or, when absent, implied by
    ``kty``/``crv`` (RSA -> RS256, OKP/Ed25519 -> EdDSA, oct -> HS256); it must match ``kty``."""
    if not isinstance(jwk, Mapping):
        raise KeyConfigError("JWK entry is not an object")
    kid = _checked_kid(jwk.get("kid"))
    if jwk.get("use", "sig") != "sig":
        raise KeyConfigError(f"key {kid!r}: use is not 'sig'")
    key_ops = jwk.get("key_ops")  # RFC 7517 §4.3: when listed, the operations the key is meant for
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise KeyConfigError(f"key {kid!r}: key_ops does not include 'verify'")
    kty = jwk.get("kty")
    alg = jwk.get("alg") or {"RSA": "RS256", "OKP": "EdDSA", "oct": "HS256"}.get(str(kty), "")
    alg = _checked_algorithm(alg, kid)
    if SUPPORTED_ALGORITHMS[alg] != kty:
        raise KeyConfigError(f"key {kid!r}: kty {safe_label(kty)!r} cannot be used with {alg}")
    try:
        material = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise KeyConfigError(f"key {kid!r}: invalid {kty} JWK") from exc
    return VerificationKey(kid, alg, _checked_key(kid, alg, material), source)


def parse_jwks(data: str | bytes, source: str = "jwks") -> dict[str, VerificationKey]:
    """A JWKS document -> keys by kid. Unusable entries (other algorithms, encryption keys)
    are skipped with a warning; a document that is not a JWKS at all is an error."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # (RecursionError: nested too deep)
        raise KeyConfigError(f"{source}: not valid JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyConfigError(f"{source}: a JWKS needs a top-level 'keys' list")
    keys: dict[str, VerificationKey] = {}
    for index, entry in enumerate(doc["keys"]):
        try:
            key = key_from_jwk(entry, source)
        except KeyConfigError as exc:
            log.warning("skipping JWKS entry %d in %s: %s", index, source, exc)
            continue
        if key.kid in keys:
            log.warning("skipping duplicate kid %r in %s", key.kid, source)
            continue
        keys[key.kid] = key
    return keys


class JwksFile:
    """Keys from a local JWKS file, reloaded when the file changes.

    The file's (mtime, size, inode) is checked at most once per ``check_interval_s`` (so a
    stat is not paid per request); a change triggers a re-parse. A reload that fails keeps
    the previous keys — a half-written file must not lock everyone out. The first load
    must succeed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._interval = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        try:
            signature = self._signature()
            self._keys = parse_jwks(self.path.read_bytes(), str(self.path))
        except OSError as exc:
            raise KeyConfigError(f"cannot read JWKS file {self.path}") from exc
        self._loaded_signature = signature
        self._checked_at = clock()
        log.info("loaded %d JWT key(s) from %s: %s", len(self._keys), self.path, sorted(self._keys))

    def get(self, kid: str) -> VerificationKey | None:
        self.maybe_reload()
        return self._keys.get(kid)

    def keys(self) -> Mapping[str, VerificationKey]:
        self.maybe_reload()
        return dict(self._keys)

    def maybe_reload(self) -> bool:
        """Reload if the check interval has passed and the file changed; True if reloaded."""
        now = self._clock()
        if now - self._checked_at < self._interval:
            return False
        with self._lock:
            if now - self._checked_at < self._interval:
                return False
            self._checked_at = now
            try:
                signature = self._signature()
                if signature == self._loaded_signature:
                    return False
                keys = parse_jwks(self.path.read_bytes(), str(self.path))
            except (OSError, KeyConfigError) as exc:
                log.warning(
                    "JWKS reload from %s failed, keeping %d previous key(s): %s", self.path, len(self._keys), exc
                )
                return False
            self._keys, self._loaded_signature = keys, signature
        log.info("reloaded %d JWT key(s) from %s: %s", len(keys), self.path, sorted(keys))
        return True

    def _signature(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)


# -- checks ---------------------------------------------------------------------------------


def _checked_kid(kid: Any) -> str:
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise KeyConfigError("every key needs a non-empty string 'kid' (at most 256 characters)")
    return kid


def _checked_algorithm(alg: Any, kid: str) -> str:
    # (a JWK's "alg" may be any JSON value: a list or an object is no name, and not hashable)
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
        supported = ", ".join(SUPPORTED_ALGORITHMS)
        raise KeyConfigError(f"key {kid!r}: algorithm {safe_label(alg)!r} is not supported (use one of {supported})")
    return str(alg)


def _checked_key(kid: str, alg: str, material: Any) -> Any:
    """Refuse weak or mismatched keys; reduce private keys to their public half."""
    if alg == "HS256":
        if not isinstance(material, bytes) or len(material) < MIN_HMAC_SECRET_BYTES:
            raise KeyConfigError(f"key {kid!r}: HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        try:  # PyJWT refuses PEM / SSH public keys used as an HMAC secret (key confusion)
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(material)
        except jwt.InvalidKeyError as exc:
            raise KeyConfigError(f"key {kid!r}: HS256 secret looks like an asymmetric key") from exc
        return material
    if alg == "RS256":
        if isinstance(material, rsa.RSAPrivateKey):
            material = material.public_key()
        if not isinstance(material, rsa.RSAPublicKey):
            raise KeyConfigError(f"key {kid!r}: RS256 needs an RSA public key")
        if material.key_size < MIN_RSA_BITS:
            raise KeyConfigError(f"key {kid!r}: RSA key must be at least {MIN_RSA_BITS} bits")
        return material
    if isinstance(material, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        material = material.public_key()
    if not isinstance(material, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise KeyConfigError(f"key {kid!r}: EdDSA needs an Ed25519 or Ed448 public key")
    return material
