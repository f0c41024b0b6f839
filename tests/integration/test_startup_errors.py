"""Whatever keeps `tradewire serve` from starting is said in one line, naming what is wrong,
with a non-zero exit and no traceback: a taken port, a store or key database it cannot use, a
configuration it cannot read, a file a setting names that is not there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.gateway_process import live_settings
from support.ports import free_port, wait_until
from tradewire.gateway.data_dir_lock import hold_data_dir


def serve(workdir: Path, extra: str = "", env: dict[str, str] | None = None, config: Path | None = None,
          grpc_port: int | None = None, http_port: int | None = None) -> subprocess.CompletedProcess:
    if config is None:
        config = workdir / "gw.toml"
        config.write_text(
            f'[server]\ngrpc_host = "127.0.0.1"\ngrpc_port = {grpc_port or free_port()}\n'
            f'http_host = "127.0.0.1"\nhttp_port = {http_port or free_port()}\n'
            f'[storage]\ndata_dir = "{workdir / "data"}"\n{extra}')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    return subprocess.run([sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


def assert_one_line(done: subprocess.CompletedProcess, *words: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    said = [line for line in done.stderr.splitlines() if line.startswith("tradewire:")]
    assert len(said) == 1, out
    for word in words:
        assert word in out, (word, out)


@pytest.fixture
def listening():
    """A port something else already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_taken_grpc_port(tmp_path, listening):
    assert_one_line(serve(tmp_path, grpc_port=listening), f"cannot listen for gRPC on 127.0.0.1:{listening}")


def test_a_taken_http_port(tmp_path, listening):
    assert_one_line(serve(tmp_path, http_port=listening), f"cannot listen for HTTP on 127.0.0.1:{listening}")


def test_a_redis_url_that_is_not_one(tmp_path):
    assert_one_line(serve(tmp_path, '[shared]\nredis_url = "notaurl"\n'), "Redis URL")


def test_a_key_database_that_is_not_one(tmp_path):
    garbage = tmp_path / "keys.db"
    garbage.write_bytes(b"this is no database " * 200)
    assert_one_line(serve(tmp_path, f'[auth]\napi_key_db = "{garbage}"\n'),
                    f"auth.api_key_db: cannot open {garbage}: file is not a database")


def test_a_key_database_in_a_folder_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "keys.db"
    assert_one_line(serve(tmp_path, f'[auth]\napi_key_db = "{missing}"\n'),
                    "auth.api_key_db", f"{missing.parent} does not exist")
    assert not missing.parent.exists()  # a typo is not a place to start an empty database in


def test_a_jwks_file_that_is_not_there(tmp_path):
    missing = tmp_path / "jwks.json"
    assert_one_line(serve(tmp_path, f'[auth.jwt]\nissuer = "i"\naudience = "a"\njwks_path = "{missing}"\n'),
                    "JWKS")


def test_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("a file")
    assert_one_line(serve(tmp_path), f"storage.data_dir: cannot open {tmp_path / 'data'}: File exists")


def test_an_audit_journal_it_cannot_write(tmp_path):
    # (it served, held every row in memory, and dropped them at shutdown)
    (tmp_path / "data" / "audit.jsonl").mkdir(parents=True)
    assert_one_line(serve(tmp_path), f"storage.data_dir: cannot open {tmp_path / 'data' / 'audit.jsonl'}: "
                                     "Is a directory")


def test_a_trade_database_that_is_not_one_names_the_file_and_the_setting(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trades.db").write_bytes(b"this is no database " * 200)
    assert_one_line(serve(tmp_path), f"storage.data_dir: cannot open {tmp_path / 'data' / 'trades.db'}: "
                                     "file is not a database")


@pytest.mark.parametrize("configured", [True, False], ids=["live.orders_db", "default"])
def test_a_live_order_database_that_is_not_one_names_the_file_and_the_setting(tmp_path, configured):
    journal = tmp_path / "orders.db" if configured else tmp_path / "data" / "live_orders.db"
    journal.parent.mkdir(exist_ok=True)
    journal.write_bytes(b"this is no database " * 200)
    extra = live_settings(tmp_path) + (f'orders_db = "{journal}"\n' if configured else "")
    setting = "live.orders_db" if configured else "storage.data_dir"
    assert_one_line(serve(tmp_path, extra), f"{setting}: cannot open {journal}: file is not a database")


@pytest.mark.parametrize("case", ["a-folder", "not-utf8"])
def test_a_config_file_it_cannot_read(tmp_path, case):
    config = tmp_path / "gw.toml"
    if case == "a-folder":
        config.mkdir()
    else:
        config.write_bytes(b'[server]\nhttp_host = "\xff\xfe"\n')
    assert_one_line(serve(tmp_path, config=config), str(config),
                    "cannot read config file" if case == "a-folder" else "not UTF-8")


def test_a_bad_environment_override_names_its_variable(tmp_path):
    done = serve(tmp_path, env={"TRADEWIRE_SERVER__GRPC_PORT": "abc"})
    assert_one_line(done, "server.grpc_port (from TRADEWIRE_SERVER__GRPC_PORT)")


def test_other_tools_tradewire_variables_are_not_settings(tmp_path):
    # scripts/questdb.sh's TRADEWIRE_QUESTDB_ROOT is no setting (settings are SECTION__KEY):
    # it no longer stops the gateway; a misspelled key still does, as an unknown setting
    done = serve(tmp_path, env={"TRADEWIRE_QUESTDB_ROOT": "/tmp/x", "TRADEWIRE_SERVER__GRCP_PORT": "1"})
    assert_one_line(done, "server.grcp_port (from TRADEWIRE_SERVER__GRCP_PORT): unknown setting")
    assert "questdb_root" not in done.stderr


def test_a_setting_spelled_with_one_underscore_is_warned_of(tmp_path, listening):
    # (not read, like other tools' variables: a TRADEWIRE_LIVE_KILL_SWITCH=halt would leave LIVE on unsaid)
    done = serve(tmp_path, http_port=listening, env={"TRADEWIRE_LIVE_KILL_SWITCH": "halt",
                                                     "TRADEWIRE_QUESTDB_ROOT": "/tmp/x"})
    assert_one_line(done, "cannot listen for HTTP")
    warned = [json.loads(line)["msg"] for line in done.stderr.splitlines() if '"tradewire.config"' in line]
    assert warned == ["TRADEWIRE_LIVE_KILL_SWITCH is not read: settings are SECTION__KEY variables "
                      "(did you mean TRADEWIRE_LIVE__KILL_SWITCH?)"], done.stderr


def test_with_keys_in_the_settings_a_start_up_error_is_the_only_thing_said(tmp_path, listening):
    # (a missing key database is worth a warning only when no key at all could call)
    keys = f'[[auth.api_keys]]\nprefix = "tw_alice001"\nsha256 = "{"0" * 64}"\nowner = "alice"\n'
    done = serve(tmp_path, keys, http_port=listening)
    assert_one_line(done, "cannot listen for HTTP")
    assert '"level":"warning"' not in done.stderr + done.stdout, done.stderr


def test_a_data_dir_another_gateway_serves_from(tmp_path):
    """A second gateway on the same files would resume the first one's running trades as a
    crash's leftovers: it is refused, naming the one that holds them."""
    first = subprocess.Popen([sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config",
                              str(_config(tmp_path / "first", tmp_path / "data"))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")})
    try:
        wait_until(lambda: (tmp_path / "data" / "gateway.lock").exists()
                   and (tmp_path / "data" / "gateway.lock").read_text().strip() == str(first.pid),
                   what="the first gateway's lock")
        assert_one_line(serve(tmp_path, config=_config(tmp_path / "second", tmp_path / "data")),
                        f"storage.data_dir: {tmp_path / 'data'} is in use by another gateway (pid {first.pid})")
    finally:
        first.terminate()
        assert first.wait(timeout=60) == 0, first.stderr.read()
    with hold_data_dir(tmp_path / "data") as lock:  # the lock went with the process
        assert lock.name == str(tmp_path / "data" / "gateway.lock")


def _config(folder: Path, data_dir: Path) -> Path:
    folder.mkdir(parents=True)
    config = folder / "gw.toml"
    config.write_text(f'[server]\ngrpc_host = "127.0.0.1"\ngrpc_port = {free_port()}\nhttp_host = "127.0.0.1"\n'
                      f'http_port = {free_port()}\n[storage]\ndata_dir = "{data_dir}"\n')
    return config
