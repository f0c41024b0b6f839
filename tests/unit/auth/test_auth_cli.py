"""`tradewire keys create|list|revoke`: the functions and the argparse wiring."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

import pytest
from support.redis_server import RedisServer

from tradewire.core.auth import cli
from tradewire.core.auth.api_keys import create_key, list_keys, revoke_key
from tradewire.core.auth.sqlite_key_store import SqliteApiKeyStore
from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_key_store import RedisApiKeyStore


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_functions_create_list_revoke(tmp_path) -> None:
    with SqliteApiKeyStore(tmp_path / "auth.db") as store:
        key, record = create_key(store, "alice", "bot", ["read", "trade:paper"], expires_in=timedelta(days=30))
        listed = list_keys(store)
        assert [r.prefix for r in listed] == [record.prefix]
        assert key.split("_", 2)[2] not in repr(listed)
        revoke_key(store, record.prefix)
        assert list_keys(store)[0].status() == "revoked"


def test_cli_create_list_revoke(tmp_path, capsys) -> None:
    db = str(tmp_path / "sub" / "auth.db")
    code, out, err = run(
        capsys, "keys", "create", "--db", db, "--owner", "alice", "--scopes", "read,trade:paper",
        "--expires-in", "30d", "--name", "bot-1",
    )  # fmt: skip
    assert code == 0
    key = out.strip()
    assert out.count("\n") == 1 and key.startswith("tw_")  # the key alone on stdout
    assert "shown only once" in err and key not in err
    with SqliteApiKeyStore(db) as store:
        record = store.verify(key)
    assert record.owner == "alice" and record.scopes == {"read", "trade:paper"} and record.name == "bot-1"
    assert record.expires_at is not None
    assert (record.expires_at - record.created_at) == timedelta(days=30)

    code, out, _ = run(capsys, "keys", "list", "--db", db)
    assert code == 0
    assert record.key_id in out and "alice" in out and "active" in out
    assert key.split("_", 2)[2] not in out

    code, out, _ = run(capsys, "keys", "--db", db, "list", "--json")  # --db before the subcommand works too
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0]["key_id"] == record.key_id and rows[0]["status"] == "active"
    assert key.split("_", 2)[2] not in out

    code, out, _ = run(capsys, "keys", "revoke", "--db", db, record.key_id)
    assert code == 0 and f"revoked {record.key_id}" in out
    with SqliteApiKeyStore(db) as store, pytest.raises(TradewireError) as caught:
        store.verify(key)
    assert caught.value.reason == "API_KEY_REVOKED"
    _, out, _ = run(capsys, "keys", "list", "--db", db)
    assert "revoked" in out


def test_cli_errors(tmp_path, capsys) -> None:
    db = str(tmp_path / "auth.db")
    code, _, err = run(capsys, "keys", "create", "--db", db, "--owner", "alice", "--scopes", "read,god")
    assert code == 1 and "unknown scope" in err
    code, out, _ = run(capsys, "keys", "create", "--db", db, "--owner", "alice", "--scopes", "read")
    key = out.strip()
    code, _, err = run(capsys, "keys", "revoke", "--db", db, "zzzzzzzz")
    assert code == 1 and "no key" in err
    code, _, err = run(capsys, "keys", "revoke", "--db", db, key)  # full key pasted by mistake
    assert code == 1 and key not in err and key.split("_", 2)[2] not in err
    code, _, err = run(capsys, "keys", "list", "--db", str(tmp_path / "missing.db"))
    assert code == 1 and "no key database" in err
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(SystemExit):
        cli.main(["keys", "create", "--db", db, "--owner", "a", "--scopes", "read", "--expires-in", "soon"])


def test_db_defaults_to_the_one_the_gateway_reads(tmp_path, capsys, monkeypatch) -> None:
    for name in ("TRADEWIRE_CONFIG", "TRADEWIRE_AUTH__API_KEY_DB", "TRADEWIRE_STORAGE__DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert cli.default_db_path() == "tradewire-data/auth.db"  # the gateway's default: <data_dir>/auth.db
    monkeypatch.setenv("TRADEWIRE_STORAGE__DATA_DIR", str(tmp_path / "data"))
    assert cli.default_db_path() == str(tmp_path / "data" / "auth.db")
    config = tmp_path / "gw.toml"
    config.write_text(f'[auth]\napi_key_db = "{tmp_path / "conf" / "keys.db"}"\n')
    code, _, _ = run(capsys, "keys", "create", "--config", str(config), "--owner", "bob", "--scopes", "read")
    assert code == 0 and (tmp_path / "conf" / "keys.db").exists()


def test_a_file_that_is_not_a_key_database_is_one_error_line(tmp_path, capsys) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    code, out, err = run(capsys, "keys", "list", "--db", str(garbage))
    assert code == 1 and err.strip().startswith("error:") and "not a usable key database" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_subcommands_attach_to_an_existing_parser() -> None:
    parser = argparse.ArgumentParser(prog="tradewire")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve")
    cli.add_keys_subcommands(sub)
    args = parser.parse_args(["keys", "revoke", "tw_abcdefgh", "--db", "x.db"])
    assert args.func is cli.run_keys_command and args.keys_command == "revoke" and args.db == "x.db"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 1209600), ("3600", 3600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert cli.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1y", "d", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


def test_with_a_shared_store_keys_are_made_and_revoked_in_redis(tmp_path, capsys, monkeypatch) -> None:
    """With `[shared] redis_url` (several replicas) the commands act on Redis: every replica's keys."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        monkeypatch.delenv("TRADEWIRE_CONFIG", raising=False)
        config = tmp_path / "gw.toml"
        config.write_text(f'[shared]\nredis_url = "{server.url}"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n')
        code, out, err = run(capsys, "keys", "create", "--config", str(config), "--owner", "alice", "--scopes", "read")
        key = out.strip()
        assert code == 0 and "in the shared store" in err
        assert not (tmp_path / "data" / "auth.db").exists()  # not in a local database
        record = RedisApiKeyStore(server.client()).verify(key)
        assert record.owner == "alice"
        code, out, _ = run(capsys, "keys", "list", "--config", str(config))
        assert code == 0 and record.key_id in out and "active" in out
        code, out, _ = run(capsys, "keys", "revoke", "--config", str(config), record.key_id)
        assert code == 0 and f"revoked {record.key_id}" in out
        with pytest.raises(TradewireError) as caught:
            RedisApiKeyStore(server.client()).verify(key)
        assert caught.value.reason == "API_KEY_REVOKED"
        code, _, err = run(capsys, "keys", "revoke", "--config", str(config), "tw_zzzzzzzz")
        assert code == 1 and err.strip() == "error: no key with prefix tw_zzzzzzzz in the shared store"

        server.halt()
        code, out, err = run(capsys, "keys", "list", "--config", str(config))
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
        assert err.startswith("error: the shared store ([shared] redis_url) does not answer") and "Traceback" not in err
    finally:
        server.stop()


def test_a_key_for_a_jwt_callers_name_an_unprintable_name_or_an_endless_expiry_is_refused(tmp_path, capsys) -> None:
    db = str(tmp_path / "auth.db")
    code, out, err = run(capsys, "keys", "create", "--db", db, "--owner", "jwt:alice", "--scopes", "read")
    assert code == 1 and out == "" and "is a JWT caller's name (principal_prefix 'jwt:')" in err
    code, out, err = run(capsys, "keys", "create", "--db", db, "--owner", "alice", "--scopes", "read",
                         "--name", "bot\nFAKE  admin  *  active")
    assert code == 1 and out == "" and "name must be printable text" in err
    with pytest.raises(SystemExit):  # argparse's own one-line error, not an OverflowError traceback
        cli.main(["keys", "create", "--db", db, "--owner", "alice", "--scopes", "read", "--expires-in", "99999999d"])
    assert "longer than 36500d" in capsys.readouterr().err


def test_revoking_a_revoked_key_says_so(tmp_path, capsys) -> None:
    db = str(tmp_path / "auth.db")
    code, key, _ = run(capsys, "keys", "create", "--db", db, "--owner", "alice", "--scopes", "read")
    assert run(capsys, "keys", "revoke", "--db", db, key[:11])[1].startswith(f"revoked {key[:11]} (owner alice)")
    code, out, _ = run(capsys, "keys", "revoke", "--db", db, key[:11])
    assert code == 0 and out.startswith(f"{key[:11]} (owner alice) was already revoked at 20")
