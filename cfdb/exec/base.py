"""The executor contract and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from cfdb.errors import CfdbError
from cfdb.exec.options import check_n_jobs
from cfdb.registry import Registry

T = TypeVar("T")
R = TypeVar("R")

#: ``fn(shared, chunk) -> results``: what an executor runs on each chunk of tasks.
ChunkFn = Callable[[Any, Sequence[Any]], list[Any]]
#: ``describe(task) -> "cell 12 of grid g"``: how errors name a task.
Describe = Callable[[Any], str]
#: ``lost(task, reason) -> result``: what stands in for a task whose worker died twice.
Lost = Callable[[Any, str], Any]


class Executor(ABC):
    """Runs ``fn(shared, chunk)`` over chunks of tasks and yields results as chunks finish.

    Args:
        n_jobs: number of parallel workers (``-1``: one per available core).
        address: where the executor's cluster is (Ray), if any.
    """

    name = "executor"

    def __init__(self, n_jobs: int = 1, address: str | None = None) -> None:
        self.n_jobs = check_n_jobs(n_jobs)
        self.address = address

    @abstractmethod
    def map_chunks(
        self,
        fn: ChunkFn,
        shared: Any,
        chunks: Sequence[Sequence[Any]],
        *,
        describe: Describe | None = None,
        lost: Lost | None = None,
    ) -> Iterator[list[Any]]:
        """Yield ``fn(shared, chunk)`` for every chunk, in completion order.

        Every executor behaves the same way on failures:

        * an exception raised by ``fn`` ends the run with one
          :class:`~cfdb.errors.CfdbExecutionError` naming the task (``describe``);
        * a worker that dies mid-chunk has the chunk's tasks retried once each (they may then
          come back in smaller lists); ``lost(task, reason)`` stands in for a task that died
          twice (without ``lost`` the run ends with a ``CfdbExecutionError``);
        * closing the iterator early (Ctrl-C) stops the workers; what was yielded is kept.
        """

    def connect(self) -> None:  # noqa: B027  (optional hook: most executors need nothing)
        """Check the executor can run (e.g. reach its cluster) before anything is written."""

    @property
    def workers(self) -> int:
        """The number of chunks that run at once."""
        import os

        return (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs

    @property
    def in_process(self) -> bool:
        """Whether chunks run in the calling process (then each may be committed alone)."""
        return False

    def close(self) -> None:  # noqa: B027  (optional hook: most executors hold nothing)
        """Release what this executor holds (warm process pools outlive it)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_process(
    fn: ChunkFn,
    shared: Any,
    chunks: Sequence[Sequence[Any]],
    describe: Describe | None = None,
) -> Iterator[list[Any]]:
    """The serial loop, with the same error contract as the pools."""
    from cfdb.exec.pool import _name, task_error

    for chunk in chunks:
        try:
            yield fn(shared, chunk)
        except CfdbError:
            raise
        except Exception as exc:
            import traceback

            task = chunk[0] if chunk else None
            if len(chunk) > 1:  # name the failing task, as the workers do
                for t in chunk:
                    try:
                        fn(shared, [t])
                    except Exception:
                        task = t
                        break
            trace = "".join(traceback.format_exception(exc))
            err = task_error(_name(describe, task), type(exc).__name__, str(exc), trace, exc)
            raise err from err.__cause__  # the original only under CFDB_DEBUG


#: Executors by name.
EXECUTORS: Registry[type[Executor]] = Registry("executor", "cfdb.executors")


def chunked(items: Sequence[T], workers: int, largest: int = 8) -> list[list[T]]:
    """Split ``items`` in order into chunks: at least ~4 per worker, at most ``largest`` each.

    Small chunks keep commits frequent (an interruption loses little) and load balanced;
    chunks of several tasks amortize the cost of shipping work to a worker.
    """
    if not items:
        return []
    size = max(1, min(largest, len(items) // max(1, 4 * workers)))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def make_executor(name: str | None = None, n_jobs: int = 1, address: str | None = None) -> Executor:
    """An executor by registry name (default ``local``)."""
    return EXECUTORS.get(name or "local")(n_jobs=n_jobs, address=address)
