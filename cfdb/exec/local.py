"""The local executors: the calling process, or warm worker processes on this machine.

``local`` runs in the calling process when ``n_jobs = 1`` and in ``n_jobs`` worker processes
otherwise; ``process`` always uses worker processes (also with ``n_jobs = 1``: a model that
crashes the interpreter then costs one cell, not the session). Workers are started as
``python -m cfdb.exec.worker`` (:mod:`cfdb.exec.pool`): they never import the user's script,
so no ``if __name__ == "__main__":`` guard is needed, and they stay warm between statements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cfdb.exec.base import EXECUTORS, ChunkFn, Describe, Executor, Lost, run_in_process
from cfdb.exec.pool import run_pool


class ProcessExecutor(Executor):
    """``n_jobs`` worker processes (``-1``: one per core), warm across statements."""

    name = "process"

    def map_chunks(
        self,
        fn: ChunkFn,
        shared: Any,
        chunks: Sequence[Sequence[Any]],
        *,
        describe: Describe | None = None,
        lost: Lost | None = None,
    ) -> Iterator[list[Any]]:
        return run_pool(self.workers, fn, shared, chunks, describe=describe, lost=lost)


class LocalExecutor(ProcessExecutor):
    """``n_jobs = 1``: chunks run one by one in this process; else as :class:`ProcessExecutor`."""

    name = "local"

    @property
    def in_process(self) -> bool:
        return self.workers <= 1

    def map_chunks(
        self,
        fn: ChunkFn,
        shared: Any,
        chunks: Sequence[Sequence[Any]],
        *,
        describe: Describe | None = None,
        lost: Lost | None = None,
    ) -> Iterator[list[Any]]:
        if self.in_process or len(chunks) <= 1:
            return run_in_process(fn, shared, chunks, describe)
        return super().map_chunks(fn, shared, chunks, describe=describe, lost=lost)


EXECUTORS.register("local", LocalExecutor)
EXECUTORS.register("process", ProcessExecutor)
