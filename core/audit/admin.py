"""The audit row of an administration command (``tw_admin``).

``tradewire keys create|revoke`` and ``tradewire kill-switch STATE`` run in a process of their
own, so they write their row themselves, once the change is made, to the trail the same
configuration names: QuestDB with ``[audit] questdb_conf``, else the gateway's local journal
(appended as one line, as the gateway's writer appends, so the two never tear each other's lines).

The change stands whatever becomes of its row. A row QuestDB does not take is kept in a spool
of the commands' own, ``<data_dir>/admin-audit.spool.jsonl`` (``[audit] admin_spool_path``), which
a command writes holding its lock; a running gateway takes it into its own replay
(foreign_spool.py), or else the next administration command sends it first. The operator is
told either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
from typing import Any, TextIO

from tradewire.core.config import admin_spool_path

from . import audit_journal_path, open_configured_sink
from .events import AuditEvent, admin_event
from .foreign_spool import held
from .journal import JournalFile

# How long a command waits for QuestDB before its row goes to the spool.
QUESTDB_WAIT_S = 5.0


def operator() -> str:
    """Who ran the command: this process's account, named by the system (not by $USER, which
    the caller sets); under ``sudo`` the account it was run from first."""
    account = _account(os.getuid())
    sudo_uid = os.environ.get("SUDO_UID", "")
    if os.geteuid() == 0 and sudo_uid.isdigit():  # (only root can have set it otherwise)
        return f"{_account(int(sudo_uid))} (sudo as {account})"
    return account


def _account(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a name (containers)
        return f"uid {uid}"


def record_admin_action(settings: Any, err: TextIO, **fields: Any) -> bool:
    """Write the row of one administration command (``fields``: :func:`admin_event`'s, the
    actor and host aside) where ``settings`` send the audit trail. False, with a line on
    ``err``, when the row is not in the trail yet."""
    event = admin_event(actor=operator(), host=socket.gethostname(), **fields)
    if settings.audit.questdb_conf:
        return asyncio.run(_to_questdb(settings, event, err))
    return _to_journal(settings, event, err)


def _to_journal(settings: Any, event: AuditEvent, err: TextIO) -> bool:
    journal = JournalFile(audit_journal_path(settings))
    try:
        journal.append([event], fsync=True)
        journal.close()
    except OSError as exc:
        print(f"warning: the change is made, but its audit row could not be written to {journal.path}: "
              f"{exc.strerror or exc}", file=err)
        return False
    return True


async def _to_questdb(settings: Any, event: AuditEvent, err: TextIO) -> bool:
    spool = admin_spool_path(settings)
    sink_log = logging.getLogger("tradewire.audit")
    level = sink_log.level
    sink_log.setLevel(logging.CRITICAL)  # (its lines speak of a gateway's restart: one line of ours instead)
    try:
        with held(spool):  # (a gateway takes the file over only while nobody writes it)
            sink = open_configured_sink(settings, spool_path=spool)
            await sink.start()
            sink.emit(event)  # after the rows earlier commands left in the spool, which close() replays
            await sink.close(timeout=QUESTDB_WAIT_S)
    finally:
        sink_log.setLevel(level)
    waiting = sink.stats().spooled
    if waiting:
        print(f"warning: the change is made; {waiting} audit row(s) wait in {spool}, sent by a running "
              f"gateway or the next administration command ({sink.health()[1]})", file=err)
        return False
    return True
