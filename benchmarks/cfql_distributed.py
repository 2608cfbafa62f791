"""CF generation of a CFQL batch across workers (CFDB paper, section 4.3, Algorithm 2 in waves).

Bank Marketing, random forest (10 trees, depth 5), false negatives; the loose (or ``--graph
dense``) query shapes of ``cfql_batch_reuse.py`` over ``--nodes`` conditions,
``growing_spheres`` with L0 distance.
The same batch runs in this process (the local run), on ``--jobs`` worker processes
(``executor = 'process'``) and on a Ray cluster started here (a head and ``--ray-nodes - 1``
more nodes, one CPU each, as ``ray start`` does; stopped at the end), once per reuse
threshold. Each run starts from an empty CF store; every distributed run must store exactly
the local run's CFs (checked). Printed: seconds, ratio to the local run of the same
threshold, waves, generator calls, and calls per worker process.

Run:  python benchmarks/cfql_distributed.py [--nodes 100] [--thresholds 0,11] [--jobs 2]
      [--ray-nodes 3] [--no-ray] [--graph loose|dense]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cfdb
from benchmarks.cfql_batch_reuse import DENSE, LOOSE, batch, connect

TABLES = (
    "SELECT * FROM CFs ORDER BY CfId",
    "SELECT PredictionId, CfId, Distance, Reused, Optimal FROM Prediction_CFs ORDER BY ALL",
    "SELECT PredictionId, Hash, Status, ClassId FROM Conditions ORDER BY ALL",
)


def run(
    db: cfdb.Database, shapes: list[str], nodes: int, threshold: float, where: str
) -> tuple[float, list, object]:
    db.sql("DELETE FROM Prediction_CFs; DELETE FROM CFs;")  # no help from earlier runs
    script = batch(
        shapes,
        max(1, nodes // len(shapes)),
        f"reuse_threshold = {threshold}, persistent_pool = false{where}",
        explain=False,
        extra=" WITH (distance = 'l0', time_limit = 5)",
    )
    started = time.perf_counter()
    db.sql(script)
    seconds = time.perf_counter() - started
    batch_id = db.sql("SELECT max(BatchId) FROM CFBatches").fetchall()[0][0]
    # Conditions and links of this batch only (query ids differ between runs).
    tables = [
        db.sql(sql.replace("ORDER BY", f"WHERE {cond} ORDER BY")).fetchall()
        for sql, cond in zip(
            TABLES,
            (
                "TRUE",
                f"QueryId IN (SELECT QueryId FROM CFQueries WHERE BatchId = {batch_id})",
                f"BatchId = {batch_id}",
            ),
            strict=True,
        )
    ]
    return seconds, tables, db.session.last_generation


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--thresholds", default="0,11")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ray-nodes", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--graph", choices=("loose", "dense"), default="loose")
    args = parser.parse_args()

    db = connect()
    wheres = [("local", ""), ("process", f", executor = 'process', n_jobs = {args.jobs}")]
    cluster = None
    try:
        if not args.no_ray:
            import ray

            from tests.exec.ray_cluster import start_cluster, wait_for_nodes

            print(f"Ray cluster: a head and {args.ray_nodes - 1} more node(s), 1 CPU each")
            cluster = start_cluster(nodes=args.ray_nodes)
            ray.init(address=cluster.address, log_to_driver=False)
            wait_for_nodes(ray, args.ray_nodes, timeout=300)
            ray_where = f", executor = 'ray', address = '{cluster.address}'"
            wheres.append(("ray", f"{ray_where}, n_jobs = {args.ray_nodes}"))
        measure(db, args, wheres)
    finally:
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.stop()
            shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def measure(db: cfdb.Database, args: argparse.Namespace, wheres: list[tuple[str, str]]) -> None:
    shapes = LOOSE if args.graph == "loose" else DENSE
    print(
        f"Bank Marketing, {args.nodes} conditions ({args.graph} shapes), growing_spheres, L0; "
        f"{args.jobs} worker processes"
    )
    print(
        f"{'threshold':>9} {'executor':9} {'seconds':>8} {'vs local':>9} {'waves':>6} "
        f"{'calls':>6} {'same CFs':>8}  calls per worker"
    )
    warm = {"local"}
    for t in (float(x) for x in args.thresholds.split(",")):
        base_seconds, base_tables = None, None
        for name, where in wheres:
            if name not in warm:
                run(db, shapes, args.nodes, t, where)  # warm up the workers (imports, model)
                warm.add(name)
            seconds, tables, gen = run(db, shapes, args.nodes, t, where)
            if base_tables is None:
                base_seconds, base_tables = seconds, tables
            same = tables == base_tables
            per_worker = ", ".join(f"{w}: {c}" for w, c in sorted(gen.calls_by_worker.items()))
            print(
                f"{t:9.0f} {name:9} {seconds:8.2f} {seconds / base_seconds:8.2f}x "
                f"{gen.waves:6d} {gen.calls:6d} {same!s:>8}  {per_worker}",
                flush=True,
            )
            if not same:
                raise SystemExit(f"{name} stored other CFs than the local run")


if __name__ == "__main__":
    main()
