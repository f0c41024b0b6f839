"""The audit trail (DESIGN.md §5): events, the sink interface, the journal and QuestDB sinks.

Typical use::

    sink = open_audit_sink(questdb_conf=settings.questdb_conf,      # None: local journal
                           journal_path=data_dir / "audit.jsonl")
    await sink.start()
    sink.emit(transition_event(request_id=..., principal=..., mode="paper",
                               stage="QUOTED", sequence=3, percent=30.0, message="quoted"))
    ...
    await sink.close(timeout=3.0)   # QuestDB: what it has not taken by then is spooled
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .events import (
    ADMIN_ACTIONS,
    TABLES,
    AuditEvent,
    SecretLeakError,
    TableSchema,
    admin_event,
    auth_attempt_event,
    fill_event,
    make_event_id,
    request_event,
    transition_event,
)
from .journal import JournalFile, JournalSink, check_appendable, read_journal
from .questdb_sink import QuestDBSink
from .sink import AuditSink, SinkStats

__all__ = [
    "ADMIN_ACTIONS",
    "TABLES",
    "AuditEvent",
    "AuditSink",
    "JournalFile",
    "JournalSink",
    "QuestDBSink",
    "SecretLeakError",
    "SinkStats",
    "TableSchema",
    "admin_event",
    "auth_attempt_event",
    "fill_event",
    "audit_journal_path",
    "make_event_id",
    "open_audit_sink",
    "open_configured_sink",
    "read_journal",
    "request_event",
    "transition_event",
]


def open_audit_sink(
    *,
    questdb_conf: str | None,
    journal_path: str | os.PathLike[str],
    spool_path: str | os.PathLike[str] | None = None,
    **questdb_options: Any,
) -> AuditSink:
    """QuestDB when configured (spooling next to the journal), else the local journal. The file
    it appends to is opened once here: one it cannot write is an OSError now, not rows held in
    memory until shutdown."""
    if questdb_conf:
        spool = Path(spool_path) if spool_path else Path(journal_path).with_suffix(".spool.jsonl")
        check_appendable(spool)
        return QuestDBSink(questdb_conf, spool_path=spool, **questdb_options)
    check_appendable(journal_path)
    return JournalSink(journal_path)


def audit_journal_path(settings: Any) -> Path:
    """The local journal ``[audit]`` names (a ``Settings``): ``journal_path``, else
    ``<data_dir>/audit.jsonl``."""
    return settings.audit.journal_path or settings.storage.data_dir / "audit.jsonl"


def open_configured_sink(
    settings: Any,
    *,
    spool_path: str | os.PathLike[str] | None = None,
    adopt: Sequence[str | os.PathLike[str]] = (),
) -> AuditSink:
    """The sink ``[audit]`` describes (a ``Settings``): QuestDB with its options, else the journal.
    ``adopt``: other processes' spools a QuestDB sink sends too (QuestDBSink)."""
    audit = settings.audit
    options: dict[str, Any] = {}
    if audit.questdb_conf:
        options = dict(http_url=audit.questdb_http_url, batch_size=audit.batch_size,
                       flush_interval_s=audit.flush_interval_s, queue_max=audit.queue_max,
                       write_ahead=audit.write_ahead, adopt=adopt)
    return open_audit_sink(questdb_conf=audit.questdb_conf, journal_path=audit_journal_path(settings),
                           spool_path=spool_path, **options)

