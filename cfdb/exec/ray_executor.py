"""The Ray executor: chunks of work as Ray tasks, on a local or remote Ray cluster.

Ray is optional (``pip install 'cfdb[ray]'``); cfdb must be importable on every node.
``address`` is passed to ``ray.init``: ``None`` joins the Ray instance this process already
started, the cluster in ``RAY_ADDRESS``, or starts a local one; ``"auto"`` joins the running
local cluster; ``"host:6379"`` a cluster's head node; ``"ray://host:10001"`` through Ray
Client. A cluster that cannot be reached is reported within :data:`CONNECT_TIMEOUT` seconds,
before the statement writes anything.

The function and the shared value (a grid's data, a fitted model) are put in Ray's object
store once per run (once for successive runs of one executor with an unchanged value); each
worker process fetches the shared value once and keeps it, and every task only carries its
chunk. Failures follow :class:`~cfdb.exec.base.Executor`: a task
that raises ends the run with one ``CfdbExecutionError``; a chunk whose worker died is
retried task by task once (Ray's own retries are off so the rule is the same as locally).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from cfdb.errors import CfdbExecutionError, CfdbPluginError
from cfdb.exec.base import EXECUTORS, ChunkFn, Describe, Executor, Lost
from cfdb.exec.pool import _name, task_error

#: Seconds to reach a cluster before giving up.
CONNECT_TIMEOUT = 8.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CfdbPluginError(
            "the ray executor needs Ray", hint="pip install 'cfdb[ray]'"
        ) from None
    return ray


_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def _run_chunk(fn: ChunkFn, boxed: list[Any], task_id: int, chunk: list[Any]) -> tuple[Any, ...]:
    # The shared value arrives as a reference inside a list, so Ray does not resolve (and
    # deserialize) it for every task: each worker process fetches it once and keeps it.
    from cfdb.exec.wire import run_task_chunk

    ref = boxed[0]
    key = ref.hex()
    with _SHARED_LOCK:
        if key not in _SHARED:
            import ray

            _SHARED.clear()  # one run's value at a time per worker
            _SHARED[key] = ray.get(ref)
        shared = _SHARED[key]
    return run_task_chunk(fn, shared, task_id, chunk)


def _probe(address: str) -> None:
    """Fail fast when ``host:port`` does not accept connections (ray.init would wait long)."""
    host, port = _host_port(address)
    if not host or not port:
        return
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT / 2):
            pass
    except OSError as exc:
        raise CfdbExecutionError(
            f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}",
            hint="start it with `ray start --head`, or check the address and port",
        ) from None


def _host_port(address: str) -> tuple[str, int | None]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.hostname or "", parts.port


def _local(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        if host in socket.gethostbyname_ex(socket.gethostname())[2]:
            return True
    except OSError:
        pass
    # Ray reports the node's interface address (e.g. 192.0.2.2 for a cluster joined as
    # 127.0.0.1), which the host name may not resolve to: an address this machine can bind
    # is one of its own
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.bind((host, 0))
        return True
    except OSError:
        return False


def _same_cluster(ray: Any, address: str) -> bool:
    """Whether this process's Ray connection is to the cluster at ``address``."""
    try:
        current = ray.get_runtime_context().gcs_address
    except Exception:  # an older Ray without it: keep the connection
        return True
    (h1, p1), (h2, p2) = _host_port(current), _host_port(address)
    try:  # Ray names a local cluster by this node's address, which may not resolve from the
        # host name: it is local too (else every statement would reconnect)
        node = ray.util.get_node_ip_address()
    except Exception:
        node = None
    return p1 == p2 and (h1 == h2 or all(_local(h) or h == node for h in (h1, h2)))


class RayExecutor(Executor):
    """Ray tasks, at most ``n_jobs`` chunks in flight (``-1``: the cluster's CPU count)."""

    name = "ray"

    def connect(self) -> Any:
        explicit = self.address if self.address and self.address != "auto" else None
        if explicit:
            _probe(explicit)  # before importing Ray: an unreachable cluster fails at once
        ray = _ray()
        if ray.is_initialized():
            if explicit is None or _same_cluster(ray, explicit):
                return ray
            ray.shutdown()  # this statement names another cluster
        kwargs: dict[str, Any] = {"log_to_driver": False, "ignore_reinit_error": True}
        if not self.address:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CfdbExecutionError(
                f"cannot connect to the Ray cluster at {self.address or 'default'!r}: {first}",
                hint="start one with `ray start --head`, or pass address = 'host:port'",
            ) from None
        return ray

    @property
    def workers(self) -> int:
        if self.n_jobs != -1:
            return self.n_jobs
        ray = self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _put(self, ray: Any, fn: ChunkFn, shared: Any) -> tuple[Any, Any]:
        """``fn`` and ``shared`` in the object store, put again only when they change: the
        successive runs of one executor (e.g. the waves of a CFQL batch) ship them once."""
        from cfdb.exec.pool import _payload

        # refs belong to one connection: a reconnection (another cluster) puts them again
        key = (_payload(fn, shared)[0], ray.get_runtime_context().get_job_id())
        if getattr(self, "_stored", (None,))[0] != key:
            self._stored = (key, ray.put(fn), ray.put(shared))
        return self._stored[1], self._stored[2]

    def map_chunks(
        self,
        fn: ChunkFn,
        shared: Any,
        chunks: Sequence[Sequence[Any]],
        *,
        describe: Describe | None = None,
        lost: Lost | None = None,
    ) -> Iterator[list[Any]]:
        if not chunks:
            return
        ray = self.connect()
        from ray.exceptions import RayError, TaskCancelledError

        remote = ray.remote(num_cpus=1, max_retries=0)(_run_chunk)
        fn_ref, shared_ref = self._put(ray, fn, shared)
        queue: list[tuple[list[Any], int]] = [(list(c), 1) for c in reversed(chunks)]
        pending: dict[Any, tuple[list[Any], int]] = {}
        try:
            while queue or pending:
                while queue and len(pending) < self.workers:
                    tasks, attempt = queue.pop()
                    ref = remote.remote(fn_ref, [shared_ref], 0, tasks)
                    pending[ref] = (tasks, attempt)
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
                for ref in done:
                    tasks, attempt = pending.pop(ref)
                    try:
                        reply = ray.get(ref)
                    except TaskCancelledError:
                        raise
                    except RayError as exc:  # the worker died (or the node went away)
                        reason = f"the Ray worker died ({type(exc).__name__})"
                        if attempt == 1:
                            queue.extend(([t], 2) for t in reversed(tasks))
                        elif lost is not None:
                            yield [lost(t, reason) for t in tasks]
                        else:
                            raise CfdbExecutionError(
                                f"{_name(describe, tasks[0])} failed twice: {reason}"
                            ) from None
                        continue
                    if reply[0] == "ok":
                        yield reply[2]
                        continue
                    _, _, index, type_name, text, trace = reply
                    task = tasks[index] if 0 <= index < len(tasks) else tasks[0]
                    raise task_error(_name(describe, task), type_name, text, trace)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


EXECUTORS.register("ray", RayExecutor)
