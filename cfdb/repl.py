"""The shell: the interactive prompt, dot-commands, and the statement runner behind every CLI
command that runs SQL (``-c``, piped scripts, ``cfdb run``).

A script is run one statement at a time, so each result is fetched and printed before the next
statement runs and an error stops the script after the results already shown. Errors are
shown as :meth:`CfdbError.render` text (message, line, caret), positioned in the whole script.

When the database is a file, the interactive shell releases its lock after each input, so that
while it waits at the prompt other processes (the ``duckdb`` CLI, BI tools) can open the file.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console

from cfdb import format as fmt
from cfdb.api import Database
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbError, CfdbExecutionError
from cfdb.lang import is_complete, statement_keywords

PROMPT = "cfdb> "
CONTINUATION = "  ..> "

#: Statements that start with these words return rows; others are commands (``OK``).
# fmt: off
QUERY_WORDS = frozenset([
    "SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "SUMMARIZE",
    "EXPLAIN", "PRAGMA", "CALL", "PIVOT", "UNPIVOT", "(",
])

#: Used when the database cannot list its own keywords.
FALLBACK_KEYWORDS = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "JOIN",
    "LEFT", "RIGHT", "FULL", "INNER", "OUTER", "CROSS", "USING", "ON", "AS", "AND", "OR", "NOT",
    "NULL", "IS", "IN", "BETWEEN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT",
    "UNION", "ALL", "EXCEPT", "INTERSECT", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE",
    "CREATE", "TABLE", "VIEW", "DROP", "ALTER", "ASC", "DESC", "CAST", "TRUE", "FALSE",
]
# fmt: on

_NAMES_SQL = (
    "SELECT table_name, 'table' FROM duckdb_tables() "
    "UNION SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal "
    "UNION SELECT column_name, 'column' FROM duckdb_columns() WHERE NOT internal"
)
_KEYWORDS_SQL = "SELECT DISTINCT upper(keyword_name) FROM duckdb_keywords()"
_TABLES_SQL = (
    "SELECT name FROM (SELECT table_name AS name FROM duckdb_tables() "
    "WHERE database_name IN (current_database(), 'temp') "
    "UNION SELECT view_name FROM duckdb_views() "
    "WHERE NOT internal AND database_name IN (current_database(), 'temp')) "
    "ORDER BY lower(name), name"
)
_SCHEMA_SQL = (
    "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
    "WHERE NOT internal AND database_name IN (current_database(), 'temp'){where} "
    "ORDER BY lower(table_name), table_name, column_index"
)

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIRST_WORD_RE = re.compile(r"\(|[A-Za-z_]+")
_BLOCK_COMMENT_RE = re.compile(r"/\*.*?\*/", re.DOTALL)

DOT_COMMANDS = {
    ".help": "this help",
    ".tables": "list tables and views",
    ".schema": "columns and types of TABLE (of every table without one)",
    ".mode": "how results are shown",
    ".maxrows": "rows shown per result before '… N more rows' (0: all)",
    ".timer": "print the time each statement takes",
    ".read": "run the statements of a script file",
    ".quit": "leave the shell (also .exit, Ctrl-D)",
    ".exit": "leave the shell",
}
_DOT_USAGE = {
    ".schema": ".schema [TABLE]",
    ".mode": ".mode table|csv|line",
    ".maxrows": ".maxrows N",
    ".timer": ".timer on|off",
    ".read": ".read FILE",
}


# -- splitting scripts -------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One thing to run from a script: a statement (``sql``) or a dot-command line (``dot``).

    ``offset`` is where ``text`` starts in the script.
    """

    kind: str
    text: str
    offset: int


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but whitespace and comments."""
    text = _BLOCK_COMMENT_RE.sub("", text)
    return all(not line.strip() or line.strip().startswith("--") for line in text.split("\n"))


def split_units(script: str) -> Iterator[Unit]:
    """The statements and dot-commands of ``script``, in order, lazily.

    A statement ends at a top-level ``;`` (one inside a string or a comment does not count);
    the last one may lack it. A line starting with ``.`` between statements is a dot-command.
    """
    start = 0  # where the pending statement starts
    pos = 0
    for line in script.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        if line.lstrip().startswith(".") and is_blank(script[start:line_start]):
            yield Unit("dot", line.strip(), line_start)
            start = pos
            continue
        semicolon = script.find(";", line_start, pos)
        while semicolon >= 0:
            if is_complete(script[start : semicolon + 1]):
                yield Unit("sql", script[start : semicolon + 1], start)
                start = semicolon + 1
            semicolon = script.find(";", semicolon + 1, pos)
    if not is_blank(script[start:]):
        yield Unit("sql", script[start:], start)


def first_word(statement: str) -> str:
    """The statement's first keyword, upper-cased (``(`` for a parenthesized query)."""
    m = _FIRST_WORD_RE.search(statement)
    return m.group().upper() if m else ""


# -- errors ------------------------------------------------------------------------------------
def _wrap_fetch_error(exc: Exception, sql: str, start: int, end: int) -> CfdbError | None:
    """A database error raised while fetching a result, as a CfdbError at its statement.

    Query results are computed when fetched, so a run-time failure (a bad cast, say) surfaces
    here rather than when the statement was run.
    """
    module = (type(exc).__module__ or "").split(".")[0]
    if module not in ("duckdb", "_duckdb"):
        return None
    from cfdb.store.connection import udf_error

    raised = udf_error(str(exc))  # by a cfdb SQL function: keep its class
    if raised is not None:
        return raised.located(sql, start, end)
    name = type(exc).__name__
    head = str(exc).split("\n\nLINE ")[0].strip()
    cls = (
        CfdbDataError
        if name in ("ConversionException", "ConstraintException")
        else CfdbExecutionError
    )
    return cls(head, sql=sql, start=start, end=end)


def _is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is how the database reports a query cancelled by Ctrl-C."""
    if type(exc).__name__ == "InterruptException":
        return True
    return type(exc) is RuntimeError and str(exc).strip().lower() == "query interrupted"


def show_exception(
    exc: BaseException, console: Console, *, debug: bool = False, source: str | None = None
) -> None:
    """Print an error: the rendered CfdbError, or "Internal error" for anything else.

    With ``debug`` the traceback comes first.
    """
    sys.stdout.flush()
    if debug:
        console.out(fmt.render_traceback(exc), highlight=False)
    if isinstance(exc, CfdbError):
        text = fmt.render_error(exc, source=source)
    else:
        text = fmt.render_internal_error(exc)
        if debug:
            text = text.split("\n")[0]
    console.out(text, style="red", highlight=False)


# -- the shell ---------------------------------------------------------------------------------
class Shell:
    """Runs scripts and dot-commands against a database and prints what they produce.

    Args:
        db: the database.
        release: release the file lock after each interactive input (``release_lock``).
        interactive: print ``OK`` for commands and a banner; used by :meth:`repl`.
        debug: show tracebacks with errors.
        out: where results go (default: standard output).
        err: where errors go (default: standard error).
        name: how to name the database in the banner.
    """

    def __init__(
        self,
        db: Database,
        *,
        release: bool = False,
        interactive: bool = False,
        debug: bool = False,
        out: Console | None = None,
        err: Console | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.release = release
        self.interactive = interactive
        self.debug = debug
        self.out = out or Console(highlight=False)
        self.err = err or Console(stderr=True, highlight=False)
        self.name = name
        self.mode = "table"
        self.max_rows = fmt.DEFAULT_MAX_ROWS
        self.timer = False
        self.done = False
        self.names: list[tuple[str, str]] = []
        self.keywords: list[str] = []

    # -- output ----------------------------------------------------------------------------
    def print(self, text: str, style: str | None = None) -> None:
        self.out.out(text, style=style, highlight=False)

    def note(self, text: str) -> None:
        """A secondary message (``OK``, the timer) on the result stream."""
        self.print(text, style="dim")

    def fail(self, message: str) -> bool:
        """Print a usage problem as an error; returns False."""
        sys.stdout.flush()
        self.err.out(f"Error: {message}", style="red", highlight=False)
        return False

    def show_error(self, exc: BaseException, source: str | None = None) -> None:
        show_exception(exc, self.err, debug=self.debug, source=source)

    @property
    def width(self) -> int | None:
        """The terminal width tables must fit, or None when output is not a terminal."""
        return self.out.width if self.out.is_terminal else None

    # -- running ---------------------------------------------------------------------------
    def run_script(self, script: str, *, source: str | None = None) -> bool:
        """Run every statement and dot-command of ``script``; False at the first error.

        Args:
            script: the text.
            source: a file name to put in front of error positions.
        """
        for unit in split_units(script):
            if self.done:
                break
            if unit.kind == "dot":
                ok = self.run_dot(unit.text)
            else:
                ok = self._run_statement(unit, script, source)
            if not ok:
                return False
        return True

    def _run_statement(self, unit: Unit, script: str, source: str | None) -> bool:
        started = time.perf_counter()
        try:
            results = self.db.execute(unit.text)
            for result in results:
                self._show(result)
        except KeyboardInterrupt:
            return self.fail("interrupted")
        except Exception as exc:
            if _is_interrupt(exc):
                return self.fail("interrupted")
            if isinstance(exc, CfdbError) and exc.sql == unit.text and script != unit.text:
                exc.shifted(script, unit.offset)
            self.show_error(exc, source)
            return False
        if self.timer and results:
            self.note(fmt.elapsed(time.perf_counter() - started))
        return True

    def _show(self, result: Any) -> None:
        """Fetch and print one statement's result."""
        statement = result.statement
        rel = result.relation
        if rel is None:
            self._ok()
            return
        try:
            columns = list(rel.columns)
            types = [str(t) for t in rel.types]
            command = not statement.is_cfdb and first_word(statement.text) not in QUERY_WORDS
            if command and columns in (["Count"], ["Success"]):
                rows = rel.fetchall()
                count = rows[0][0] if columns == ["Count"] and rows else None
                self._ok(count if isinstance(count, int) else None)
                return
            limit = None if self.mode == "csv" or self.max_rows <= 0 else self.max_rows
            rows, total = fmt.take_rows(rel, limit)
        except CfdbError:
            raise
        except Exception as exc:
            if _is_interrupt(exc):
                raise KeyboardInterrupt from exc
            wrapped = _wrap_fetch_error(exc, statement.script, statement.start, statement.end)
            if wrapped is None:
                raise
            raise wrapped from exc
        self.print(
            fmt.render_result(self.mode, columns, types, rows, total=total, max_width=self.width)
        )

    def _ok(self, count: int | None = None) -> None:
        if self.interactive:
            self.note("OK" if count is None else f"OK, {fmt.row_count(count)}")

    def release_lock(self) -> None:
        """Let other processes open the file until the next statement (if so configured)."""
        if self.release:
            try:
                self.db.release()
            except Exception as exc:
                self.show_error(exc)

    # -- dot-commands ----------------------------------------------------------------------
    def run_dot(self, line: str) -> bool:
        """Run one dot-command line; False if it failed."""
        command, _, arg = line.strip().partition(" ")
        command, arg = command.lower(), arg.strip()
        handler: Callable[[str], bool] | None = {
            ".help": self._dot_help,
            ".tables": self._dot_tables,
            ".schema": self._dot_schema,
            ".mode": self._dot_mode,
            ".maxrows": self._dot_maxrows,
            ".timer": self._dot_timer,
            ".read": self._dot_read,
            ".quit": self._dot_quit,
            ".exit": self._dot_quit,
        }.get(command)
        if handler is None:
            return self.fail(f"unknown command {command}; enter .help for the list")
        try:
            return handler(arg)
        except KeyboardInterrupt:
            return self.fail("interrupted")
        except Exception as exc:
            self.show_error(exc)
            return False

    def help_text(self) -> str:
        lines = [
            "Statements end with ';' and may span several lines. Plain SQL goes to DuckDB;",
            "cfdb adds statements such as LOAD DATASET adult; CREATE MODEL m AS",
            "logistic_regression TRAIN ON (SELECT ...); PREDICT m ON (SELECT ...).",
            "",
        ]
        width = max(len(_DOT_USAGE.get(c, c)) for c in DOT_COMMANDS) + 2
        for command, text in DOT_COMMANDS.items():
            lines.append(f"{_DOT_USAGE.get(command, command):<{width}}{text}")
        lines += [
            "",
            f"Now: .mode {self.mode}, .maxrows {self.max_rows}, "
            f".timer {'on' if self.timer else 'off'}.",
            "Tab completes keywords, tables and columns; Ctrl-C cancels the statement being",
            "typed (or running); Ctrl-D leaves.",
        ]
        if self.release:
            lines += [
                "",
                "The database file is unlocked after each input, so other programs can open it",
                "while the shell waits (e.g. duckdb -readonly FILE). The connection is reopened",
                "for each input, so TEMP tables and views, SET variables and open transactions",
                "do not survive from one input to the next. Start the shell with --keep-lock",
                "to keep one connection (and the lock) for the whole session.",
            ]
        return "\n".join(lines)

    def _dot_help(self, arg: str) -> bool:
        self.print(self.help_text())
        return True

    def _dot_tables(self, arg: str) -> bool:
        rel = self.db.sql(_TABLES_SQL)
        names = [row[0] for row in rel.fetchall()] if rel is not None else []
        if arg:
            pattern = re.compile(
                "^" + re.escape(arg).replace("%", ".*").replace("_", ".") + "$", re.IGNORECASE
            )
            names = [n for n in names if pattern.match(n)]
        if names:
            self.print(fmt.render_names(names, self.width))
        return True

    def _dot_schema(self, arg: str) -> bool:
        where = f" AND lower(table_name) = lower({_literal(arg)})" if arg else ""
        rel = self.db.sql(_SCHEMA_SQL.format(where=where))
        rows = rel.fetchall() if rel is not None else []
        if arg and not rows:
            raise CfdbCatalogError(f"no table or view named {arg!r}", hint="see .tables")
        tables: dict[str, list[tuple[str, str, bool]]] = {}
        for table, column, data_type, nullable in rows:
            tables.setdefault(table, []).append((column, data_type, bool(nullable)))
        blocks = []
        for table, cols in tables.items():
            name_w = max(cell_len(c) for c, _, _ in cols)
            type_w = max(len(t) for _, t, _ in cols)
            body = [
                f"  {c}{' ' * (name_w - cell_len(c))}  "
                + (f"{t:<{type_w}}  NOT NULL" if not null else t)
                for c, t, null in cols
            ]
            blocks.append("\n".join([table, *body]))
        if blocks:
            self.print("\n\n".join(blocks))
        return True

    def _dot_mode(self, arg: str) -> bool:
        if not arg:
            self.print(self.mode)
            return True
        if arg.lower() not in fmt.MODES:
            return self.fail(f"usage: {_DOT_USAGE['.mode']}")
        self.mode = arg.lower()
        return True

    def _dot_maxrows(self, arg: str) -> bool:
        if not arg:
            self.print(str(self.max_rows))
            return True
        try:
            value = int(arg)
        except ValueError:
            value = -1
        if value < 0:
            return self.fail(f"usage: {_DOT_USAGE['.maxrows']} (a number, 0 for all rows)")
        self.max_rows = value
        return True

    def _dot_timer(self, arg: str) -> bool:
        if arg.lower() not in ("on", "off"):
            return self.fail(f"usage: {_DOT_USAGE['.timer']}")
        self.timer = arg.lower() == "on"
        return True

    def _dot_read(self, arg: str) -> bool:
        if not arg:
            return self.fail(f"usage: {_DOT_USAGE['.read']}")
        path = os.path.expanduser(arg.strip("'\""))
        try:
            script = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            return self.fail(f"cannot read {path}: {exc.strerror or exc}")
        return self.run_script(script, source=path)

    def _dot_quit(self, arg: str) -> bool:
        self.done = True
        return True

    # -- completion ------------------------------------------------------------------------
    def load_keywords(self) -> None:
        """SQL keywords of the database plus cfdb's own (once per session)."""
        words = list(FALLBACK_KEYWORDS)
        try:
            rel = self.db.sql(_KEYWORDS_SQL)
            if rel is not None:
                words += [row[0] for row in rel.fetchall()]
        except Exception as exc:
            if self.debug:
                self.show_error(exc)
        cfdb_words = [w.upper() for w in statement_keywords()]
        self.keywords = _unique([*cfdb_words, *sorted(set(words) - set(cfdb_words))])

    def refresh_names(self) -> None:
        """Table, view and column names for completion (after each statement)."""
        try:
            rel = self.db.sql(_NAMES_SQL)
            rows = rel.fetchall() if rel is not None else []
        except Exception as exc:
            if self.debug:
                self.show_error(exc)
            return
        order = {"table": 0, "view": 1, "column": 2}
        self.names = sorted(
            {(str(n), str(k)) for n, k in rows}, key=lambda nk: (order[nk[1]], nk[0].lower())
        )

    def table_names(self) -> list[str]:
        return [n for n, k in self.names if k in ("table", "view")]

    def completions(self, word: str) -> Iterator[tuple[str, str, str]]:
        """(text to insert, shown text, kind) for every name or keyword ``word`` starts."""
        prefix = word.lower()
        seen: set[str] = set()
        for name, kind in self.names:
            if name.lower().startswith(prefix) and name not in seen:
                seen.add(name)
                yield (name if _IDENTIFIER_RE.match(name) else _quote(name)), name, kind
        lower = word.islower()
        for keyword in self.keywords:
            if keyword.lower().startswith(prefix) and keyword not in seen:
                seen.add(keyword)
                yield (keyword.lower() if lower else keyword), keyword, "keyword"

    # -- the interactive loop --------------------------------------------------------------
    def banner(self) -> str:
        from cfdb import __version__

        where = self.name or "an in-memory database"
        lines = [
            f"cfdb {__version__}, connected to {where}.",
            "Statements end with ';'. Enter .help for help, .quit or Ctrl-D to leave.",
        ]
        if self.release:
            lines.append(
                "The file is unlocked between statements (--keep-lock keeps one connection)."
            )
        return "\n".join(lines)

    def repl(self, *, history: str | None = None, plain: bool = False) -> int:
        """Read, run and print until ``.quit`` or end of input; returns the exit status.

        Args:
            history: the history file (None: none kept).
            plain: read lines with ``input()`` instead of prompt_toolkit (dumb terminals).
        """
        self.interactive = True
        self.print(self.banner(), style="dim")
        self.load_keywords()
        self.refresh_names()
        self.release_lock()
        read = _plain_reader() if plain else self._toolkit_reader(history)
        while not self.done:
            try:
                text = read()
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if is_blank(text):
                continue
            try:
                self.run_script(text)
                stripped = text.lstrip()
                if not stripped.startswith(".") or stripped.startswith(".read"):
                    self.refresh_names()
            except KeyboardInterrupt:
                self.fail("interrupted")
            finally:
                self.release_lock()
        return 0

    def _toolkit_reader(self, history: str | None) -> Callable[[], str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        @bindings.add("enter")
        def _enter(event: Any) -> None:
            buf = event.current_buffer
            state = buf.complete_state
            if state is not None and state.current_completion is not None:
                buf.apply_completion(state.current_completion)
                return
            text = buf.text
            if is_blank(text) or text.lstrip().startswith(".") or is_complete(text):
                buf.validate_and_handle()
            else:
                buf.insert_text("\n")

        store: History = InMemoryHistory()
        if history:
            try:
                Path(history).expanduser().touch(exist_ok=True)
                store = FileHistory(os.path.expanduser(history))
            except OSError as exc:
                self.fail(f"history is not kept: cannot write {history}: {exc.strerror or exc}")

        session: PromptSession[str] = PromptSession(
            history=store,
            completer=make_completer(self),
            lexer=_lexer(),
            multiline=True,
            key_bindings=bindings,
            prompt_continuation=lambda width, line, soft: CONTINUATION.rjust(width),
            complete_while_typing=False,
            enable_open_in_editor=False,
        )
        return lambda: session.prompt(PROMPT)


def _plain_reader() -> Callable[[], str]:
    """Read one input with ``input()``: a dot-command line, or lines up to a complete one."""

    def read() -> str:
        lines: list[str] = []
        while True:
            try:
                line = input(CONTINUATION if lines else PROMPT)
            except KeyboardInterrupt:
                print()
                lines = []
                continue
            except EOFError:
                print()
                raise
            if not lines and line.lstrip().startswith("."):
                return line
            lines.append(line)
            text = "\n".join(lines)
            if is_blank(text):
                return ""
            if is_complete(text):
                return text

    return read


def _lexer() -> Any:
    try:
        from prompt_toolkit.lexers import PygmentsLexer
        from pygments.lexers.sql import SqlLexer
    except ImportError:
        return None
    return PygmentsLexer(SqlLexer)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def make_completer(shell: Shell) -> Any:
    """A prompt_toolkit completer of dot-commands and their arguments, keywords, table and
    column names (prompt_toolkit is imported only for the interactive shell)."""
    from prompt_toolkit.completion import Completer, Completion

    class ShellCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Any]:
            text = document.text_before_cursor
            stripped = text.lstrip()
            if stripped.startswith(".") and "\n" not in stripped:
                yield from self._dot(stripped)
                return
            m = _WORD_RE.search(text)
            if not m:
                return
            for insert, shown, kind in shell.completions(m.group()):
                yield Completion(insert, -len(m.group()), display=shown, display_meta=kind)

        def _dot(self, text: str) -> Iterator[Any]:
            command, space, arg = text.partition(" ")
            if not space:
                for name in DOT_COMMANDS:
                    if name.startswith(command.lower()):
                        yield Completion(name, -len(command), display_meta=DOT_COMMANDS[name])
                return
            options: Sequence[str] = {
                ".schema": shell.table_names(),
                ".mode": fmt.MODES,
                ".timer": ("on", "off"),
            }.get(command.lower(), ())
            arg = arg.lstrip()
            for option in options:
                if option.lower().startswith(arg.lower()):
                    yield Completion(option, -len(arg))

    return ShellCompleter()
