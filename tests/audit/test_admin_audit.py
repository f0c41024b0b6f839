"""Administration is audited: `tradewire keys create|revoke` and `tradewire kill-switch STATE`
write a tw_admin row — who, on which host, what, in which store — where the configuration
sends the audit trail (the local journal, or QuestDB; a row QuestDB does not take waits in the
commands' own spool, and a running gateway or the next command sends it)."""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import socket
from pathlib import Path

import pytest
from support.questdb import QuestDBServer, eventually, free_ports

from tradewire.core.audit import JournalFile, admin, admin_event, read_journal
from tradewire.core.audit.foreign_spool import held, take_over
from tradewire.core.audit.events import REDACTED
from tradewire.core.config import load_settings
from tradewire.gateway.assembly import build_audit_sink
from tradewire.gateway.cli import main as tradewire
from tradewire.gateway.workers import worker_settings

ADMIN_SPOOL = "admin-audit.spool.jsonl"

TS = 1_795_000_000_000_000_000


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "tradewire.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n{extra}')
    return config


def run(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    """A `tradewire` command with ``config``, in this process; (exit code, stdout, stderr)."""
    code = tradewire([*argv, "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def admin_rows(journal: Path) -> list[dict]:
    return [{**e.symbols, **e.columns} for e in read_journal(journal) if e.table == "tw_admin"]


async def questdb_rows(questdb: QuestDBServer, sql: str, count: int) -> list[list]:
    """The rows of ``sql`` once there are ``count`` of them (QuestDB applies its WAL later)."""
    async def probe() -> list[list] | None:
        rows = await questdb.query(sql)
        return rows if len(rows) == count else None

    return await eventually(probe, what=f"{count} row(s) of {sql}")


# The operator: an account that ran `sudo tradewire ...` (root, its effective account).
OPERATOR = f"nobody (sudo as {pwd.getpwuid(os.getuid()).pw_name})"


@pytest.fixture(autouse=True)
def operator_env(monkeypatch) -> None:
    for name in ("TRADEWIRE_CONFIG", "TRADEWIRE_STORAGE__DATA_DIR", "TRADEWIRE_AUDIT__JOURNAL_PATH",
                 "TRADEWIRE_AUDIT__QUESTDB_CONF", "TRADEWIRE_SHARED__REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(admin.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", str(pwd.getpwnam("nobody").pw_uid))
    monkeypatch.setenv("USER", "someone-else")  # (what the caller says is not who it is)


def test_the_actor_is_the_account_not_what_the_environment_says(monkeypatch) -> None:
    assert admin.operator() == OPERATOR
    nobody = pwd.getpwnam("nobody").pw_uid
    monkeypatch.setattr(admin.os, "geteuid", lambda: nobody)  # not root: SUDO_UID is anyone's to set
    monkeypatch.setattr(admin.os, "getuid", lambda: nobody)
    assert admin.operator() == "nobody"


def test_an_admin_row_names_its_action_and_keeps_secrets_out() -> None:
    event = admin_event(action="key_created", actor="ann", host="h1", store="sqlite", target="tw_ab12cd34",
                        principal="alice", detail="scopes=read", ts_ns=TS)
    assert event.table == "tw_admin"
    assert dict(event.symbols) == {"action": "key_created", "actor": "ann", "principal": "alice", "store": "sqlite"}
    assert dict(event.columns) == {"target": "tw_ab12cd34", "host": "h1", "detail": "scopes=read"}
    later = admin_event(action="key_created", actor="ann", host="h1", store="sqlite", target="tw_ab12cd34",
                        ts_ns=TS + 1)
    assert later.event_id != event.event_id  # two halts are two rows: the time is part of what happened
    leaked = admin_event(action="key_created", actor="ann", host="h1", store="sqlite", target="tw_ab12cd34",
                         detail="name='tw_ab12cd34_Q3vX9kLmN2pR7sT1uW4yZ6bC8dE0fG2hJ5'")
    assert leaked.columns["detail"] == REDACTED
    with pytest.raises(ValueError, match="action must be one of"):
        admin_event(action="key_listed", actor="ann", host="h1", store="sqlite", target="x")


def test_keys_made_and_revoked_are_audited_in_the_journal(tmp_path, capsys) -> None:
    config = write_config(tmp_path)
    code, key, _ = run(capsys, config, "keys", "create", "--owner", "alice", "--scopes", "trade:paper,read",
                       "--name", "bot", "--expires-in", "30d")
    assert code == 0
    key_id = key.strip()[:11]
    assert run(capsys, config, "keys", "list")[0] == 0  # reading changes nothing: no row
    assert run(capsys, config, "keys", "revoke", key_id)[0] == 0
    assert run(capsys, config, "keys", "revoke", key_id)[0] == 0  # again: idempotent, still a row

    rows = admin_rows(tmp_path / "data" / "audit.jsonl")
    assert [(r["action"], r["target"], r["principal"]) for r in rows] == [
        ("key_created", key_id, "alice"), ("key_revoked", key_id, "alice"), ("key_revoked", key_id, "alice")]
    assert {(r["actor"], r["host"], r["store"], r["location"]) for r in rows} == {
        (OPERATOR, socket.gethostname(), "sqlite", str(tmp_path / "data" / "auth.db"))}
    created, revoked, again = rows
    assert created["detail"].startswith("scopes=read,trade:paper expires=20") and created["detail"].endswith(
        "name='bot'")
    assert "detail" not in revoked and again["detail"].startswith("already revoked at 20")
    assert key.strip() not in (tmp_path / "data" / "audit.jsonl").read_text()  # the key itself never


def test_with_only_db_named_the_row_goes_beside_the_database(tmp_path, capsys, monkeypatch) -> None:
    """`tradewire keys create --db <data_dir>/auth.db` (what the gateway suggests at start) audits
    into that gateway's journal, <data_dir>/audit.jsonl, wherever it is run from."""
    monkeypatch.chdir(tmp_path)  # not where the gateway keeps its files
    data_dir = tmp_path / "gateway-data"
    assert tradewire(["keys", "create", "--db", str(data_dir / "auth.db"), "--owner", "erin", "--scopes", "read"]) == 0
    key_id = capsys.readouterr().out.strip()[:11]
    assert [(r["action"], r["target"]) for r in admin_rows(data_dir / "audit.jsonl")] == [("key_created", key_id)]
    assert not (tmp_path / "tradewire-data").exists()


def test_a_kill_switch_change_is_audited_with_the_state_before_it(tmp_path, capsys) -> None:
    switch_file = tmp_path / "kill"
    config = write_config(tmp_path, f'[live]\nkill_switch_file = "{switch_file}"\n')
    assert run(capsys, config, "kill-switch", "halt")[0] == 0
    assert run(capsys, config, "kill-switch")[0] == 0  # shown only: no row
    assert run(capsys, config, "kill-switch", "reduce_only")[0] == 0
    assert run(capsys, config, "kill-switch", "off")[0] == 0

    rows = admin_rows(tmp_path / "data" / "audit.jsonl")
    assert [(r["action"], r["target"], r["detail"]) for r in rows] == [
        ("kill_switch_set", "live_kill_switch", "halt (was off)"),
        ("kill_switch_set", "live_kill_switch", "reduce_only (was halt)"),
        ("kill_switch_set", "live_kill_switch", "off (was reduce_only)")]
    assert {(r["store"], r["location"], r["actor"]) for r in rows} == {("file", str(switch_file), OPERATOR)}


def test_a_journal_that_cannot_be_written_leaves_the_change_made_and_says_so(tmp_path, capsys) -> None:
    (tmp_path / "a-file").write_text("")
    config = write_config(tmp_path, f'[audit]\njournal_path = "{tmp_path / "a-file" / "audit.jsonl"}"\n')
    code, key, err = run(capsys, config, "keys", "create", "--owner", "bob", "--scopes", "read")
    assert code == 0 and key.startswith("tw_")  # the key is made; the operator must keep it
    assert "warning: the change is made, but its audit row could not be written to" in err
    assert "Traceback" not in err


async def test_with_questdb_the_row_lands_in_tw_admin(questdb: QuestDBServer, tmp_path, capsys) -> None:
    config = write_config(tmp_path, f'[audit]\nquestdb_conf = "{questdb.conf}"\n')
    code, key, err = await asyncio.to_thread(run, capsys, config, "keys", "create", "--owner", "carol",
                                             "--scopes", "read")
    assert code == 0 and "warning" not in err, err
    key_id = key.strip()[:11]
    rows = await questdb_rows(
        questdb, f"SELECT action, actor, principal, store, target FROM tw_admin WHERE target = '{key_id}'", 1)
    assert rows == [["key_created", OPERATOR, "carol", "sqlite", key_id]]
    assert not (tmp_path / "data" / "audit.jsonl").exists()  # QuestDB is the trail


async def test_a_row_questdb_does_not_take_waits_and_goes_with_the_next_command(questdb: QuestDBServer, tmp_path,
                                                                               capsys) -> None:
    (dead,) = free_ports(1)  # nothing listens there
    config = write_config(tmp_path, f'[audit]\nquestdb_conf = "http::addr=127.0.0.1:{dead};"\n')
    code, key, err = await asyncio.to_thread(run, capsys, config, "keys", "create", "--owner", "dan",
                                             "--scopes", "read")
    spool = tmp_path / "data" / ADMIN_SPOOL
    assert code == 0 and key.startswith("tw_")
    assert f"warning: the change is made; 1 audit row(s) wait in {spool}" in err and "Traceback" not in err
    assert [e.symbols["action"] for e in read_journal(spool)] == ["key_created"]

    key_id = key.strip()[:11]
    config = write_config(tmp_path, f'[audit]\nquestdb_conf = "{questdb.conf}"\n')  # QuestDB answers now
    code, _, err = await asyncio.to_thread(run, capsys, config, "keys", "revoke", key_id)
    assert code == 0 and "warning" not in err, err
    rows = await questdb_rows(questdb, f"SELECT action FROM tw_admin WHERE target = '{key_id}' ORDER BY ts", 2)
    assert rows == [["key_created"], ["key_revoked"]]
    assert not spool.exists() or not list(read_journal(spool))  # sent, not kept


async def spool_a_row(tmp_path: Path, capsys, owner: str) -> tuple[str, Path]:
    """A `keys create` while QuestDB is down: (the key's id, the spool its row waits in)."""
    (dead,) = free_ports(1)
    config = write_config(tmp_path, f'[audit]\nquestdb_conf = "http::addr=127.0.0.1:{dead};"\n')
    code, key, err = await asyncio.to_thread(run, capsys, config, "keys", "create", "--owner", owner,
                                             "--scopes", "read")
    spool = tmp_path / "data" / ADMIN_SPOOL
    assert code == 0 and "wait in" in err and [e.symbols["principal"] for e in read_journal(spool)] == [owner], err
    return key.strip()[:11], spool


async def test_a_running_gateway_sends_the_rows_the_commands_left(questdb: QuestDBServer, tmp_path, capsys) -> None:
    key_id, spool = await spool_a_row(tmp_path, capsys, "erin")
    settings = load_settings(write_config(tmp_path, f'[audit]\nquestdb_conf = "{questdb.conf}"\n'), env={})
    sink = build_audit_sink(settings)  # the gateway's, as it serves
    await sink.start()
    try:
        rows = await questdb_rows(questdb, f"SELECT action, principal FROM tw_admin WHERE target = '{key_id}'", 1)
        assert rows == [["key_created", "erin"]]
        assert not spool.exists() and not list(spool.parent.glob(ADMIN_SPOOL + ".*.replay"))
    finally:
        await sink.close(timeout=5)


async def test_a_busy_gateway_sends_them_too(questdb: QuestDBServer, tmp_path, capsys) -> None:
    """Rows flowing all the time keep the sink from its idle check (here a minute away): each
    delivered batch looks for the commands' spool as well."""
    settings = load_settings(write_config(tmp_path, f'[audit]\nquestdb_conf = "{questdb.conf}"\n'
                                                    "flush_interval_s = 0.05\n"), env={})
    sink = build_audit_sink(settings)
    sink._retry_max_s = sink._idle_check_s = 60.0
    await sink.start()
    traffic = (admin_event(action="kill_switch_set", actor="t", host="h", store="file", target="halt",
                           detail=f"busy {n}") for n in itertools.count())
    try:
        sink.emit(next(traffic))
        await sink.flush()  # the first contact (its check is due at once) is over
        key_id, _ = await spool_a_row(tmp_path, capsys, "fay")

        async def landed() -> list | None:
            sink.emit(next(traffic))
            rows = await questdb.query(f"SELECT principal FROM tw_admin WHERE target = '{key_id}'")
            return rows or None

        assert await eventually(landed, what="the spooled row, sent while busy") == [["fay"]]
    finally:
        await sink.close(timeout=5)


def test_a_spool_being_written_is_not_taken(tmp_path) -> None:
    spool = tmp_path / ADMIN_SPOOL
    left = spool.with_name(ADMIN_SPOOL + ".00000000000000000001.replay")  # a command's replay cut short
    row = admin_event(action="key_revoked", actor="t", host="h", store="sqlite", target="tw_x")
    for path, rows in ((left, [row]), (spool, [row, row])):
        JournalFile(path).append(rows, fsync=False)
    taken = iter([tmp_path / "a.replay", tmp_path / "b.replay"])

    with held(spool):
        assert take_over(spool, lambda: next(taken)) == 0
    assert spool.exists() and left.exists()

    assert take_over(spool, lambda: next(taken)) == 3
    assert not spool.exists() and not left.exists()
    assert [len(list(read_journal(tmp_path / n))) for n in ("a.replay", "b.replay")] == [1, 2]  # oldest first


def test_every_worker_looks_for_the_commands_spool_where_they_write_it(tmp_path) -> None:
    settings = load_settings(write_config(tmp_path), env={})
    assert worker_settings(settings, 2).audit.admin_spool_path == tmp_path / "data" / ADMIN_SPOOL
