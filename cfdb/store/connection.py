"""The DuckDB connection: opening files, wrapping DuckDB errors, transactions, lock release.

This package is the only place that imports ``duckdb``. Files are opened with
``storage_compatibility_version`` pinned so that older DuckDB readers (the ``duckdb-cli``
package, BI tools) can open what cfdb writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import duckdb

from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbError,
    CfdbExecutionError,
    CfdbLockError,
    CfdbSchemaError,
    CfdbSyntaxError,
)

#: The on-disk format cfdb writes: readable by DuckDB 1.4 and newer.
STORAGE_COMPATIBILITY_VERSION = "v1.4.0"

Relation = duckdb.DuckDBPyRelation

_LINE_RE = re.compile(r"^LINE (\d+): (.*)$")


def _error_class(exc: duckdb.Error) -> type[CfdbError]:
    if isinstance(exc, duckdb.ParserException):
        return CfdbSyntaxError
    if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
        return CfdbCatalogError
    if isinstance(exc, duckdb.ConversionException | duckdb.ConstraintException):
        return CfdbDataError
    return CfdbExecutionError


def _position(message: str, statement: str) -> int | None:
    """The 0-based offset in ``statement`` that DuckDB's ``LINE n:`` caret points at."""
    lines = message.split("\n")
    for i, line in enumerate(lines[:-1]):
        m = _LINE_RE.match(line)
        if not m or "^" not in lines[i + 1]:
            continue
        lineno, shown = int(m.group(1)), m.group(2)
        caret = lines[i + 1].index("^") - len(line) + len(shown)
        stmt_lines = statement.split("\n")
        if not 1 <= lineno <= len(stmt_lines):
            return None
        target = stmt_lines[lineno - 1]
        lead = 0
        if shown.startswith("..."):
            shown, lead = shown[3:], 3
        if shown.endswith("..."):
            shown = shown[:-3]
        found = target.find(shown) if shown else 0
        if found < 0:
            return None
        line_offset = sum(len(s) + 1 for s in stmt_lines[: lineno - 1])
        return line_offset + found + max(0, caret - lead)
    return None


_PROBE = "PREPARE __cfdb_probe AS "


def _probe_position(con: duckdb.DuckDBPyConnection, statement: str) -> int | None:
    # The relation API reports binder and catalog errors without a position; preparing the
    # same text (which binds it without running it) reports one.
    try:
        con.execute(_PROBE + statement).fetchall()
    except duckdb.Error as exc:
        pos = _position(str(exc), _PROBE + statement)
        return pos - len(_PROBE) if pos is not None and pos >= len(_PROBE) else None
    with suppress(duckdb.Error):
        con.execute("DEALLOCATE __cfdb_probe").fetchall()
    return None


_UDF_RE = re.compile(
    r"Python exception occurred while executing the UDF: (Cfdb\w+): (.*)", re.DOTALL
)


def udf_error(message: str) -> CfdbError | None:
    """The CfdbError that one of cfdb's SQL functions raised inside DuckDB (DuckDB keeps its
    class name and text in its own message), or ``None``."""
    from cfdb import errors

    m = _UDF_RE.search(message)
    cls = getattr(errors, m.group(1), None) if m else None
    if m is None or not (isinstance(cls, type) and issubclass(cls, CfdbError)):
        return None
    return cls(m.group(2).strip())


def wrap_duckdb_error(
    exc: duckdb.Error,
    statement: str,
    offset: int = 0,
    script: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> CfdbError:
    """Turn a DuckDB error into a CfdbError located in ``script`` (or ``statement``).

    With ``con``, an error that DuckDB reported without a position is located by preparing
    the statement again.
    """
    message = str(exc)
    head = message.split("\n\nLINE ")[0].strip()
    # The CfdbError's own kind is shown in front ("Catalog error: ..."); drop DuckDB's.
    head = re.sub(r"^[A-Za-z ]+ Error: ", "", head, count=1)
    if isinstance(exc, duckdb.IOException) and "lock" in message.lower():
        return CfdbLockError(
            head, hint="another process holds the database; close it or open read-only"
        )
    udf = udf_error(message)
    if udf is not None:
        return udf.located(script or statement, offset if script is not None else 0)
    pos = _position(message, statement)
    if pos is None and con is not None and not isinstance(exc, duckdb.ParserException):
        pos = _probe_position(con, statement)
    err = _error_class(exc)(head)
    if pos is not None:
        err.located(statement, pos)
        if script is not None:
            err.shifted(script, offset)
    else:
        err.located(script or statement, offset if script is not None else 0)
    return err


def open_duckdb(path: str | None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open ``path`` (``None`` or ``":memory:"`` for in-memory) with the pinned format."""
    target = ":memory:" if path in (None, ":memory:") else os.fspath(path)
    config = {"storage_compatibility_version": STORAGE_COMPATIBILITY_VERSION}
    if target != ":memory:" and os.path.isdir(target):
        raise CfdbSchemaError(f"{target!r} is a directory, not a database file")
    if target != ":memory:" and os.path.exists(target) and os.path.getsize(target):
        _check_is_duckdb(target)
    try:
        if read_only:
            return duckdb.connect(target, read_only=True)
        return duckdb.connect(target, config=config)
    except duckdb.IOException as exc:
        message = str(exc)
        if "lock" in message.lower():
            raise CfdbLockError(
                f"cannot open {target!r}: it is locked by another process",
                hint="close the other session, or open the file read-only "
                "(cfdb shell --read-only, or cfdb.connect(..., read_only=True))",
            ) from exc
        raise CfdbSchemaError(f"cannot open {target!r}: {message}") from exc
    except duckdb.Error as exc:
        raise CfdbSchemaError(f"cannot open {target!r}: {exc}") from exc


#: Smallest DuckDB file: its header blocks (a shorter file is truncated).
_MIN_DUCKDB_BYTES = 3 * 4096


def _check_is_duckdb(path: str) -> None:
    # A DuckDB file has the magic bytes "DUCK" at offset 8; refuse anything else before DuckDB
    # tries (and, for a writable open, before it could touch the file).
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise CfdbSchemaError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if header[8:12] != b"DUCK":
        raise CfdbSchemaError(f"{path!r} is not a DuckDB database file")
    if os.path.getsize(path) < _MIN_DUCKDB_BYTES:
        raise CfdbSchemaError(f"{path!r} is a truncated DuckDB database file")


class Store:
    """A cfdb database: one DuckDB connection, opened lazily and releasable between statements.

    Args:
        path: a file path, or ``None`` for an in-memory database.
        read_only: open the file read-only (no migrations are run).
    """

    def __init__(self, path: str | None = None, *, read_only: bool = False) -> None:
        self.path = None if path in (None, ":memory:") else os.fspath(path)
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        self._on_open: list[Any] = []

    def on_open(self, callback: Any) -> None:
        """Run ``callback(store)`` each time the connection is (re)opened."""
        self._on_open.append(callback)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The live connection, opened on first use."""
        if self._con is None:
            self._con = open_duckdb(self.path, read_only=self.read_only)
            try:
                for callback in self._on_open:
                    callback(self)
            except BaseException:
                # A file refused while opening must not stay open (a later open of the same
                # file in this process would fail with "different configuration").
                self.close()
                raise
        return self._con

    def open(self) -> None:
        """Open the connection now (a bad or locked file fails here)."""
        _ = self.con

    @property
    def is_open(self) -> bool:
        return self._con is not None

    def release(self) -> None:
        """Close the connection so other processes can open the file; reopened on next use.

        In-memory databases are never released (closing would lose them).
        """
        if self._con is not None and self.path is not None:
            self._con.close()
            self._con = None

    def interrupt(self) -> None:
        """Ask DuckDB to stop the query running on this connection (from another thread)."""
        if self._con is not None:
            self._con.interrupt()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- running SQL ------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement and fetch all its rows (DuckDB errors become CfdbErrors)."""
        try:
            cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
            return cur.fetchall()
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, sql) from exc

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Relation:
        """A relation for ``sql`` (lazy for SELECTs; other statements run at once)."""
        try:
            if params is not None:
                return self.con.sql(sql, params=params)
            return self.con.sql(sql)
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, sql, con=None if params else self.con) from exc

    def run_script_text(self, sql: str, script: str, offset: int) -> Relation | None:
        """Run a user's statement verbatim; errors are located at ``offset`` in ``script``."""
        try:
            return self.con.sql(sql)
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, sql, offset, script, con=self.con) from exc

    def run_script_arrow(self, sql: str, script: str, offset: int) -> Any:
        """Run a user's query verbatim into a pyarrow Table; errors located in ``script``."""
        rel = self.run_script_text(sql, script, offset)
        try:
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, sql, offset, script) from exc

    def materialize(self, relation: Relation, statement: Any) -> Relation:
        """Run a lazy relation now and keep its rows (errors located at ``statement``)."""
        try:
            return self.con.from_arrow(relation.to_arrow_table())
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, statement.text, statement.start, statement.script) from exc

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """Run ``sql`` and return a pyarrow Table."""
        rel = self.query(sql, params)
        try:
            return rel.to_arrow_table()
        except duckdb.Error as exc:  # errors found while running, not while binding
            raise wrap_duckdb_error(exc, sql) from exc

    def from_arrow(self, table: Any) -> Relation:
        return self.con.from_arrow(table)

    def register(self, name: str, obj: Any) -> None:
        self.con.register(name, obj)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def in_transaction(self) -> bool:
        """Whether the user has a transaction open on this connection.

        Probing with ``BEGIN`` would abort the user's transaction (DuckDB 2.0 marks it
        aborted on the failed nested ``BEGIN``), so ask instead: in autocommit mode every
        statement runs in its own transaction and two statements see two ids.
        """
        first = self.con.execute("SELECT txid_current()").fetchone()
        second = self.con.execute("SELECT txid_current()").fetchone()
        return first == second

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around a cfdb statement; joins a transaction the user opened."""
        con = self.con
        if self.in_transaction():
            yield  # inside the user's own transaction: they commit or roll back
            return
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            yield
        except BaseException:
            with suppress(duckdb.Error):
                con.execute("ROLLBACK").fetchall()
            raise
        else:
            try:
                con.execute("COMMIT").fetchall()
            except duckdb.Error as exc:
                raise wrap_duckdb_error(exc, "COMMIT") from exc

    # -- catalog ----------------------------------------------------------------------------
    def table_exists(self, name: str, schema: str = "main") -> bool:
        rows = self.execute(
            "SELECT 1 FROM duckdb_tables() WHERE lower(table_name) = lower(?) "
            "AND schema_name = ? AND database_name = current_database() "
            "UNION ALL SELECT 1 FROM duckdb_views() WHERE lower(view_name) = lower(?) "
            "AND schema_name = ? AND database_name = current_database()",
            [name, schema, name, schema],
        )
        return bool(rows)

    def columns(self, name: str) -> list[tuple[str, str]]:
        """(column, DuckDB type) pairs of a table or view (temporary ones too), in order."""
        escaped = name.replace('"', '""')
        return self.relation_columns(f'SELECT * FROM "{escaped}" LIMIT 0')

    def relation_columns(self, sql: str) -> list[tuple[str, str]]:
        """(column, type) pairs a query would return, without running it."""
        rel = self.query(sql)
        return [(c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
