"""The LIVE wallet: a keypair loaded once, from a file or an environment variable.

The secret never leaves this object: no repr, str, log line, error message or exception
chain shows it (parse errors say what was wrong with the format, never the content).
Only the public key is ever shown.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

log = logging.getLogger("tradewire.live.wallet")


class WalletError(Exception):
    """The keypair cannot be loaded; the message never contains the secret."""


class Wallet:
    __slots__ = ("_keypair", "pubkey")

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self.pubkey: Pubkey = keypair.pubkey()

    def __repr__(self) -> str:
        return f"Wallet({self.pubkey})"

    __str__ = __repr__

    def __reduce__(self):  # never pickled (e.g. into a process pool or a cache)
        raise TypeError("a Wallet cannot be serialized")

    @property
    def address(self) -> str:
        return str(self.pubkey)

    def sign(self, tx: VersionedTransaction) -> VersionedTransaction:
        """Fill this wallet's signature slot, keeping any co-signer's signature as it is."""
        msg = tx.message
        signers = list(msg.account_keys)[: msg.header.num_required_signatures]
        if self.pubkey not in signers:
            raise WalletError("the transaction does not require this wallet's signature")
        sigs = list(tx.signatures)
        sigs[signers.index(self.pubkey)] = self._keypair.sign_message(to_bytes_versioned(msg))
        return VersionedTransaction.populate(msg, sigs)

    def sign_new(self, msg) -> VersionedTransaction:
        """Sign a message whose only signer is this wallet."""
        return VersionedTransaction(msg, [self._keypair])

    def signature_for(self, tx: VersionedTransaction) -> Signature:
        signers = list(tx.message.account_keys)[: tx.message.header.num_required_signatures]
        return tx.signatures[signers.index(self.pubkey)]


def parse_keypair(text: str, source: str) -> Keypair:
    """A keypair from a Solana CLI JSON array of 64 bytes, or a base58 64-byte secret."""
    text = text.strip()
    try:
        if text.startswith("["):
            raw = json.loads(text)
            if not isinstance(raw, list) or len(raw) != 64 or not all(isinstance(b, int) and 0 <= b < 256 for b in raw):
                raise ValueError
            keypair = Keypair.from_bytes(bytes(raw))
        else:
            keypair = Keypair.from_base58_string(text)
    except Exception:  # noqa: BLE001 - the reason could quote the secret: say only what is expected
        raise WalletError(f"{source}: not a Solana keypair (expected a JSON array of 64 bytes or a "
                          f"base58 64-byte secret key)") from None
    return keypair


def load_wallet(path: Path | None, env_name: str, environ: Mapping[str, str] | None = None) -> Wallet:
    """Load the keypair once: from ``path`` when set, else from the variable ``env_name``."""
    environ = os.environ if environ is None else environ
    if path is not None:
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise WalletError(f"keypair file {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("keypair file is readable by other users; chmod 600 it", extra={"path": str(path)})
        wallet = Wallet(parse_keypair(text, f"keypair file {path}"))
    else:
        text = environ.get(env_name)
        if not text:
            raise WalletError(f"no LIVE keypair: set live.wallet_path or the environment variable {env_name}")
        wallet = Wallet(parse_keypair(text, f"environment variable {env_name}"))
    log.info("live wallet loaded", extra={"wallet": wallet.address})
    return wallet
