"""Session state that survives the shell's release of the database file (``.share on``).

While it waits at the prompt, a shell in sharing mode closes its connection so that other
processes (BI tools, the ``duckdb`` CLI) can open the file. A DuckDB connection owns state
that closing would lose; :func:`capture` reads it before the release and :func:`restore`
re-applies it when the connection is reopened for the next statement:

- settings changed with ``SET`` / ``PRAGMA`` (the difference to the settings of a fresh
  connection), ``SET VARIABLE`` variables, and the current database and schema (``USE``);
- databases attached from files (``ATTACH``), with their read-only flag;
- temporary tables (their DDL and rows, kept in memory as Arrow tables), temporary views,
  temporary macros (scalar and table), and prepared statements (``PREPARE``).

Some state cannot be carried over: an open transaction, and attached in-memory databases.
While the session holds such state, :func:`capture` returns the reason and the shell keeps
the connection (and the lock) until the state is gone.
"""

from __future__ import annotations

import itertools
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from cfdb.errors import CfdbError

_counter = itertools.count(1)

#: Settings never re-applied: fixed when the database is opened, or derived from others.
_SKIP_SETTINGS = frozenset(
    {
        "access_mode",
        "storage_compatibility_version",
        "worker_threads",
        "write_buffer_row_group_memory_limit",
        "temp_directory",
        "extension_directory",
        "profiling_output",
    }
)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Snapshot:
    """What a reopened connection must get back."""

    settings: list[tuple[str, str]] = field(default_factory=list)
    variables: list[tuple[str, str, str]] = field(default_factory=list)
    attached: list[tuple[str, str, bool]] = field(default_factory=list)
    use: str | None = None
    tables: list[tuple[str, str, Any]] = field(default_factory=list)  # schema, DDL, rows
    views: list[str] = field(default_factory=list)
    macros: list[str] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(
            (self.settings, self.variables, self.attached, self.use, self.tables, self.views)
        ) and not any((self.macros, self.prepared))


class StateKeeper:
    """Captures and restores the state of one store's connection across releases.

    Args:
        store: the :class:`cfdb.store.connection.Store` the shell runs on.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.pending: Snapshot | None = None
        self.problems: list[str] = []
        self._baseline: dict[str, str] | None = None
        self._main: str | None = None
        store.on_open(self._on_open)

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.execute(sql)

    def baseline(self) -> None:
        """Remember the settings of a fresh connection (call right after opening)."""
        if self._baseline is None:
            self._baseline = dict(self._rows("SELECT name, value FROM duckdb_settings()"))
            self._main = self._rows("SELECT current_database()")[0][0]

    # -- capture ------------------------------------------------------------------------------
    def capture(self) -> tuple[Snapshot | None, str | None]:
        """The state to re-apply after a release, or (None, reason) if it cannot be kept."""
        self.baseline()
        rows = self._rows
        snap = Snapshot()
        for name, path, readonly, internal in rows(
            "SELECT database_name, path, readonly, internal FROM duckdb_databases() "
            "ORDER BY database_oid"
        ):
            if internal or name == self._main:
                continue
            if not path:
                return None, f"the in-memory database {name!r} is attached"
            snap.attached.append((name, path, bool(readonly)))
        assert self._baseline is not None
        for name, value in rows("SELECT name, value FROM duckdb_settings() ORDER BY name"):
            if name not in _SKIP_SETTINGS and self._baseline.get(name) != value:
                snap.settings.append((name, "" if value is None else str(value)))
        snap.variables = [
            (n, str(v), t)
            for n, v, t in rows("SELECT name, value::VARCHAR, type FROM duckdb_variables()")
        ]
        db, schema = rows("SELECT current_database(), current_schema()")[0]
        if (db, schema) != (self._main, "main"):
            snap.use = f"{_ident(db)}.{_ident(schema)}"
        for schema, name, ddl in rows(
            "SELECT schema_name, table_name, sql FROM duckdb_tables() "
            "WHERE database_name = 'temp' ORDER BY table_oid"
        ):
            data = self.store.arrow(f"SELECT * FROM temp.{_ident(schema)}.{_ident(name)}")
            snap.tables.append((f"temp.{_ident(schema)}.{_ident(name)}", ddl, data))
        snap.views = [
            sql
            for (sql,) in rows(
                "SELECT sql FROM duckdb_views() WHERE database_name = 'temp' AND NOT internal "
                "ORDER BY view_oid"
            )
        ]
        for name, kind, params, body in rows(
            "SELECT function_name, function_type, parameters, macro_definition "
            "FROM duckdb_functions() WHERE database_name = 'temp' AND NOT internal "
            "AND function_type IN ('macro', 'table_macro') ORDER BY function_oid"
        ):
            table = "TABLE " if kind == "table_macro" else ""
            snap.macros.append(
                f"CREATE OR REPLACE TEMP MACRO {_ident(name)}({', '.join(params)}) AS {table}{body}"
            )
        snap.prepared = [
            f"PREPARE {_ident(name)} AS {sql}"
            for name, sql in rows("SELECT name, statement FROM duckdb_prepared_statements()")
            if not name.startswith("__cfdb")
        ]
        return snap, None

    # -- restore ------------------------------------------------------------------------------
    def _on_open(self, store: Any) -> None:
        snap, self.pending = self.pending, None
        if snap is None:
            return
        self.problems = []

        def run(sql: str, what: str) -> None:
            try:
                store.execute(sql)
            except CfdbError as exc:
                self.problems.append(f"{what}: {exc.message}")

        for name, value in snap.settings:
            run(f"SET {_ident(name)} = {_literal(value)}", f"SET {name}")
        for name, value, type_name in snap.variables:
            run(f"SET VARIABLE {_ident(name)} = {_literal(value)}::{type_name}", f"variable {name}")
        for name, path, readonly in snap.attached:
            mode = " (READ_ONLY)" if readonly else ""
            run(f"ATTACH IF NOT EXISTS {_literal(path)} AS {_ident(name)}{mode}", f"ATTACH {name}")
        for target, ddl, data in snap.tables:
            run(ddl, target)
            alias = f"__cfdb_restore_{next(_counter)}"
            store.register(alias, data)
            try:
                run(f"INSERT INTO {target} SELECT * FROM {_ident(alias)}", target)
            finally:
                with suppress(Exception):
                    store.unregister(alias)
        for sql in [*snap.macros, *snap.views, *snap.prepared]:
            run(sql, sql.split(" AS ")[0])
        if snap.use:
            run(f"USE {snap.use}", "USE")
