"""The session: runs scripts statement by statement, one transaction per cfdb statement.

Plain SQL statements go to DuckDB as the user's text. cfdb statements are dispatched by node
type name to a handler (``handlers.HANDLERS``), inside a transaction, so a failing statement
leaves the database as it was. Every error is a CfdbError located in the script.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cfdb import options
from cfdb.engine.errors import stray_error
from cfdb.engine.handlers import HANDLERS
from cfdb.errors import CfdbError, CfdbExecutionError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.exec.progress import Progress
from cfdb.lang import Statement, split
from cfdb.store import migrations
from cfdb.store.connection import Relation, Store
from cfdb.store.relation import UserRelation


@contextlib.contextmanager
def _progress_bar(description: str, total: int, unit: str) -> Iterator[Any]:
    started = time.perf_counter()
    with Progress(description, total, unit=unit) as bar:
        yield lambda n: bar.advance(n, time.perf_counter() - started)


def _fill_grids(session: Session, statement: Statement) -> None:
    # A cheap test before importing the grid machinery: most statements mention no grid.
    store = session.store
    if store.read_only or not store.table_exists("Grids"):
        return
    text = statement.text.lower()
    if not any(r[0].lower() in text for r in store.execute("SELECT Name FROM Grids")):
        return
    from cfdb.engine.handlers.grid import fill_referenced_grids

    fill_referenced_grids(session, statement)


@contextlib.contextmanager
def _interruptible(session: Any, progress: Any) -> Iterator[Any]:
    with progress as advance:

        def checked(n: int) -> None:
            advance(n)
            session._check_interrupt()

        yield checked


@dataclass
class Result:
    """What one statement produced: a relation (or ``None``) for the statement."""

    statement: Statement
    relation: Relation | None


class Session:
    """A cfdb database opened for statements.

    Args:
        path: database file, or ``None`` for in-memory.
        read_only: open read-only (statements that write fail; no migrations).
        allow_pickle: permit loading models stored as pickles (runs code from the file).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        read_only: bool = False,
        allow_pickle: bool = False,
        executor: str | None = None,
        address: str | None = None,
        n_jobs: int | None = None,
        store: Store | None = None,
    ) -> None:
        #: ``store``: an open store to run on (e.g. a cursor's, inside a SQL function).
        self.store = store if store is not None else Store(path, read_only=read_only)
        self.allow_pickle = allow_pickle
        #: Default executor for grid cells (``local`` or ``ray``), its cluster and workers.
        self.executor = executor
        self.address = address
        self.n_jobs = n_jobs
        self.seed = 0
        self.last_sql: str | None = None
        #: Callables ``hook(session, statement)`` run before each plain SQL statement, e.g. to
        #: fill what the statement is about to read (lazily materialized grid cells).
        self.before_plain_sql: list[Any] = []
        #: ``factory(description, total)`` -> a context manager yielding ``advance(n)``; the
        #: shell sets one that draws a progress bar. ``None``: no progress display.
        self.progress_factory: Any = None
        #: A statement block in progress (e.g. an open ``BEGIN BATCH``): it decides which
        #: statements may come before it is closed.
        self.open_block: Any = None
        self._interrupted = threading.Event()
        self.before_plain_sql.append(_fill_grids)  # lazily filled grid cells
        self.store.on_open(self._prepare)
        from cfdb.engine.functions import attach

        attach(self)  # predict(), cf_distance()... in every query (docs/sql_functions.md)
        self.store.open()  # open now: a bad file fails here, not on the first statement

    def _prepare(self, store: Store) -> None:
        if store.read_only:
            migrations.check_version(store)
            return
        migrations.migrate(store)

    def execute(self, script: str) -> list[Result]:
        """Run every statement of ``script``; stops at the first error (earlier ones stay)."""
        self.last_sql = script
        results = []
        block, queued = self.open_block, len(getattr(self.open_block, "items", ()))
        try:
            statements = split(script)
            for k, statement in enumerate(statements):
                relation = self.run_statement(statement)
                if relation is not None and k < len(statements) - 1 and statement.node is None:
                    # DuckDB relations are lazy: read this result now, before later statements
                    # change what it would show.
                    relation = self.store.materialize(relation, statement)
                results.append(Result(statement, relation))
        except BaseException:
            # A failed script leaves no batch of its own open and queues nothing: a batch
            # opened by an earlier call stays open with what was queued before.
            self.open_block = block
            if block is not None:
                del block.items[queued:]
            raise
        return results

    def sql(self, script: str, params: Any = None) -> Relation | None:
        """Run ``script``; the last statement's relation (``None`` if it returns nothing).

        ``params`` binds ``?`` placeholders of a single plain SQL statement.
        """
        if params is not None:
            statements = split(script)
            if len(statements) != 1 or statements[0].node is not None:
                raise CfdbUnsupportedError("params bind a single plain SQL statement only")
            (statement,) = statements
            self.last_sql = script
            rel = self.store.query(statement.text, params)
            return None if rel is None else UserRelation(rel, statement.text, 0, script)
        results = self.execute(script)
        if not results or results[-1].relation is None:
            return None
        last = results[-1]
        # Errors found while the user fetches the rows are CfdbErrors too.
        return UserRelation(last.relation, last.statement.text, last.statement.start, script)

    def run_statement(self, statement: Statement) -> Relation | None:
        self._interrupted.clear()  # an interrupt asked for between statements is stale
        if statement.node is None and self.open_block is not None:
            raise CfdbSyntaxError(
                "only FOREACH statements may stand between BEGIN BATCH and END BATCH"
            ).located(statement.script, statement.start, statement.end)
        if statement.node is None:
            for hook in self.before_plain_sql:
                hook(self, statement)
            return self.store.run_script_text(statement.text, statement.script, statement.start)
        if self.open_block is not None and not self.open_block.accepts(statement):
            raise CfdbSyntaxError(
                "only FOREACH statements may stand between BEGIN BATCH and END BATCH"
            ).located(statement.script, statement.start, statement.end)
        name = type(statement.node).__name__
        handler = HANDLERS.get(name)
        if handler is None:
            raise CfdbUnsupportedError(f"no handler for {name}").located(
                statement.script, statement.start, statement.end
            )
        try:
            options.check(statement.node, statement.script)
            if getattr(handler, "transactional", True):
                with self.store.transaction():
                    out: Any = handler(self, statement.node, statement)
            else:
                out = handler(self, statement.node, statement)
        except CfdbError as err:
            err.located(statement.script, statement.start, statement.end)
            raise
        except Exception as exc:  # the last net: a specific check should have caught it
            raise stray_error(exc, statement) from exc
        if out is None or isinstance(out, Relation):
            return out
        return self.store.from_arrow(out)

    def progress(self, description: str, total: int, unit: str = "predictions") -> Any:
        """A context manager yielding ``advance(n)`` for long work: a progress bar with rate
        and time left on a terminal (``progress_factory`` replaces it)."""
        if total < 2:
            return contextlib.nullcontext(lambda n: self._check_interrupt())
        if self.progress_factory is not None:
            return _interruptible(self, self.progress_factory(description, total))
        return _interruptible(self, _progress_bar(description, total, unit))

    def _check_interrupt(self) -> None:
        # Long Python work (training cells, generating CFs) reports progress between items:
        # an interrupt asked for meanwhile stops it there, as DuckDB stops a query.
        if self._interrupted.is_set():
            self._interrupted.clear()
            raise CfdbExecutionError("the statement was interrupted")

    def interrupt(self) -> None:
        """Stop the running query (call from another thread, e.g. on Ctrl-C); long Python
        work stops at its next progress report."""
        self._interrupted.set()
        self.store.interrupt()

    def release(self) -> None:
        """Let other processes open the file until the next statement."""
        self.store.release()

    def close(self) -> None:
        self.store.close()
