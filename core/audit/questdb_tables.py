"""The audit tables in QuestDB, over its HTTP ``/exec``: made before any row is sent, with the
shape the sink needs (designated timestamp ``ts``, WAL, DEDUP UPSERT KEYS(ts, event_id)),
checked, fixed when they can be and set aside (renamed, made anew, their rows copied back)
when they cannot — questdb_sink.py's docstring says when. Used on the sink's worker thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from .events import TABLES, TableSchema

log = logging.getLogger("tradewire.audit")

# The shape every audit table must have: (designated timestamp, WAL, DEDUP) as tables() says.
RIGHT_SHAPE = ("ts", True, True)
_DEDUP_KEYS = frozenset({"ts", "event_id"})


class Unavailable(Exception):
    """QuestDB did not answer (connection refused, timeout, 5xx, ...): an outage."""


class Refused(Exception):
    """QuestDB answered and refused (a statement, the credentials): not an outage."""

    def __init__(self, message: str, error: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.error = error or message  # QuestDB's own words, without our statement
        self.kind = kind or message  # what was refused: logged once per kind, whatever the words


class QuestDBTables:
    """The audit tables of one QuestDB (``url``: its HTTP endpoint; ``addr``: for log lines)."""

    def __init__(self, url: str, *, addr: str, auth: Any, headers: dict[str, str], verify: bool,
                 timeout_s: float) -> None:
        self._url = url
        self._addr = addr
        self._client_kw: dict[str, Any] = {"auth": auth, "headers": headers, "verify": verify, "timeout": timeout_s}
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def right_shapes(self) -> bool:
        """Whether QuestDB has every audit table, each of the right shape (one ``tables()`` query)."""
        return self._shapes() == {name: RIGHT_SHAPE for name in TABLES}

    def exec(self, sql: str) -> dict[str, Any]:
        """Run one statement over /exec: Unavailable if QuestDB does not answer, Refused if
        it answers no."""
        if self._http is None:
            self._http = httpx.Client(base_url=self._url, **self._client_kw)
        try:
            resp = self._http.get("/exec", params={"query": sql})
        except httpx.HTTPError as exc:
            raise Unavailable(f"/exec: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise Unavailable(f"/exec: HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            raise Refused(f"/exec: HTTP {resp.status_code}: the conf's credentials are refused")
        if resp.status_code == 404:
            raise Refused(f"/exec: HTTP 404 at {self._url}: is http_url right?")
        try:
            body = resp.json()
        except ValueError as exc:
            raise Unavailable(f"/exec: HTTP {resp.status_code}, not JSON") from exc
        if resp.status_code != 200 or "error" in body:
            error = str(body.get("error", f"HTTP {resp.status_code}"))
            raise Refused(f"{sql[:80]!r}: {error}", error)
        return body

    def _shapes(self) -> dict[str, tuple[str, bool, bool]]:
        """(designated timestamp, WAL, DEDUP) of each audit table QuestDB has."""
        names = ", ".join(f"'{n}'" for n in TABLES)
        body = self.exec(
            "SELECT table_name, designatedTimestamp, walEnabled, dedup FROM tables() "
            f"WHERE table_name IN ({names})"
        )
        return {name: (ts, wal, dedup) for name, ts, wal, dedup in body.get("dataset", [])}

    def _columns(self, table: str) -> dict[str, tuple[bool, bool, str]]:
        """Each column of a table: (is the designated timestamp, is a DEDUP key, its type)."""
        body = self.exec(f'SELECT "column", designated, upsertKey, type FROM table_columns(\'{table}\')')
        return {name: (designated, key, kind) for name, designated, key, kind in body.get("dataset", [])}

    def prepare(self, *, checked_before: bool) -> None:
        """Create the missing tables, fix the misshapen ones or set them aside; ``checked_before``:
        they were all there at the last check (a table missing now was lost: said so)."""
        shapes = self._shapes()
        lost = [name for name in TABLES if name not in shapes]
        if lost and checked_before:
            log.warning(
                "audit: QuestDB at %s lost the tables %s; creating them again",
                self._addr,
                ", ".join(lost),
            )
        for name, schema in TABLES.items():
            if name in shapes:
                self._fix_table(schema, shapes[name])
            else:
                self.exec(schema.ddl())

    def _fix_table(self, schema: TableSchema, shape: tuple[str, bool, bool]) -> None:
        columns = self._columns(schema.name)
        designated, wal, _ = shape
        if not designated:
            problem = "it has no designated timestamp"
        elif designated != "ts":
            problem = f"its designated timestamp is {designated!r}, not 'ts'"
        elif not wal:
            problem = "it is not a WAL table (DEDUP needs one)"
        elif wrong := _wrong_types(schema, columns):  # QuestDB would refuse every row
            problem = f"column(s) of another type: {', '.join(wrong)}"
        else:
            try:
                for column, qdb_type in _declared_columns(schema).items():
                    if column not in columns:  # a table from before the column was declared
                        self.exec(f"ALTER TABLE {schema.name} ADD COLUMN {column} {qdb_type}")
                if {c for c, (_, key, _) in columns.items() if key} != _DEDUP_KEYS:
                    self.exec(f"ALTER TABLE {schema.name} DEDUP ENABLE UPSERT KEYS(ts, event_id)")
                return
            except Refused as exc:
                problem = str(exc)
        self._set_aside(schema, problem, columns)

    def _set_aside(
        self, schema: TableSchema, problem: str, columns: dict[str, tuple[bool, bool, str]]
    ) -> None:
        """Rename a table that cannot be fixed, create it anew and copy its audit rows back."""
        name = schema.name
        aside = f"{name}_aside_{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        try:
            self.exec(f"RENAME TABLE {name} TO {aside}")
        except Refused as exc:
            raise Refused(
                f"table {name} could not be fixed ({problem}); "
                f"renaming it aside was refused: {exc.error}",
                kind=f"set {name} aside",  # each attempt names another aside table
            ) from exc
        try:
            self.exec(schema.ddl())
        except Refused as exc:
            raise Refused(
                f"table {name} was renamed to {aside} ({problem}); "
                f"creating it anew was refused: {exc.error}",
                kind=f"create {name}",
            ) from exc
        log.warning(
            "audit: table %s had the wrong shape (%s); renamed it to %s and created it anew; %s",
            name,
            problem,
            aside,
            self._copy_back(schema, aside, columns),
        )

    def _copy_back(
        self, schema: TableSchema, aside: str, columns: dict[str, tuple[bool, bool, str]]
    ) -> str:
        """Copy the audit rows of a table set aside into the new one (DEDUP keeps it exactly-once);
        the rows stay in the aside table either way. Returns what happened, for the log."""
        ts = next((c for c, (designated, _, _) in columns.items() if designated), None)
        if ts is None or "event_id" not in columns:
            return f"nothing to copy back (no event_id or timestamp); its rows stay in {aside}"
        # (a column of another type is left out: QuestDB would refuse the whole copy for it)
        shared = [c for c, kind in _declared_columns(schema).items()
                  if c in columns and columns[c][2] in _HOLDS.get(kind, {kind})]
        listed = ", ".join(f'"{c}"' for c in shared)
        try:
            counted = self.exec(f"SELECT count() FROM {aside} WHERE event_id IS NOT NULL")
            rows = counted["dataset"][0][0]
            self.exec(
                f'INSERT INTO {schema.name} ({listed}, ts) SELECT {listed}, "{ts}" FROM {aside} '
                "WHERE event_id IS NOT NULL"
            )
        except (Refused, Unavailable) as exc:
            return f"copying its rows back failed ({exc}); they stay in {aside}"
        return f"copied its {rows} audit row(s) back (kept in {aside} too)"


# The column types that take what the sink writes for a declared type (ILP's symbols and strings
# go into any text column); any other type refuses the rows (a VARCHAR takes no integer).
_TEXT = frozenset({"SYMBOL", "VARCHAR", "STRING"})
_HOLDS = {"SYMBOL": _TEXT, "VARCHAR": _TEXT}


def _wrong_types(schema: TableSchema, columns: dict[str, tuple[bool, bool, str]]) -> list[str]:
    """The declared columns a table has with a type that refuses the sink's values."""
    return [f"{c} is {columns[c][2]}, not {kind}" for c, kind in _declared_columns(schema).items()
            if c in columns and columns[c][2] not in _HOLDS.get(kind, {kind})]


def _declared_columns(schema: TableSchema) -> dict[str, str]:
    """A table's columns as declared, but ``ts`` (the designated timestamp): name -> type."""
    return {**{name: "SYMBOL" for name in schema.symbols}, **schema.columns, "event_id": "VARCHAR"}
