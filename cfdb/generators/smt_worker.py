"""A solver process with a hard time limit: the exact generator's jobs run in a child process
that the parent kills at the deadline, keeping the best CFs reported so far.

z3's own timeout is not reliable (one solve ran 186 s past a 10 s limit), so the limit is
enforced at process level. The child is forked from the generator after the model's encoding is
built, so it inherits the encoding without rebuilding it; it then serves jobs one after another
(push/pop per job) and streams every improved CF back through a pipe. At the deadline the parent
kills it and forks a fresh one for the next job, again from the pristine encoding. Where
``fork`` is unavailable, the child is spawned and rebuilds the encoding itself.

When no child can be started (inside a daemonic process, e.g. a ``multiprocessing.Pool``
worker), jobs run in the calling process with z3's timeout set to the time left, as a
best effort.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from cfdb.generators.smt_encode import Encoding
from cfdb.generators.smt_model import CompiledModel
from cfdb.generators.smt_search import Found, Job, OutOfTime, Search
from cfdb.types import FeatureSpec

#: Seconds kept before the deadline for killing the child and checking its answers.
SAFETY = 0.05


@dataclass
class Result:
    """What one job produced.

    Attributes:
        found: the best version of each CF, by index.
        status: ``done``, ``infeasible``, ``timeout`` or ``error``.
        error: the error text when ``status`` is ``error``.
        seconds: wall time.
    """

    found: dict[int, Found] = field(default_factory=dict)
    status: str = "done"
    error: str | None = None
    seconds: float = 0.0


def _serve(conn: Any, encoding: Encoding | None, rebuild: tuple[Any, Any] | None) -> None:
    enc = encoding if encoding is not None else Encoding(*rebuild)  # type: ignore[misc]
    search = Search(enc)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            status = search.run(job, lambda found: conn.send(("found", found)))
            conn.send(("done", status))
        except Exception as exc:  # reported to the parent, which records the task as failed
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _stop(proc: Any, conn: Any) -> None:
    try:
        conn.close()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)


class Worker:
    """Runs jobs for one encoding in a child process (see the module docstring).

    Args:
        encoding: the built encoding (inherited by forked children; used in-process as the
            fallback).
        compiled: the compiled model, to rebuild the encoding in a spawned child.
        features: the features, likewise.
    """

    def __init__(
        self, encoding: Encoding, compiled: CompiledModel, features: list[FeatureSpec]
    ) -> None:
        self.encoding = encoding
        self.rebuild = (compiled, features)
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0
        self._finalizer: Any = None

    def _start(self) -> bool:
        if mp.current_process().daemon:
            return False
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        forked = ctx.get_start_method() == "fork"
        parent, child = ctx.Pipe()
        args = (child, self.encoding, None) if forked else (child, None, self.rebuild)
        proc = ctx.Process(target=_serve, args=args, daemon=True, name="cfdb-smt")
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        self._finalizer = weakref.finalize(self, _stop, proc, parent)
        return True

    def stop(self) -> None:
        """Stop the child process, if any."""
        if self._finalizer is not None:
            self._finalizer()
        self.proc = self.conn = self._finalizer = None

    def run(self, job: Job, deadline: float | None, in_process: bool = False) -> Result:
        """Run ``job`` until done or ``deadline`` (a ``time.monotonic()`` value).

        Args:
            in_process: solve in this process (z3's timeout only) instead of a child.
        """
        started = time.monotonic()
        if deadline is not None and deadline - started <= SAFETY:
            return Result(status="timeout", seconds=0.0)
        if self.proc is not None and not self.proc.is_alive():
            self.stop()  # it died (killed from outside, out of memory): replace it
            self.restarts += 1
        if in_process or (self.proc is None and not self._start()):
            return self._run_here(job, deadline, started)
        result = Result()
        self.conn.send(job)
        while True:
            wait = None if deadline is None else deadline - SAFETY - time.monotonic()
            if wait is not None and (wait <= 0 or not self.conn.poll(wait)):
                self.stop()
                self.restarts += 1
                result.status = "timeout"
                break
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                self.stop()
                result.status, result.error = "error", "the solver process died"
                break
            if kind == "found":
                result.found[payload.index] = payload
            elif kind == "done":
                result.status = payload
                break
            elif kind == "error":
                result.status, result.error = "error", payload
                break
        result.seconds = time.monotonic() - started
        return result

    def _run_here(self, job: Job, deadline: float | None, started: float) -> Result:
        result = Result()
        search = Search(self.encoding)
        search.deadline = None if deadline is None else deadline - SAFETY
        try:
            result.status = search.run(job, lambda f: result.found.__setitem__(f.index, f))
        except OutOfTime:
            result.status = "timeout"
        except Exception as exc:  # as the child reports it
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            self.encoding.solver.set("timeout", 4294967295)
        result.seconds = time.monotonic() - started
        return result
