"""KNN-Shapley over validation parts: local against Ray on the same cores, and the map
pipeline's time per 1,000 validation rows at a million training rows.

``overhead`` (the default) values the same inputs in this process (the map pipeline on two
threads, fork and join pipelines serially: what ``VALUATE`` runs by default), on two warm
worker processes (``executor = 'process'``) and on a local Ray cluster started the way a user
starts one — ``ray start --head`` and a second ``ray start --address`` node, one CPU each, so
two Ray worker processes on the machine's two cores. It prints the times, their ratios (Ray
against local, and against the same two workers without Ray: Ray's own overhead), how many
validation parts each Ray worker ran, and checks that the values are equal bit for bit. The cluster's start-up and the first run (workers warm up, import cfdb) are timed apart.

``scale`` runs the map pipeline at ``--n`` training rows (default 1,000,000, d = 20) for
``--v`` validation rows in blocks of 1,000, printing the time of every block (linear in V:
constant per block) and the process's peak memory (``ru_maxrss``).

    python benchmarks/valuate_distributed.py overhead [--n 200000 --v 4000] [--repeat 2]
    python benchmarks/valuate_distributed.py scale [--n 1000000 --v 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cfdb.exec import Executor, make_executor
from cfdb.valuation import KnnShapley, Lineage, Problem, knn_map


# -- a local Ray cluster ----------------------------------------------------------------------
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_args(object_store: int) -> list[str]:
    low = _port()
    return [
        f"--node-manager-port={_port()}",
        f"--object-manager-port={_port()}",
        f"--runtime-env-agent-port={_port()}",
        f"--dashboard-agent-listen-port={_port()}",
        f"--dashboard-agent-grpc-port={_port()}",
        f"--metrics-export-port={_port()}",
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 40}",
        "--num-cpus=1",
        f"--object-store-memory={object_store}",
        "--disable-usage-stats",
        "--block",
    ]


@contextlib.contextmanager
def ray_cluster(object_store: int) -> Iterator[str]:
    """``ray start --head`` plus one more node (one CPU each); yields the address.

    Each ``ray start --block`` runs in its own process group, stopped on exit (``ray stop``
    would stop every Ray cluster of the user on the machine).
    """
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="cfv")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
    )
    env.pop("RAY_ADDRESS", None)
    env["RAY_AUTH_MODE"] = "disabled"  # `ray start --head` would turn token auth on (Ray 2.5x)
    port = _port()
    address = f"127.0.0.1:{port}"
    head = [ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={temp}"]
    head += ["--include-dashboard=false", *_node_args(object_store)]
    log = open(Path(temp) / "start.log", "ab")  # noqa: SIM115  (kept open for the processes)
    procs = [subprocess.Popen(head, env=env, stdout=log, stderr=log, start_new_session=True)]
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the Ray head did not start") from None
                time.sleep(0.3)
        node = [ray_bin, "start", f"--address={address}", *_node_args(object_store)]
        procs.append(
            subprocess.Popen(node, env=env, stdout=log, stderr=log, start_new_session=True)
        )
        import ray

        ray.init(address=address, log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the second Ray node did not join")
            time.sleep(0.3)
        yield address
    finally:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


# -- counting what each worker ran --------------------------------------------------------------
def _tagged(fn: Any, shared: Any, chunk: list[Any]) -> list[tuple[str, Any]]:
    who = f"{socket.gethostname()}:{os.getpid()}"
    return [(who, r) for r in fn(shared, chunk)]


class Counting(Executor):
    """Runs on ``inner`` and counts the tasks (validation parts) each worker process ran."""

    name = "counting"

    def __init__(self, inner: Executor) -> None:
        super().__init__(inner.n_jobs, inner.address)
        self.inner = inner
        self.counts: Counter[str] = Counter()

    @property
    def workers(self) -> int:
        return self.inner.workers

    def map_chunks(self, fn: Any, shared: Any, chunks: Any, **kw: Any) -> Iterator[list[Any]]:
        for done in self.inner.map_chunks(functools.partial(_tagged, fn), shared, chunks, **kw):
            self.counts.update(who for who, _ in done)
            yield [r for _, r in done]


# -- workloads --------------------------------------------------------------------------------
def map_problem(n: int, v: int, d: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n, d))
    labels = (train[:, 0] + rng.normal(size=n) > 0).astype(np.int64)
    val = rng.normal(size=(v, d))
    y_val = (val[:, 0] > 0).astype(np.int64)
    gain = np.zeros((v, 2))
    gain[np.arange(v), y_val] = 1.0 / v
    rows = np.arange(n)[:, None]
    return Problem(train, labels, Lineage(n, np.zeros(n, np.int64), rows), val, gain)


def fork_problem(n: int, groups: int, v: int, d: int, seed: int = 1) -> Problem:
    base = map_problem(n, v, d, seed)
    row_group = np.random.default_rng(seed).integers(0, groups, n)
    lineage = Lineage(groups, np.zeros(groups, np.int64), row_group[:, None])
    return Problem(base.train, base.labels, lineage, base.val, base.gain)


def join_problem(facts: int, dims: int, v: int, d: int, seed: int = 2) -> Problem:
    base = map_problem(facts, v, d, seed)
    dim_of = np.random.default_rng(seed).integers(0, dims, facts)
    rows = np.c_[np.arange(facts), facts + dim_of]
    relation = np.r_[np.zeros(facts), np.ones(dims)].astype(np.int64)
    return Problem(
        base.train, base.labels, Lineage(facts + dims, relation, rows), base.val, base.gain
    )


def timed(problem: Problem, k: int, utility: str, executor: Any) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    method = KnnShapley(k=k, knn_utility=utility, n_jobs=2, executor=executor).fit(problem)
    return time.perf_counter() - started, method.values_


def overhead(args: argparse.Namespace) -> None:
    workloads = [
        (f"map N={args.n:,} V={args.v:,} d=20, soft K=5", map_problem(args.n, args.v, 20), 5),
        ("fork N=2,000 in 200 groups V=100, soft K=3", fork_problem(2000, 200, 100, 20), 3),
        ("join 1,000 facts x 50 dims V=100, soft K=1", join_problem(1000, 50, 100, 20), 1),
    ]
    store = max(200_000_000, 3 * workloads[0][1].train.nbytes)
    started = time.perf_counter()
    with ray_cluster(store) as address:
        print(
            f"Ray cluster (head + 1 node, 1 CPU each) up in {time.perf_counter() - started:.1f} s"
        )
        ray_exec = make_executor("ray", n_jobs=2, address=address)
        procs = make_executor("process", n_jobs=2)
        rows = []
        for label, problem, k in workloads:
            counting = Counting(ray_exec)
            first, _ = timed(problem, k, "soft", counting)  # workers import cfdb, get the data
            timed(problem, k, "soft", procs)
            local_s, proc_s, ray_s = [], [], []
            for _ in range(args.repeat):  # interleaved: the machine's load drifts
                t, here = timed(problem, k, "soft", None)
                local_s.append(t)
                t, there = timed(problem, k, "soft", procs)
                proc_s.append(t)
                assert np.array_equal(here, there), "process values differ from local"
                counting.counts.clear()
                t, there = timed(problem, k, "soft", counting)
                ray_s.append(t)
                assert np.array_equal(here, there), "Ray values differ from local"
            best = (min(local_s), min(proc_s), min(ray_s))
            rows.append((label, *best, first, dict(counting.counts)))
    print(
        f"\nbest of {args.repeat}, interleaved; local = this process (map: 2 threads; fork, "
        "join: serial); process = 2 warm worker processes; ray = 2 Ray workers"
    )
    print(
        f"{'workload':<44}{'local s':>8}{'proc s':>8}{'ray s':>8}{'ray/local':>10}"
        f"{'ray/proc':>9}{'ray 1st':>8}  tasks/worker"
    )
    for label, loc, proc, ray_t, first, counts in rows:
        tasks = " ".join(str(c) for c in sorted(counts.values(), reverse=True))
        print(
            f"{label:<44}{loc:>8.2f}{proc:>8.2f}{ray_t:>8.2f}{ray_t / loc:>10.2f}"
            f"{ray_t / proc:>9.2f}{first:>8.2f}  {tasks}"
        )
    print("values: equal bit for bit (local, process, ray) in every run")


def scale(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(args.n, 20))
    labels = (train[:, 0] + rng.normal(size=args.n) > 0).astype(np.int64)
    print(f"map pipeline, N = {args.n:,}, d = 20, soft K = 5, 2 threads; blocks of 1,000 rows")
    print(f"{'block':>6}{'rows':>8}{'seconds':>10}{'cumulative s':>14}{'peak RSS GB':>13}")
    total = np.zeros(args.n)
    elapsed = 0.0
    for b, start in enumerate(range(0, args.v, 1000)):
        rows = min(1000, args.v - start)
        val = rng.normal(size=(rows, 20))
        gain = np.zeros((rows, 2))
        gain[np.arange(rows), (val[:, 0] > 0).astype(int)] = 1.0 / args.v
        t = time.perf_counter()
        total += knn_map.soft_values(train, labels, val, gain, 5, n_jobs=2)
        seconds = time.perf_counter() - t
        elapsed += seconds
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{b + 1:>6}{rows:>8}{seconds:>10.1f}{elapsed:>14.1f}{peak:>13.2f}", flush=True)
    print(f"total {elapsed:.1f} s for {args.v:,} validation rows; sum of values {total.sum():.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["overhead", "scale"], nargs="?", default="overhead")
    parser.add_argument("--n", type=int, default=None, help="training rows")
    parser.add_argument("--v", type=int, default=None, help="validation rows")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.mode == "overhead":
        args.n, args.v = args.n or 200_000, args.v or 4000
        overhead(args)
    else:
        args.n, args.v = args.n or 1_000_000, args.v or 10_000
        scale(args)


if __name__ == "__main__":
    main()
