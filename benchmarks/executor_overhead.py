"""Per-task overhead of each executor, against running the same tasks in-process.

Two workloads, each on every executor, on the same cores:

* ``empty``: tasks that return at once, one task per chunk: what remains is the executor's
  own cost per task (send the chunk, run, send the result back);
* ``cells``: ``MATERIALIZE GRID`` of 64 logistic-regression cells (commits included).

Executors: ``in-process`` (``local``, ``n_jobs = 1``), ``process`` (two warm worker processes,
``python -m cfdb.exec.worker``) and ``ray`` (two CPUs of a Ray instance started by this
process). Each parallel executor is warmed first (workers started, the shared value shipped):
its start-up is reported on its own. Ratios are against in-process, measured in the same run.

    python benchmarks/executor_overhead.py [--tasks 300] [--no-ray]
"""

from __future__ import annotations

import argparse
import time

import cfdb
from cfdb.exec import make_executor


def empty(shared: object, chunk: list[int]) -> list[int]:
    return list(chunk)


GRID = (
    "CREATE GRID {name} TRAIN ON (SELECT id, x1, x2, y, grp FROM t WHERE id < 200) UNITS BY grp "
    "SUBSETS EXHAUSTIVE EVALUATE ON (SELECT id, x1, x2, y FROM t WHERE id >= 200) "
    "MODEL logistic_regression METRIC accuracy WITH (label = 'y', key = 'id', lazy = false)"
)


def tasks_per_second(executor_name: str, tasks: int) -> tuple[float, float]:
    """(seconds to start and warm, seconds per task)."""
    executor = make_executor(executor_name, 1 if executor_name == "local" else 2)
    chunks = [[i] for i in range(tasks)]
    started = time.perf_counter()
    list(executor.map_chunks(empty, None, chunks[:4]))
    warm = time.perf_counter() - started
    started = time.perf_counter()
    done = sum(len(c) for c in executor.map_chunks(empty, None, chunks))
    assert done == tasks
    return warm, (time.perf_counter() - started) / tasks


def grid_seconds(executor_name: str, n_jobs: int, index: int) -> float:
    db = cfdb.connect()
    db.sql(
        "CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.0 AS x1, ((i * 13) % 11) * 1.0 AS x2, "
        "CASE WHEN (i * 7) % 5 < 2 THEN 'a' ELSE 'b' END AS y, i % 6 AS grp FROM range(300) r(i)"
    )
    db.sql(GRID.format(name=f"g{index}"))
    started = time.perf_counter()
    db.sql(f"MATERIALIZE GRID g{index} WITH (executor = '{executor_name}', n_jobs = {n_jobs})")
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    names = [("in-process", "local", 1), ("process", "process", 2)]
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        names.append(("ray", "ray", 2))
    rows = []
    for label, name, n_jobs in names:
        warm, per_task = tasks_per_second(name, args.tasks)
        grid_seconds(name, n_jobs, 0)  # warm: workers hold the previous grid's code
        cells = grid_seconds(name, n_jobs, 1)
        rows.append((label, warm, per_task, cells))
    base_task, base_cells = rows[0][2], rows[0][3]
    print(f"{args.tasks} empty tasks (one per chunk); 64 grid cells; 2 workers where parallel")
    print(
        f"{'executor':<12}{'start (s)':>10}{'ms/task':>10}{'x in-proc':>11}"
        f"{'64 cells (s)':>14}{'x in-proc':>11}"
    )
    for label, warm, per_task, cells in rows:
        print(
            f"{label:<12}{warm:>10.2f}{per_task * 1e3:>10.3f}{per_task / base_task:>11.0f}"
            f"{cells:>14.2f}{cells / base_cells:>11.2f}"
        )


if __name__ == "__main__":
    main()
