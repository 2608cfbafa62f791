"""Executors: where grid cells (and other embarrassingly parallel work) run.

An executor maps a function over chunks of tasks, with one large shared value shipped to each
worker once, and yields results as they finish. It never touches the database: the engine
writes what comes back (DuckDB stays the single writer). Executors register in
:data:`EXECUTORS` (entry-point group ``cfdb.executors``):

* ``local`` (default): in the calling process when ``n_jobs = 1``, else a process pool of
  ``n_jobs`` workers (``-1``: one per core) started with ``forkserver``.
* ``ray``: Ray tasks on a local or remote cluster (``address``; the optional extra
  ``cfdb[ray]``).
"""

from __future__ import annotations

from cfdb.exec.base import EXECUTORS, Executor, chunked, make_executor
from cfdb.exec.local import LocalExecutor
from cfdb.exec.progress import Progress
from cfdb.exec.ray_executor import RayExecutor

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Progress",
    "RayExecutor",
    "chunked",
    "make_executor",
]
