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
from pathlib import Path
from typing import Any

from .events import (
    TABLES,
    AuditEvent,
    SecretLeakError,
    TableSchema,
    auth_attempt_event,
    fill_event,
    make_event_id,
    request_event,
    transition_event,
)
from .journal import JournalFile, JournalSink, read_journal
from .questdb_sink import QuestDBSink
from .sink import AuditSink, SinkStats

__all__ = [
    "TABLES",
    "AuditEvent",
    "AuditSink",
    "JournalFile",
    "JournalSink",
    "QuestDBSink",
    "SecretLeakError",
    "SinkStats",
    "TableSchema",
    "auth_attempt_event",
    "fill_event",
    "make_event_id",
    "open_audit_sink",
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
    """QuestDB when configured (spooling next to the journal), else the local journal."""
    if questdb_conf:
        spool = Path(spool_path) if spool_path else Path(journal_path).with_suffix(".spool.jsonl")
        return QuestDBSink(questdb_conf, spool_path=spool, **questdb_options)
    return JournalSink(journal_path)

