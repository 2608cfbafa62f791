"""The Ray executor: chunks of work as Ray tasks, on a local or remote Ray cluster.

Ray is optional (``pip install 'cfdb[ray]'``). ``address`` is passed to ``ray.init``: ``None``
joins the Ray instance this process already started, or starts a local one; ``"auto"`` joins
a running local cluster; ``"ray://host:10001"`` a remote one. The shared value is put in
Ray's object store once; each task receives its reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cfdb.errors import CfdbPluginError
from cfdb.exec.base import EXECUTORS, ChunkFn, Executor


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CfdbPluginError(
            "the ray executor needs Ray", hint="pip install 'cfdb[ray]'"
        ) from None
    return ray


_SHARED: dict[str, Any] = {}


def _run_chunk(fn: ChunkFn, boxed: list[Any], chunk: Sequence[Any]) -> list[Any]:
    # The shared value arrives as a reference inside a list, so Ray does not resolve (and
    # deserialize) it for every task: each worker process fetches it once and keeps it.
    ref = boxed[0]
    key = ref.hex()
    if key not in _SHARED:
        import ray

        _SHARED.clear()  # one grid at a time per worker
        _SHARED[key] = ray.get(ref)
    return fn(_SHARED[key], chunk)


class RayExecutor(Executor):
    """Ray tasks, at most ``n_jobs`` chunks in flight (``-1``: the cluster's CPU count)."""

    name = "ray"

    def _connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        return ray

    @property
    def workers(self) -> int:
        if self.n_jobs != -1:
            return self.n_jobs
        ray = self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map_chunks(
        self, fn: ChunkFn, shared: Any, chunks: Sequence[Sequence[Any]]
    ) -> Iterator[list[Any]]:
        if not chunks:
            return
        ray = self._connect()
        remote = ray.remote(num_cpus=1, max_retries=2)(_run_chunk)
        shared_ref = ray.put(shared)
        fn_ref = ray.put(fn)
        queue = list(chunks)
        pending: list[Any] = []
        try:
            while queue or pending:
                while queue and len(pending) < 2 * self.workers:
                    pending.append(remote.remote(fn_ref, [shared_ref], queue.pop(0)))
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


EXECUTORS.register("ray", RayExecutor)
