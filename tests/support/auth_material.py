"""Key material, token builders and a fake clock shared by the auth unit tests.

(A uniquely named module rather than conftest imports: test folders have no __init__.py.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ISSUER = "https://idp.test"
AUDIENCE = "tradewire"
NOW = 1_800_000_000.0  # fixed wall clock injected into the verifier


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_public(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class Material:
    hs_secret: bytes
    rsa_private: rsa.RSAPrivateKey
    ed_private: ed25519.Ed25519PrivateKey

    @property
    def rsa_public_pem(self) -> str:
        return pem_public(self.rsa_private)

    @property
    def ed_public_pem(self) -> str:
        return pem_public(self.ed_private)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": int(NOW) - 10,
            "nbf": int(NOW) - 10,
            "exp": int(NOW) + 600,
            "scope": "read trade:paper",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, kid: str | None, alg: str = "HS256", key: Any = None, **claims: Any) -> str:
        """A token signed by PyJWT with the key matching ``alg`` (or ``key``)."""
        if key is None:
            key = {"HS256": self.hs_secret, "RS256": self.rsa_private, "EdDSA": self.ed_private}[alg]
        headers = {} if kid is None else {"kid": kid}
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers=headers)

    @staticmethod
    def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None = None) -> str:
        """A hand-built token (for attacks PyJWT refuses to produce)."""
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"


def new_material() -> Material:
    return Material(
        hs_secret=b"0123456789abcdef0123456789abcdef-hs256-test-secret-padded-to-64-bytes!"[:64],
        rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed_private=ed25519.Ed25519PrivateKey.generate(),
    )
