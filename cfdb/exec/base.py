"""The executor contract and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from cfdb.errors import CfdbDataError
from cfdb.registry import Registry

T = TypeVar("T")
R = TypeVar("R")

#: ``fn(shared, chunk) -> results``: what an executor runs on each chunk of tasks.
ChunkFn = Callable[[Any, Sequence[Any]], list[Any]]


class Executor(ABC):
    """Runs ``fn(shared, chunk)`` over chunks of tasks and yields results as chunks finish.

    Args:
        n_jobs: number of parallel workers (``-1``: one per available core).
        address: where the executor's cluster is (Ray), if any.
    """

    name = "executor"

    def __init__(self, n_jobs: int = 1, address: str | None = None) -> None:
        if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
            raise CfdbDataError(f"n_jobs must be a positive integer or -1, not {n_jobs!r}")
        self.n_jobs = n_jobs
        self.address = address

    @abstractmethod
    def map_chunks(
        self, fn: ChunkFn, shared: Any, chunks: Sequence[Sequence[Any]]
    ) -> Iterator[list[Any]]:
        """Yield ``fn(shared, chunk)`` for every chunk, in completion order.

        Closing the iterator early (an interruption) cancels the chunks not yet started.
        """

    @property
    def workers(self) -> int:
        """The number of chunks that run at once."""
        import os

        return (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs

    def close(self) -> None:  # noqa: B027  (optional hook: most executors hold nothing)
        """Release workers (a no-op by default)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
