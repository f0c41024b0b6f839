"""`tradewire serve`, `keys` and `kill-switch` as an operator runs them, on the edges: a
configuration they cannot use is one line naming the setting, never a traceback or a secret; a
misspelt variable is warned of; the messages say where things went."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.gateway_process import live_settings
from support.ports import free_port

PASSWORD = "hunter2-redis-password"


def tradewire(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    return subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", *argv], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})}, cwd=cwd)


def config(workdir: Path, extra: str = "") -> Path:
    path = workdir / "gw.toml"
    path.write_text(f'[server]\ngrpc_host = "127.0.0.1"\ngrpc_port = {free_port()}\nhttp_host = "127.0.0.1"\n'
                    f'http_port = {free_port()}\n[storage]\ndata_dir = "{workdir / "data"}"\n{extra}')
    return path


def assert_refused(done: subprocess.CompletedProcess, *words: str, prefix: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode not in (0, None), out
    assert "Traceback" not in out, out
    assert [line for line in done.stderr.splitlines() if line.startswith(prefix)], out
    for word in words:
        assert word in out, (word, out)


@pytest.mark.parametrize("command", [("keys", "list"), ("keys", "create", "--owner", "a", "--scopes", "read"),
                                     ("kill-switch",), ("kill-switch", "halt"), ("serve",)])
def test_a_redis_url_that_is_not_one_is_named_without_a_traceback_or_its_password(tmp_path, command):
    # (`keys` and `kill-switch` died in a traceback from redis-py; `serve` said "cannot start: Invalid IPv6 URL")
    done = tradewire(*command, "--config", str(config(tmp_path)),
                     env={"TRADEWIRE_SHARED__REDIS_URL": f"redis://admin:{PASSWORD}@[bad/0"})
    assert_refused(done, "shared.redis_url (from TRADEWIRE_SHARED__REDIS_URL): not a Redis URL",
                   prefix="tradewire: " if command == ("serve",) else "error: ")
    assert done.returncode == 2 and PASSWORD not in done.stdout + done.stderr


def test_serve_refuses_limits_grpcio_cannot_take_by_name(tmp_path):
    # (it said "cannot start: Python int too large to convert to C long")
    done = tradewire("serve", "--config", str(config(tmp_path)),
                     env={"TRADEWIRE_SERVER__MAX_BODY_BYTES": "99999999999999999999"})
    assert_refused(done, "server.max_body_bytes (from TRADEWIRE_SERVER__MAX_BODY_BYTES)", prefix="tradewire: ")


def test_serve_refuses_one_port_for_both_listeners_by_name(tmp_path):
    # (it said "cannot listen for HTTP on 127.0.0.1:<port>: Address already in use": its own gRPC listener)
    port = str(free_port())
    done = tradewire("serve", "--config", str(config(tmp_path)),
                     env={"TRADEWIRE_SERVER__GRPC_PORT": port, "TRADEWIRE_SERVER__HTTP_PORT": port})
    assert_refused(done, f"grpc_port and http_port are both {port}", prefix="tradewire: ")
    assert "Address already in use" not in done.stderr


def live(workdir: Path, kill_switch_file: Path) -> str:
    return live_settings(workdir) + f'kill_switch_file = "{kill_switch_file}"\n'


@pytest.mark.parametrize("case", ["no-folder", "a-folder"])
def test_live_with_a_kill_switch_file_the_command_could_not_set_does_not_start(tmp_path, case):
    # (it served LIVE; `tradewire kill-switch halt` then failed, when it was needed)
    switch = tmp_path / "missing" / "kill" if case == "no-folder" else tmp_path / "kill"
    if case == "a-folder":
        switch.mkdir()
    done = tradewire("serve", "--config", str(config(tmp_path, live(tmp_path, switch))))
    said = f"the folder {switch.parent} does not exist" if case == "no-folder" else f"{switch} is a folder"
    assert_refused(done, f"live.kill_switch_file: {said}", prefix="tradewire: ")
    assert done.returncode == 1


def test_keys_warns_of_a_setting_spelled_with_one_underscore(tmp_path):
    # (TRADEWIRE_SHARED_REDIS_URL is not read: the key went to a local database no replica reads, unsaid)
    done = tradewire("keys", "create", "--config", str(config(tmp_path)), "--owner", "alice", "--scopes", "read",
                     env={"TRADEWIRE_SHARED_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:6379/0"})
    assert done.returncode == 0 and done.stdout.startswith("tw_"), done.stderr
    assert ("warning: TRADEWIRE_SHARED_REDIS_URL is not read: settings are SECTION__KEY variables (did you mean "
            "TRADEWIRE_SHARED__REDIS_URL?)") in done.stderr
    assert PASSWORD not in done.stderr


def test_kill_switch_warns_of_a_setting_spelled_with_one_underscore(tmp_path):
    done = tradewire("kill-switch", "--config", str(config(tmp_path)),
                     env={"TRADEWIRE_LIVE_KILL_SWITCH_FILE": str(tmp_path / "kill")})
    assert done.returncode == 0 and done.stdout.startswith("off"), done.stderr
    assert ("warning: TRADEWIRE_LIVE_KILL_SWITCH_FILE is not read: settings are SECTION__KEY variables (did you "
            "mean TRADEWIRE_LIVE__KILL_SWITCH_FILE?)") in done.stderr


def test_revoking_a_key_of_the_configuration_says_it_is_one(tmp_path):
    # ("no key with prefix tw_..." alone reads as "no such key", while the gateway still takes it)
    entry = f'[[auth.api_keys]]\nprefix = "tw_abcdefgh"\nsha256 = "{"a" * 64}"\nowner = "alice"\n'
    gw = config(tmp_path, entry)
    assert tradewire("keys", "create", "--config", str(gw), "--owner", "bob", "--scopes", "read").returncode == 0
    done = tradewire("keys", "revoke", "--config", str(gw), "tw_abcdefgh")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: no key with prefix tw_abcdefgh" in done.stderr
    assert ("tw_abcdefgh is a key of the configuration ([[auth.api_keys]]): to revoke it, remove it there and "
            "restart the gateway") in done.stderr
    unknown = tradewire("keys", "revoke", "--config", str(gw), "tw_zzzzzzzz")
    assert unknown.returncode == 1 and "configuration" not in unknown.stderr


def test_a_key_made_in_a_new_database_says_where_in_full(tmp_path):
    # A relative data_dir is the current folder's: run from elsewhere than the gateway, the key
    # went to a database of its own, and nothing said so.
    gw = tmp_path / "gw.toml"
    gw.write_text('[storage]\ndata_dir = "tradewire-data"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = tradewire("keys", "create", "--config", str(gw), "--owner", "alice", "--scopes", "read", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    made = elsewhere / "tradewire-data" / "auth.db"
    assert f"note: there was no key database at {made}: a new one is made" in done.stderr
    again = tradewire("keys", "create", "--config", str(gw), "--owner", "bob", "--scopes", "read", cwd=elsewhere)
    assert again.returncode == 0 and "note:" not in again.stderr  # (said only when it is made)


def test_a_relative_kill_switch_file_says_which_file_it_set(tmp_path):
    gw = tmp_path / "gw.toml"
    gw.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[live]\nkill_switch_file = "kill"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = tradewire("kill-switch", "halt", "--config", str(gw), cwd=elsewhere)
    assert done.returncode == 0 and done.stdout.startswith("halt"), done.stderr
    assert (f"warning: live.kill_switch_file is a relative path: this set {elsewhere / 'kill'}, which a gateway "
            "started from another folder does not read") in done.stderr
    shown = tradewire("kill-switch", "--config", str(gw), cwd=elsewhere)  # (showing it changes nothing)
    assert shown.returncode == 0 and "warning" not in shown.stderr
