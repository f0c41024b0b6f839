"""What looks_like_credential takes for a credential: an API key whole, cut short, padded or its
secret alone, beside the shapes it always knew — and what it must let through: Solana mints and
signatures (base58), uuids and hex ids, ordinary ids and text."""

from __future__ import annotations

import random
import re
import string
import uuid

import pytest
from solders.keypair import Keypair

from tradewire.core.audit.events import (_SECRET_VALUE_RE, _SECRET_VALUE_RES, REDACTED, looks_like_credential,
                                         redacted)
from tradewire.core.auth.api_keys import SECRET_LENGTH, generate_key

BASE62 = string.ascii_letters + string.digits
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# a secret as core/auth/api_keys.py makes them (this one holds 0, O, I and l: not base58)
SECRET = "aONgtTP0ZfnyBf1UQlEfBEPMXNZUsfetCa1mDsWFaM6"
assert len(SECRET) == SECRET_LENGTH
KEY = "tw_qafake01_" + SECRET

CREDENTIALS = [
    KEY,
    "tw_qafake01_" + SECRET[:31],  # one character short of the old 32-character rule
    "tw_qafake01_" + SECRET[:16],  # 95 bits of the secret
    KEY + "Zz9",  # padded
    "TW_QAFAKE01_" + SECRET,  # the prefix in the wrong case: the secret is still the secret
    "xtw_qafake01_" + SECRET[:20],  # inside a run of letters
    SECRET,  # the bare secret
    SECRET[:32],  # a piece of it as long as the shortest secret a key file may hold
    SECRET + "Q",
    f"rotated key {SECRET}",  # a cancel reason
    f"old:{SECRET}:2024",  # a correlation id
    f"order-{SECRET}",  # a request id
    "Bearer abcdefghijklmnop1234",
    "  basic dXNlcjpwYXNzd29yZDEyMzQ1Ng==  ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.c2lnbmF0dXJl",
    "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.",
    "-----BEGIN PRIVATE KEY-----",
    "key: -----begin rsa private key-----",
    "[" + ",".join(["12"] * 64) + "]",
]

NOT_CREDENTIALS = [
    "So11111111111111111111111111111111111111112",  # SOL (43 base58)
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",  # USDC (44 base58)
    "11111111111111111111111111111111",  # the system program (32 base58)
    "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW",  # a signature
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v:So11111111111111111111111111111111111111112",
    "6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b4c3a21",  # a uuid
    "6f1c2a9e3b7d4c1e9a2f0d8e5b4c3a21",  # its hex
    "6F1C2A9E3B7D4C1E9A2F0D8E5B4C3A21",
    "4bf92f3577b34da6a3ce929d0e0e4736",  # a W3C trace id
    "order-2024-01-15-0042",
    "01HQ3V7X9K2M4N6P8R0S1T3V5W",  # a ULID
    "2Z3mSsG9o7tKqQ0WbFzXjD8LhPc",  # a KSUID (27 base62): shorter than any secret
    "ThisIsAVeryLongCamelCaseIdentifierWithOutDigits",  # no digit: a word, not a secret
    "tw_qafake01_" + SECRET[:15],  # under 16 characters of a secret
    "tw_qafake01",  # a key's public label
    SECRET[:31],  # under 32 bare characters
    "cancelled by request: the user asked to stop the trade now",
    "127.0.0.1:35918",
    "[::1]:443",
    "bearer",
    "",
]


@pytest.mark.parametrize("value", CREDENTIALS)
def test_a_credential_is_recognised_whole_cut_short_padded_or_bare(value: str) -> None:
    assert looks_like_credential(value)
    assert redacted(value) == REDACTED


@pytest.mark.parametrize("value", NOT_CREDENTIALS)
def test_ids_mints_signatures_and_text_pass(value: str) -> None:
    assert not looks_like_credential(value)
    assert redacted(value) == value


def test_no_solana_address_or_signature_is_taken_for_a_credential() -> None:
    for _ in range(300):
        keypair = Keypair()
        pubkey, signature = str(keypair.pubkey()), str(keypair.sign_message(b"tradewire"))
        for value in (pubkey, signature, f"{pubkey}-{signature[:20]}", f"fill:{signature}"):
            assert not looks_like_credential(value), value
    rng = random.Random(7)
    for length in range(32, 89):  # any base58 run, whatever its length
        value = "".join(rng.choice(BASE58) for _ in range(length))
        assert not looks_like_credential(value), value


def test_uuids_in_every_spelling_pass() -> None:
    for _ in range(300):
        u = uuid.uuid4()
        for value in (str(u), u.hex, u.hex.upper(), f"req-{u.hex}", f"{u.hex}{uuid.uuid4().hex}"):
            assert not looks_like_credential(value), value


def test_generated_keys_are_always_found_and_their_secrets_nearly_always() -> None:
    found = 0
    total = 2000
    for _ in range(total):
        _, key = generate_key()
        secret = key.split("_", 2)[2]
        assert looks_like_credential(key) and looks_like_credential(key[:28])
        if not set(secret) & set("0OIl"):  # a secret that is base58 too is not told from a mint
            continue
        if secret.isalpha() or secret.lower() == secret or secret.upper() == secret:
            continue  # nor one without a digit or a case (~1 in 2,000): a word or a hex id is no secret
        assert looks_like_credential(secret) and looks_like_credential(f"id {secret} end"), secret
        found += 1
    assert found / total > 0.9  # 1 - (58/62)**43 = 94% of secrets hold one of 0, O, I, l


def test_the_one_pass_union_says_what_the_shapes_say_one_by_one() -> None:
    shapes = [re.compile(p) for p in _SECRET_VALUE_RES]
    rng = random.Random(11)
    pieces = [SECRET, SECRET[:32], "tw_abcdefgh_", "eyJhbGci.eyJzdWIi.", "-----BEGIN PRIVATE KEY-----",
              "Bearer ", "So11111111111111111111111111111111111111112", "0", "O", "l", "I", "x", "9", " ", "-",
              ":", "_", "."]
    corpus = CREDENTIALS + NOT_CREDENTIALS
    corpus += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    corpus += ["".join(rng.choice(BASE62 + " -_:.") for _ in range(rng.randint(12, 90))) for _ in range(3000)]
    for value in corpus:
        assert (_SECRET_VALUE_RE.search(value) is not None) == any(s.search(value) for s in shapes), value
