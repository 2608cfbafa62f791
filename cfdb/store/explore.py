"""Read-only access to a cfdb file for the web explorer (``cfdb serve``).

Every request opens its own DuckDB connection, read-only and with external access disabled
(so neither a page nor the SQL box can read a path other than the served file), and closes it
before answering: between requests the file stays free for other processes, e.g. a
``MATERIALIZE GRID`` that writes cells the next refresh shows. Queries take DuckDB named
parameters (``$grid``); :func:`inline` renders the same text with literals, to be run in the
SQL box. A user's statement runs under a time limit and is read a page at a time.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from cfdb.errors import CfdbError, CfdbExecutionError, CfdbLockError, CfdbSchemaError
from cfdb.store.catalog import literal
from cfdb.store.connection import _check_is_duckdb, wrap_duckdb_error

#: Seconds a statement of the SQL box may run before it is interrupted.
DEFAULT_TIME_LIMIT = 30.0

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Rows:
    """A query's result: column names and row tuples."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    sql: str = ""
    more: bool = False  # a page: whether rows follow it
    message: str | None = None  # a statement that returns no rows: what it did
    extra: dict[str, Any] = field(default_factory=dict)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


def inline(sql: str, params: Mapping[str, Any] | None) -> str:
    """``sql`` with each ``$name`` replaced by the SQL literal of ``params[name]``."""
    if not params:
        return sql
    return _PARAM_RE.sub(
        lambda m: literal(params[m.group(1)]) if m.group(1) in params else m.group(0), sql
    )


class Reader:
    """One read-only connection to the served file, for one request."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
        """Run a parameterized query of the explorer (only the ``$names`` it uses are bound)."""
        used = {k: v for k, v in (params or {}).items() if f"${k}" in sql}
        try:
            cur = self._con.execute(sql, used) if used else self._con.execute(sql)
            columns = [d[0] for d in cur.description or []]
            return Rows(columns, cur.fetchall(), sql=inline(sql, params))
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, inline(sql, params)) from exc

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        result = self.rows(sql, params).rows
        return result[0][0] if result else None

    def tables(self) -> set[str]:
        """Lower-cased names of the tables and views of the main schema."""
        found = self.rows(
            "SELECT lower(table_name) FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND database_name = current_database() UNION ALL "
            "SELECT lower(view_name) FROM duckdb_views() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND NOT internal"
        )
        return {r[0] for r in found.rows}

    def columns(self, table: str) -> list[str]:
        found = self.rows(
            "SELECT column_name FROM duckdb_columns() WHERE lower(table_name) = lower($t) "
            "AND schema_name = 'main' AND database_name = current_database() "
            "ORDER BY column_index",
            {"t": table},
        )
        return [r[0] for r in found.rows]

    def schema_version(self) -> int | None:
        """The file's cfdb schema version; ``None`` when it is not a cfdb database."""
        if "cfdb_meta" not in self.tables():
            return None
        value = self.scalar("SELECT value FROM cfdb_meta WHERE key = 'schema_version'")
        return int(value) if value is not None else None

    def page(
        self, sql: str, offset: int, limit: int, time_limit: float = DEFAULT_TIME_LIMIT
    ) -> Rows:
        """A user's statement(s): rows ``offset`` .. ``offset + limit`` of the last one.

        Interrupted after ``time_limit`` seconds (a :class:`CfdbExecutionError`).
        """
        timer = threading.Timer(time_limit, self._con.interrupt)
        timer.start()
        try:
            rel = self._con.sql(sql)
            if rel is None:
                return Rows([], [], sql=sql, message="The statement ran; it returns no rows.")
            got = rel.limit(limit + 1, offset).fetchall()
            return Rows(list(rel.columns), got[:limit], sql=sql, more=len(got) > limit)
        except duckdb.InterruptException as exc:
            raise CfdbExecutionError(
                f"the statement was stopped after {time_limit:g} s",
                hint="narrow it down (a WHERE, a LIMIT) or run it in cfdb shell",
            ) from exc
        except duckdb.Error as exc:
            raise wrap_duckdb_error(exc, sql, con=self._con) from exc
        finally:
            timer.cancel()


class ExploreFile:
    """The served database file. :meth:`reader` opens a fresh read-only connection.

    Requests are served one at a time (a lock): the explorer is a local, single-user tool,
    and one DuckDB instance per file per process is what DuckDB allows.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.name = os.path.basename(self.path)
        self.lock = threading.Lock()

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        with self.lock:
            con = open_read_only(self.path)
            try:
                yield Reader(con)
            finally:
                con.close()

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


def open_read_only(path: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to ``path`` that can read no other file."""
    if not os.path.isfile(path):
        raise CfdbSchemaError(f"{path!r} does not exist (or is not a file)")
    try:
        if os.path.getsize(path):
            _check_is_duckdb(path)
        else:
            raise CfdbSchemaError(f"{path!r} is empty: not a DuckDB database file")
        return duckdb.connect(path, read_only=True, config={"enable_external_access": False})
    except CfdbError:
        raise
    except OSError as exc:
        raise CfdbSchemaError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    except duckdb.Error as exc:
        message = str(exc)
        if "lock" in message.lower():
            raise CfdbLockError(
                f"{os.path.basename(path)!r} is locked by another process",
                hint="a statement is writing to it (for example MATERIALIZE GRID); "
                "refresh when it is done, or run it with LIMIT so it commits and releases the "
                "file between chunks",
            ) from exc
        raise CfdbSchemaError(f"cannot open {path!r}: {message}") from exc
