"""Executors: where heavy, embarrassingly parallel work runs (grid cells, CF generation,
VALUATE's validation chunks).

An executor maps a function over chunks of tasks, with one large shared value shipped to each
worker once, and yields results as they finish. It never touches the database: the engine
writes what comes back (DuckDB stays the single writer). Executors register in
:data:`EXECUTORS` (entry-point group ``cfdb.executors``):

* ``local`` (default): in the calling process when ``n_jobs = 1``, else ``n_jobs`` warm
  worker processes (``-1``: one per core);
* ``process``: always worker processes; workers are ``python -m cfdb.exec.worker``
  subprocesses that never import the user's script (:mod:`cfdb.exec.pool`);
* ``ray``: Ray tasks on a local or remote cluster (``address``; the optional extra
  ``cfdb[ray]``).

Statements take the same options everywhere (:mod:`cfdb.exec.options`).
"""

from __future__ import annotations

from cfdb.exec.base import EXECUTORS, Executor, chunked, make_executor
from cfdb.exec.local import LocalExecutor, ProcessExecutor
from cfdb.exec.options import EXEC_OPTIONS, ExecOptions, exec_options, located_exec_options
from cfdb.exec.pool import shutdown
from cfdb.exec.progress import Progress
from cfdb.exec.ray_executor import RayExecutor

__all__ = [
    "EXECUTORS",
    "EXEC_OPTIONS",
    "ExecOptions",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "Progress",
    "RayExecutor",
    "chunked",
    "exec_options",
    "located_exec_options",
    "make_executor",
    "shutdown",
]
