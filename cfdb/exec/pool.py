"""Warm worker processes (``python -m cfdb.exec.worker``) and the loop that feeds them.

Workers are plain subprocesses started from the interpreter running cfdb, never forked and
never re-importing the user's ``__main__`` (see :mod:`cfdb.exec.worker`). They are kept
between statements: one process-wide set of idle workers, checked out by a run and given back
when it ends. A worker holds one ``(fn, shared)`` state (a grid's data, a fitted generator),
sent once per worker and kept while successive runs use the same value.

Failure handling, shared by every caller:

* a worker that dies mid-task (killed, out of memory, a crash in native code) is replaced and
  each task of its chunk is retried once on its own; a task whose retry dies too is handed to
  the caller's ``lost(task, reason)`` (e.g. recorded as a failed cell);
* an exception in ``fn`` becomes one :class:`~cfdb.errors.CfdbExecutionError` naming the task
  (``describe``); the remote traceback is kept on ``error.remote_traceback`` and chained when
  ``CFDB_DEBUG`` is set;
* Ctrl-C (or closing the result iterator early) kills the busy workers; results already
  yielded stay with the caller, nothing is yielded twice.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfdb.errors import CfdbExecutionError
from cfdb.exec.wire import read_frame, write_frame

#: Seconds a new worker may take to start (import cfdb) before the run gives up.
START_TIMEOUT = 60.0


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (chained under ``CFDB_DEBUG``)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


def debug_enabled() -> bool:
    """Whether worker tracebacks are chained to errors (``CFDB_DEBUG=1``, or ``--debug``)."""
    return os.environ.get("CFDB_DEBUG", "") not in ("", "0")


def task_error(
    what: str, type_name: str, message: str, trace: str, cause: BaseException | None = None
) -> CfdbExecutionError:
    """The one-line error for a task that raised; the trace is kept and chained on debug."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    err = CfdbExecutionError(
        f"{what} failed: {type_name}: {first}" if first else f"{what} failed: {type_name}",
        hint=None if debug_enabled() else "set CFDB_DEBUG=1 (or use --debug) for the traceback",
    )
    err.remote_traceback = trace  # type: ignore[attr-defined]
    if debug_enabled():
        err.__cause__ = cause if cause is not None else RemoteTraceback(trace)
    else:
        err.__suppress_context__ = True
    return err


def _name(describe: Callable[[Any], str] | None, task: Any) -> str:
    if describe is None:
        return f"task {task!r}"[:80]
    try:
        return describe(task)
    except Exception:  # a naming bug must not hide the real failure
        return "a task"


class Worker:
    """One ``python -m cfdb.exec.worker`` process and the thread that reads its replies."""

    def __init__(self, inbox: queue.Queue[tuple[Worker, Any]]) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cfdb.exec.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the parent only
        )
        self.key: Any = None
        self.task: Any = None
        self.inbox = inbox
        with _LOCK:
            _LIVE.add(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.send(("hello", [p for p in sys.path if p]))

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            try:
                message = read_frame(stream)
            except Exception as exc:  # a corrupt frame: treat the worker as lost
                message = None
                self.corrupt = f"{type(exc).__name__}: {exc}"
            self.inbox.put((self, message))
            if message is None:
                return

    def send(self, message: Any, *, dumps: Any = None) -> bool:
        """Send a message; ``False`` if the worker is gone."""
        try:
            assert self.proc.stdin is not None
            write_frame(self.proc.stdin, message, dumps=dumps)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def death(self) -> str:
        """Why the worker ended, for the failed task's record."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the worker process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the worker process was killed ({name})"
        return f"the worker process exited with code {code}"

    def kill(self) -> None:
        with _LOCK:
            _LIVE.discard(self)
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.send(("stop",))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


@dataclass
class _Job:
    id: int
    tasks: list[Any]
    attempt: int = 1
    worker: Worker | None = field(default=None, repr=False)


_IDLE: list[Worker] = []
_LIVE: set[Worker] = set()
_LOCK = threading.Lock()
_IDS = itertools.count(1)


def _checkout(n: int, inbox: queue.Queue[tuple[Worker, Any]]) -> list[Worker]:
    """``n`` workers for one run: warm idle ones first, new ones for the rest."""
    with _LOCK:
        warm = [w for w in _IDLE if w.alive()]
        _IDLE.clear()
        mine, spare = warm[:n], warm[n:]
        _IDLE.extend(spare)
    for w in mine:
        w.inbox = inbox
    while len(mine) < n:
        mine.append(Worker(inbox))
    return mine


def _checkin(workers: Sequence[Worker]) -> None:
    with _LOCK:
        _IDLE.extend(w for w in workers if w.alive())


def shutdown() -> None:
    """Stop every idle worker (at exit, or to free memory)."""
    with _LOCK:
        idle = list(_IDLE)
        _IDLE.clear()
    for w in idle:
        w.stop()


atexit.register(shutdown)


def idle_workers() -> list[int]:
    """Process ids of the warm idle workers."""
    with _LOCK:
        return [w.proc.pid for w in _IDLE if w.alive()]


def worker_pids() -> list[int]:
    """Process ids of every worker this process started and has not stopped."""
    with _LOCK:
        return sorted(w.proc.pid for w in _LIVE if w.alive())


def _payload(fn: Any, shared: Any) -> tuple[str, bytes]:
    import cloudpickle

    # by value for what lives in __main__ (workers never import it), by reference otherwise
    payload = cloudpickle.dumps((fn, shared), protocol=5)
    return hashlib.blake2b(payload, digest_size=16).hexdigest(), payload


def _next(inbox: queue.Queue[tuple[Worker, Any]], waiting_for_start: bool) -> tuple[Worker, Any]:
    # Short waits in a loop: a Ctrl-C is seen promptly however long a task runs.
    waited = 0.0
    while True:
        try:
            return inbox.get(timeout=0.25)
        except queue.Empty:
            waited += 0.25
            if waiting_for_start and waited > START_TIMEOUT:
                raise CfdbExecutionError(
                    f"no worker process answered within {START_TIMEOUT:.0f} s"
                ) from None


def run_pool(
    n_workers: int,
    fn: Callable[[Any, Sequence[Any]], list[Any]],
    shared: Any,
    chunks: Sequence[Sequence[Any]],
    *,
    describe: Callable[[Any], str] | None = None,
    lost: Callable[[Any, str], Any] | None = None,
) -> Iterator[list[Any]]:
    """Yield ``fn(shared, chunk)`` for each chunk from ``n_workers`` processes, as they finish.

    A chunk whose worker died comes back as several smaller lists (its tasks, retried one by
    one); ``lost`` results stand in for tasks that died twice.
    """
    if not chunks:
        return
    key, payload = _payload(fn, shared)
    inbox: queue.Queue[tuple[Worker, Any]] = queue.Queue()
    workers = _checkout(min(n_workers, len(chunks)), inbox)
    jobs = [_Job(next(_IDS), list(c)) for c in chunks]
    jobs.reverse()  # pop() from the end keeps the chunks' order
    busy: dict[int, _Job] = {}
    free = list(workers)
    ready: set[Worker] = set()
    clean = False
    try:
        while jobs or busy:
            while jobs and free:
                worker = free.pop()
                job = jobs.pop()
                if worker.key != key:
                    worker.send(("state", key, payload))
                    worker.key = key
                job.worker = worker
                worker.task = job.id
                busy[job.id] = job
                worker.send(("task", job.id, key, job.tasks))
            if not free and not busy:
                raise CfdbExecutionError("the worker processes could not be started")
            worker, message = _next(inbox, waiting_for_start=not ready)
            if message is not None and message[0] == "ready":
                ready.add(worker)
                continue
            ready.add(worker)
            if message is None:  # the worker died
                job = busy.pop(worker.task, None) if worker.task is not None else None
                reason = getattr(worker, "corrupt", None) or worker.death()
                worker.kill()
                workers.remove(worker)
                if worker in free:
                    free.remove(worker)
                if job is None:
                    continue
                fresh = Worker(inbox)
                workers.append(fresh)
                free.append(fresh)
                if job.attempt == 1:  # retry each task of the chunk once, on its own
                    jobs.extend(_Job(next(_IDS), [t], 2) for t in reversed(job.tasks))
                elif lost is not None:
                    yield [lost(t, reason) for t in job.tasks]
                else:
                    raise CfdbExecutionError(
                        f"{_name(describe, job.tasks[0])} failed twice: {reason}"
                    )
                continue
            job = busy.pop(message[1])
            worker.task = None
            free.append(worker)
            if message[0] == "ok":
                yield message[2]
            else:
                _, _, index, type_name, text, trace = message
                task = job.tasks[index] if 0 <= index < len(job.tasks) else job.tasks[0]
                what = (
                    _name(describe, task)
                    if index >= 0 or len(job.tasks) == 1
                    else (f"one of {len(job.tasks)} tasks from {_name(describe, job.tasks[0])}")
                )
                raise task_error(what, type_name, text, trace)
        clean = True
    finally:
        if clean:
            _checkin(workers)
        else:
            # Interrupted, abandoned or failed: busy workers are killed (they would go on
            # computing work nobody collects); idle ones stay warm.
            for job in busy.values():
                if job.worker is not None:
                    job.worker.kill()
            _checkin([w for w in workers if w.task is None or w.task not in busy])
