"""``tradewire keys create|list|revoke``: API-key administration on the gateway's key store.

Wire into the main parser with :func:`add_keys_subcommands`; the parsed namespace gets
``func`` = :func:`run_keys_command` (returns an exit code). ``create`` prints the new key
ALONE on stdout (so ``KEY=$(tradewire keys create ...)`` works) and everything else on
stderr; the key is never shown again. The store is the one the gateway reads with the same
configuration (``--config`` or ``$TRADEWIRE_CONFIG``, and ``TRADEWIRE_*`` overrides): with
``[shared] redis_url``, Redis (every replica's keys); else the SQLite database
``auth.api_key_db``, by default ``<data_dir>/auth.db``. ``--db`` names a SQLite database instead.
A key made or revoked is audited (``tw_admin``) where that configuration sends the audit trail
(core/audit/admin.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from tradewire.core.config import ConfigError, Settings, key_db_path, load_settings, misspelled_settings_said

from .api_keys import ApiKeyStore, KeyNotFound, KeyRecord, create_key, list_keys, normalize_prefix, revoke_key
from .jwt_verifier import token_namespace
from .sqlite_key_store import SqliteApiKeyStore

_DURATION_RE = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_LONGEST = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds (at most 36500d)."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m, 3600")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > _LONGEST.total_seconds():
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than 36500d: leave --expires-in out instead")
    return timedelta(seconds=seconds)


def default_db_path(config: str | None = None) -> str:
    """The key database the gateway reads with this configuration (ConfigError if it is invalid)."""
    return str(key_db_path(load_settings(config)))


def add_keys_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``keys`` with its ``create``, ``list`` and ``revoke`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=argparse.SUPPRESS, help="a SQLite key database (default: the gateway's store: Redis with "
                                                "[shared] redis_url, else auth.api_key_db, by default "
                                                "<data_dir>/auth.db, i.e. ./tradewire-data/auth.db)"
    )
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="the gateway's TOML file, to find its key store (default: $TRADEWIRE_CONFIG)")
    keys = subparsers.add_parser("keys", help="manage API keys", parents=[common])
    keys.set_defaults(func=run_keys_command, keys_command=None)
    sub = keys.add_subparsers(dest="keys_command", metavar="{create,list,revoke}")

    create = sub.add_parser("create", help="create a key (shown once)", parents=[common])
    create.add_argument("--owner", required=True, help="principal id that will own trades made with the key")
    create.add_argument("--scopes", required=True, help="comma-separated, e.g. read,trade:paper")
    create.add_argument("--name", default="", help="a label for humans")
    create.add_argument("--expires-in", type=parse_duration, default=None, help="e.g. 30d, 12h (default: never)")

    listing = sub.add_parser("list", help="list keys (never shows secrets)", parents=[common])
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    revoke = sub.add_parser("revoke", help="revoke a key by its prefix", parents=[common])
    revoke.add_argument("prefix", help="e.g. tw_ab12cd34")
    return keys


def run_keys_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    command = getattr(args, "keys_command", None)
    if command is None:
        print("usage: tradewire keys {create,list,revoke} [--db PATH] ...", file=err)
        return 2
    db, config = getattr(args, "db", None), getattr(args, "config", None)
    try:
        settings = load_settings(config, env=_beside_database(db) if db and not config else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    # (as `tradewire serve` does: TRADEWIRE_SHARED_REDIS_URL would have put the key in a local
    # database no replica reads, and said nothing)
    for warning in misspelled_settings_said(os.environ):
        print(f"warning: {warning}", file=err)
    if db is None and settings.shared.redis_url:
        return _run_on_redis(args, command, settings, out, err)
    db = db or str(key_db_path(settings))
    if command != "create" and not Path(db).exists():
        print(f"error: no key database at {db}", file=err)
        return 1
    if not Path(db).exists():  # where it is, in full: a relative data_dir is the current folder's
        print(f"note: there was no key database at {Path(db).resolve()}: a new one is made", file=err)
    try:
        with SqliteApiKeyStore(db) as store:
            return _act(store, args, command, _Audit(settings, "sqlite", db, err), out, err)
    except sqlite3.Error as exc:
        print(f"error: {db} is not a usable key database ({exc})", file=err)
        return 1


def _beside_database(db: str) -> dict[str, str]:
    """The environment to read settings with when only ``--db`` names the store: without a
    configuration the audit row goes beside the database, where the gateway keeping its keys
    there (``<data_dir>/auth.db``) keeps its journal (``<data_dir>/audit.jsonl``)."""
    env = dict(os.environ)
    if "TRADEWIRE_CONFIG" not in env:
        env.setdefault("TRADEWIRE_STORAGE__DATA_DIR", str(Path(db).resolve().parent))
    return env


def _run_on_redis(args: argparse.Namespace, command: str, settings: Settings, out: TextIO, err: TextIO) -> int:
    from tradewire.core.shared import STORE_OUTAGES, command_client, not_answering, store_location
    from tradewire.core.shared.redis_key_store import RedisApiKeyStore

    client = command_client(settings.shared.redis_url)
    try:
        audit = _Audit(settings, "redis", store_location(client), err)
        return _act(RedisApiKeyStore(client), args, command, audit, out, err, where=" in the shared store")
    except STORE_OUTAGES as exc:
        print(f"error: {not_answering(exc)}", file=err)
        return 1
    finally:
        client.close()


class _Audit:
    """The ``tw_admin`` row of a change to one key store."""

    def __init__(self, settings: Settings, store: str, location: str, err: TextIO) -> None:
        self.settings, self.store, self.location, self.err = settings, store, location, err

    def __call__(self, action: str, record: KeyRecord, detail: str = "") -> None:
        from tradewire.core.audit.admin import record_admin_action

        record_admin_action(self.settings, self.err, action=action, target=record.key_id, principal=record.owner,
                            store=self.store, location=self.location, detail=detail)


def _act(store: ApiKeyStore, args: argparse.Namespace, command: str, audit: _Audit, out: TextIO, err: TextIO,
         where: str = "") -> int:
    try:
        if command == "create":
            _refuse_token_namespace(args.owner, audit.settings)
            scopes = [s for s in args.scopes.split(",") if s.strip()]
            key, record = create_key(store, args.owner, args.name, scopes, args.expires_in)
            print(key, file=out)
            print(f"created {_describe(record)}{where}", file=err)
            print("store this key now: it is shown only once and cannot be recovered", file=err)
            audit("key_created", record, f"scopes={','.join(sorted(record.scopes))} "
                                         f"expires={_when(record.expires_at) or 'never'} name={record.name!r}")
        elif command == "list":
            _print_list(list_keys(store), args.json, out)
        else:
            known = store.get(normalize_prefix(args.prefix))
            record = revoke_key(store, args.prefix)
            if known is not None and known.revoked_at is not None:
                print(f"{record.key_id} (owner {record.owner}) was already revoked at {_when(record.revoked_at)}"
                      f"{where}", file=out)
                audit("key_revoked", record, f"already revoked at {_when(record.revoked_at)}")
            else:
                print(f"revoked {record.key_id} (owner {record.owner}){where}", file=out)
                audit("key_revoked", record)
    except (ValueError, KeyNotFound) as exc:
        message = f"no key with prefix tw_{exc.args[0]}" if isinstance(exc, KeyNotFound) else str(exc)
        print(f"error: {message}{where if isinstance(exc, KeyNotFound) else ''}", file=err)
        if isinstance(exc, KeyNotFound) and exc.args[0] in _configured_prefixes(audit.settings):
            # (else "no key" reads as "no such key", while the gateway still takes it)
            print(f"tw_{exc.args[0]} is a key of the configuration ([[auth.api_keys]]): to revoke it, remove it "
                  "there and restart the gateway", file=err)
        return 1
    return 0


def _configured_prefixes(settings: Settings) -> set[str]:
    return {entry.prefix.removeprefix("tw_") for entry in settings.auth.api_keys}


def _refuse_token_namespace(owner: str, settings: Settings) -> None:
    """A key's owner may not be a JWT caller's principal (``jwt:<sub>``): the key would act on
    that subject's trades, limits and request ids."""
    prefix = token_namespace(owner, settings.auth.jwt)
    if prefix:
        raise ValueError(f"owner {owner!r} is a JWT caller's name (principal_prefix {prefix!r}): "
                         "choose an owner without that prefix")


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m tradewire.core.auth.cli keys ...``."""
    parser = argparse.ArgumentParser(prog="tradewire")
    add_keys_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _describe(record: KeyRecord) -> str:
    expires = _when(record.expires_at) if record.expires_at else "never"
    return f"{record.key_id} owner={record.owner} scopes={','.join(sorted(record.scopes))} expires={expires}"


def _print_list(records: list[KeyRecord], as_json: bool, out: TextIO) -> None:
    if as_json:
        for r in records:
            row = {
                "key_id": r.key_id,
                "owner": r.owner,
                "name": r.name,
                "scopes": sorted(r.scopes),
                "created_at": _when(r.created_at),
                "expires_at": _when(r.expires_at),
                "revoked_at": _when(r.revoked_at),
                "status": r.status(),
            }
            print(json.dumps(row), file=out)
        return
    rows = [("KEY", "OWNER", "NAME", "SCOPES", "CREATED", "EXPIRES", "STATUS")]
    rows += [
        (
            r.key_id,
            r.owner,
            r.name,
            ",".join(sorted(r.scopes)),
            _when(r.created_at),
            _when(r.expires_at) or "never",
            r.status(),
        )
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


if __name__ == "__main__":
    raise SystemExit(main())
