"""The local executor: the calling process, or a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from cfdb.errors import CfdbExecutionError
from cfdb.exec.base import EXECUTORS, ChunkFn, Executor

_WORKER_STATE: dict[str, Any] = {}


def _init_worker(fn: ChunkFn, shared: bytes) -> None:
    # Runs once per worker: the shared value crosses the process boundary once, not per task
    # (pickled once by the parent, not once per worker).
    _WORKER_STATE["fn"] = fn
    _WORKER_STATE["shared"] = pickle.loads(shared)


def _run_chunk(chunk: Sequence[Any]) -> list[Any]:
    return _WORKER_STATE["fn"](_WORKER_STATE["shared"], chunk)


class LocalExecutor(Executor):
    """``n_jobs = 1``: run chunks one by one in this process; else a process pool.

    Workers are started with ``forkserver`` (never ``fork``: the parent holds DuckDB's
    threads), preloading cfdb, the calling script and the module of the function they run,
    so each starts warm. As with any Python process pool, a script must guard its entry
    point with ``if __name__ == "__main__":``. The pool lives until :meth:`close`.
    """

    name = "local"
    _pool: ProcessPoolExecutor | None = None
    _pool_key: tuple[int, int] | None = None

    def _pool_for(self, fn: ChunkFn, shared: Any) -> ProcessPoolExecutor:
        # The pool lives until close(), so successive calls with the same function and shared
        # value (e.g. the waves of a truncated permutation grid) reuse warm workers.
        key = (id(fn), id(shared))
        if self._pool is None or self._pool_key != key:
            self.close()
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["__main__", "cfdb", fn.__module__])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(fn, pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)),
            )
            self._pool_key = key
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pool_key = None

    def map_chunks(
        self, fn: ChunkFn, shared: Any, chunks: Sequence[Sequence[Any]]
    ) -> Iterator[list[Any]]:
        if self.workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                yield fn(shared, chunk)
            return
        pool = self._pool_for(fn, shared)
        pending: set[Future[list[Any]]] = set()
        queue = list(chunks)
        try:
            # Keep a bounded number of chunks in flight, so cancelling is quick.
            while queue or pending:
                while queue and len(pending) < 2 * self.workers:
                    pending.add(pool.submit(_run_chunk, queue.pop(0)))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        self.close()
                        raise CfdbExecutionError(
                            f"a worker process of the local executor died: {exc}",
                            hint="a script that uses n_jobs > 1 must start from "
                            "`if __name__ == '__main__':` (worker processes import it)",
                        ) from exc
                    yield result
        finally:
            for future in pending:
                future.cancel()


EXECUTORS.register("local", LocalExecutor)
