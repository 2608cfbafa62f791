"""The shell's core: the statement runner behind every CLI command that runs SQL (``-c``,
piped scripts, ``cfdb run``, the interactive prompt) and the read-run-print loop.

A script is run one statement at a time, so each result is fetched and printed before the next
statement runs and an error stops the script after the results already shown (``.bail off``
goes on). Errors are shown as :meth:`CfdbError.render` text (message, line, caret), positioned
in the whole script. Ctrl-C cancels the running statement (:mod:`cfdb.shell.cancel`).

In sharing mode (``.share on``, the default for a file in the interactive shell) the file is
released after each input, so that while the shell waits at the prompt other processes (the
``duckdb`` CLI, BI tools) can open it; the session's state is re-applied when the connection
is reopened (:mod:`cfdb.shell.state`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from cfdb import format as fmt
from cfdb.api import Database
from cfdb.errors import CfdbDataError, CfdbError, CfdbExecutionError
from cfdb.lang import is_complete
from cfdb.shell import modes
from cfdb.shell.cancel import cancel_on_sigint
from cfdb.shell.state import StateKeeper

PROMPT = "cfdb> "
CONTINUATION = "  ..> "

#: Statements that start with these words return rows; others are commands (``OK``).
# fmt: off
QUERY_WORDS = frozenset([
    "SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "SUMMARIZE",
    "EXPLAIN", "PRAGMA", "CALL", "PIVOT", "UNPIVOT", "(",
])

# fmt: on

_FIRST_WORD_RE = re.compile(r"\(|[A-Za-z_]+")
_BLOCK_COMMENT_RE = re.compile(r"/\*.*?\*/", re.DOTALL)


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
        share: release the file after each interactive input, keeping the session's state
            (``.share on``); see :meth:`release_lock`.
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
        share: bool = False,
        interactive: bool = False,
        debug: bool = False,
        out: Console | None = None,
        err: Console | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.share = share
        self.interactive = interactive
        self.debug = debug
        self.stdout = out or Console(highlight=False)
        self.out = self.stdout
        self.err = err or Console(stderr=True, highlight=False)
        self.name = name
        self.mode = "duckbox"
        self.options = modes.Options()
        self.max_rows = fmt.DEFAULT_MAX_ROWS
        self.max_width = 0  # 0: the terminal's width
        self.timer = False
        self.echo = False
        self.bail = True  # cfdb stops a script at its first error unless .bail off
        self.changes = False
        self.total_changes = 0
        self.highlight = True
        self.prompt = PROMPT
        self.continuation = CONTINUATION
        self.done = False
        self.exit_code = 0
        self.in_transaction = False
        self.output_name = "stdout"
        self._output_file: IO[str] | None = None
        self._once = False
        self._after_once: Callable[[str], None] | None = None
        self.kept_reason: str | None = None  # why the file is still locked in sharing mode
        self.completion: Any = None  # a cfdb.shell.complete.Names, made by repl()
        self.state: StateKeeper | None = None
        self._attach_state()

    def _attach_state(self) -> None:
        store = getattr(getattr(self.db, "session", None), "store", None)
        self.state = StateKeeper(store) if store is not None else None

    # -- output ----------------------------------------------------------------------------
    def print(self, text: str, style: str | None = None) -> None:
        self.out.out(text, style=style, highlight=False)

    def emit(self, text: str) -> None:
        """Write a result as is: no tab expansion or styling (tabs and ascii modes need it)."""
        self.out.file.write(text + "\n")
        self.out.file.flush()

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
        """The width tables must fit (``.maxwidth``, else the terminal's), None for no limit."""
        if self.max_width > 0:
            return self.max_width
        return self.out.width if self.out.is_terminal else None

    def redirect(self, path: str | None, *, once: bool = False) -> bool:
        """Send results to ``path`` (None: back to standard output); ``once``: for the next
        statement only (``.once``)."""
        self.end_redirect()
        if path is None:
            return True
        try:
            handle = open(os.path.expanduser(path), "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            return self.fail(f"cannot open {path}: {exc.strerror or exc}")
        self._output_file = handle
        self.out = Console(file=handle, highlight=False, width=100_000, color_system=None)
        self.output_name = path
        self._once = once
        return True

    def end_redirect(self) -> None:
        """Close the output file of ``.output`` / ``.once`` and go back to standard output."""
        handle, after = self._output_file, self._after_once
        self._output_file, self._after_once, self._once = None, None, False
        self.out, self.output_name = self.stdout, "stdout"
        if handle is not None:
            handle.close()
            if after is not None:
                after(handle.name)

    # -- running ---------------------------------------------------------------------------
    def run_script(self, script: str, *, source: str | None = None) -> bool:
        """Run every statement and dot-command of ``script``; False if one failed (the rest is
        skipped unless ``.bail off``).

        Args:
            script: the text.
            source: a file name to put in front of error positions.
        """
        ok = True
        for unit in split_units(script):
            if self.done:
                break
            if self.echo:
                self.print(unit.text.strip())
            if unit.kind == "dot":
                good = self.run_dot(unit.text)
            else:
                good = self._run_statement(unit, script, source)
                if self._once:
                    self.end_redirect()
            if not good:
                ok = False
                if self.bail:
                    return False
        return ok

    def _run_statement(self, unit: Unit, script: str, source: str | None) -> bool:
        started = time.perf_counter()
        try:
            with cancel_on_sigint(lambda: self.db.interrupt()):
                results = self.db.execute(unit.text)
                for result in results:
                    self._show(result)
        except KeyboardInterrupt:
            return self._interrupted()
        except Exception as exc:
            if _is_interrupt(exc):
                return self._interrupted()
            if isinstance(exc, CfdbError) and exc.sql == unit.text and script != unit.text:
                exc.shifted(script, unit.offset)
            self.show_error(exc, source)
            return False
        self._track_transaction(unit.text)
        if self.timer and results:
            self.note(fmt.elapsed(time.perf_counter() - started))
        return True

    def _interrupted(self) -> bool:
        """After Ctrl-C: roll back what the statement (or the open transaction) did."""
        rolled_back = False
        store = getattr(getattr(self.db, "session", None), "store", None)
        if store is not None and store.is_open:
            # on the store, not through the session: its hooks would query first, and an
            # interrupted transaction refuses everything but ROLLBACK
            with suppress(CfdbError):
                store.execute("ROLLBACK")
                rolled_back = True
        self.in_transaction = False
        return self.fail(
            "interrupted" + ("; the transaction was rolled back" if rolled_back else "")
        )

    def _track_transaction(self, text: str) -> None:
        text = "\n".join(
            line
            for line in _BLOCK_COMMENT_RE.sub("", text).split("\n")
            if not line.strip().startswith("--")
        )
        word = first_word(text)
        if word in ("BEGIN", "START") and "BATCH" not in text.upper().split()[:2]:
            self.in_transaction = True
        elif word in ("COMMIT", "ROLLBACK", "ABORT") or (
            word == "END" and "BATCH" not in text.upper().split()[:2]
        ):
            self.in_transaction = False

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
            if columns == ["explain_key", "explain_value"]:
                # EXPLAIN (DuckDB's or CFQL's EXPLAIN PLAN): the plan trees as drawn.
                for _, tree in rel.fetchall():
                    self.emit(str(tree))
                return
            command = not statement.is_cfdb and first_word(statement.text) not in QUERY_WORDS
            if command and columns in (["Count"], ["Success"]):
                rows = rel.fetchall()
                count = rows[0][0] if columns == ["Count"] and rows else None
                self._ok(count if isinstance(count, int) else None)
                return
            every = self.mode in modes.ALL_ROWS or self.max_rows <= 0
            head, tail, total = fmt.take_head_tail(rel, None if every else self.max_rows)
        except CfdbError:
            raise
        except Exception as exc:
            if _is_interrupt(exc):
                raise KeyboardInterrupt from exc
            wrapped = _wrap_fetch_error(exc, statement.script, statement.start, statement.end)
            if wrapped is None:
                raise
            raise wrapped from exc
        if self.mode == "line" and tail:
            head, tail = [*head, *tail][: self.max_rows], []
        self.options.max_width = self.width
        text = modes.render(
            self.mode, columns, types, head, tail=tail, total=total, options=self.options
        )
        if text is not None:
            self.emit(text)

    def _ok(self, count: int | None = None) -> None:
        if count is not None:
            self.total_changes += count
        if self.changes and count is not None:
            self.print(f"changes: {count:>3}   total_changes: {self.total_changes}")
        elif self.interactive:
            self.note("OK" if count is None else f"OK, {fmt.row_count(count)}")

    def release_lock(self) -> None:
        """In sharing mode, capture the session's state and release the file, so other
        processes can open it until the next statement (the state is re-applied then).

        The file stays locked while the session holds state that cannot be carried over (an
        open transaction, an attached in-memory database); :attr:`kept_reason` says which.
        """
        self.kept_reason = None
        if not self.share or self.db.session.store.path is None:
            return
        if self.in_transaction:
            self.kept_reason = "a transaction is open"
            return
        if not self.db.session.store.is_open:
            return
        try:
            assert self.state is not None
            snapshot, reason = self.state.capture()
            if snapshot is None:
                self.kept_reason = reason
                return
            self.db.release()
            self.state.pending = None if snapshot.empty() else snapshot
        except Exception as exc:
            self.kept_reason = "its state could not be saved"
            self.show_error(exc)

    def report_restore_problems(self) -> None:
        """Say what could not be re-applied after the file was reopened (rare)."""
        if self.state is not None and self.state.problems:
            for problem in self.state.problems:
                self.fail(f"not restored after reopening the file: {problem}")
            self.state.problems = []

    # -- dot-commands ----------------------------------------------------------------------
    def run_dot(self, line: str) -> bool:
        """Run one dot-command line; False if it failed."""
        from cfdb.shell.commands import run_command

        try:
            with cancel_on_sigint(lambda: self.db.interrupt()):  # .import, .dump, .shell
                return run_command(self, line)
        except KeyboardInterrupt:
            return self.fail("interrupted")
        except Exception as exc:
            self.show_error(exc)
            return False

    # -- the interactive loop --------------------------------------------------------------
    def banner(self) -> str:
        from cfdb import __version__

        where = self.name or "an in-memory database"
        lines = [
            f"cfdb {__version__}, connected to {where}.",
            "Statements end with ';'. Enter .help for help, .quit or Ctrl-D to leave.",
        ]
        if self.share and self.name:
            lines.append("The file is shared between statements (.share off keeps it locked).")
        return "\n".join(lines)

    def repl(self, *, history: str | None = None, plain: bool = False) -> int:
        """Read, run and print until ``.quit`` or end of input; returns the exit status.

        Args:
            history: the history file (None: none kept).
            plain: read lines with ``input()`` instead of prompt_toolkit (dumb terminals).
        """
        from cfdb.shell.complete import Names

        self.interactive = True
        self.print(self.banner(), style="dim")
        self.completion = Names(self)
        self.completion.load_keywords()
        self.completion.refresh()
        if self.state is not None and self.db.session.store.is_open:
            self.state.baseline()
        self.release_lock()
        read = _plain_reader(self) if plain else self._toolkit_reader(history)
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
                if not stripped.startswith(".") or stripped.startswith((".read", ".open")):
                    self.completion.refresh()
            except KeyboardInterrupt:
                self.fail("interrupted")
            finally:
                self.report_restore_problems()
                self.release_lock()
        self.end_redirect()
        return self.exit_code

    def _toolkit_reader(self, history: str | None) -> Callable[[], str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        from cfdb.shell.complete import make_completer, make_lexer, toolbar

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
            lexer=make_lexer(self),
            multiline=True,
            key_bindings=bindings,
            prompt_continuation=lambda width, line, soft: self.continuation.rjust(width),
            complete_while_typing=False,
            enable_open_in_editor=False,
            bottom_toolbar=lambda: toolbar(self),
        )
        return lambda: session.prompt(self.prompt)


def _plain_reader(shell: Shell) -> Callable[[], str]:
    """Read one input with ``input()``: a dot-command line, or lines up to a complete one."""

    def read() -> str:
        lines: list[str] = []
        while True:
            try:
                line = input(shell.continuation if lines else shell.prompt)
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
