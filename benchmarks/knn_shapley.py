"""Benchmark: exact KNN-Shapley over provenance against its floor and peer libraries.

Map pipeline, K = 5, 20 features, N training rows × 1,000 validation rows (accuracy):

* ``floor``: the same BLAS distances and a plain sort of every validation row's distances,
  in the same chunks and threads — what any exact method must at least do;
* ``cfdb``: :func:`cfdb.valuation.knn_map.soft_values` (Jia et al. 2019's recursion);
* ``cfdb sql``: the whole ``VALUATE`` statement on a DuckDB table (provenance capture,
  featurization, writing Provenance and DataValues);
* ``pydvl``: ``KNNShapleyValuation`` (the same soft utility; values agree to 1e-16);
* ``datascope``: ``ShapleyImportance(method=NEIGHBOR)`` with K = 1 (its K > 1 path is pure
  Python and does not finish at these sizes), so its row compares with cfdb's K = 1 run.

Peers pin numpy < 2: they run in their own virtual environment, created by this script
under the temporary directory (``--peers-venv``), never in cfdb's. Fork (100 providers) and
one-to-many join (fact × dimension) times are cfdb only. Every measurement runs in a fresh
process; the table gives wall seconds, peak resident memory and ratios.

Usage::

    python benchmarks/knn_shapley.py                      # N = 10k, 100k, 1M
    python benchmarks/knn_shapley.py --sizes 10000 --val 200 --no-peers   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PEERS = ("datascope==0.0.32", "pydvl==0.10.0")


# -- data -----------------------------------------------------------------------------------------
def make_data(folder: Path, n: int, n_val: int, d: int, seed: int = 0) -> Path:
    import numpy as np

    path = folder / f"map_{n}_{n_val}_{d}.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)

    def draw(m: int) -> tuple:
        x = rng.normal(size=(m, d))
        y = (x @ w + rng.normal(scale=2.0, size=m) > 0).astype(np.int64)
        return x, y

    x, y = draw(n)
    v, yv = draw(n_val)
    np.savez(path, x=x, y=y, v=v, yv=yv)
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- measurements (each runs in a fresh process) ----------------------------------------------------
def measure(method: str, data: str, k: int, extra: dict) -> dict:
    import numpy as np

    z = np.load(data)
    x, y, v, yv = z["x"], z["y"], z["v"], z["yv"]
    loaded = _rss_mb()
    gain = np.zeros((len(yv), 2))
    gain[np.arange(len(yv)), yv] = 1.0 / len(yv)
    if method in ("floor", "cfdb") and not extra.get("warm"):
        # warm up BLAS threads and imports on two validation rows, untimed
        measure(method, data, k, {"warm": True, "rows": 2})
    if extra.get("rows"):
        v, yv, gain = v[: extra["rows"]], yv[: extra["rows"]], gain[: extra["rows"]]
    started = time.perf_counter()
    if method == "floor":
        from concurrent.futures import ThreadPoolExecutor

        from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks

        ranker = Ranker(x)
        size = chunk_rows(len(x))
        local = threading.local()

        def run(part: slice) -> None:
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty((size, len(x)))
            d = ranker.squared_distances(v[part], out=buf[: part.stop - part.start])
            d.sort(axis=1)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, list(chunks(len(v), size))))
        total = float("nan")
    elif method == "cfdb":
        from cfdb.valuation.knn_map import soft_values

        total = float(soft_values(x, y, v, gain, k, n_jobs=2).sum())
    elif method == "cfdb_sql":
        import cfdb

        db = cfdb.connect()
        names = [f"f{i}" for i in range(x.shape[1])]
        import pandas as pd

        frame = pd.DataFrame(x, columns=names)
        frame.insert(0, "id", np.arange(len(x)))
        frame["label"] = y
        vframe = pd.DataFrame(v, columns=names)
        vframe["label"] = yv
        db.session.store.register("tf", frame)
        db.session.store.register("vf", vframe)
        db.sql(
            "CREATE TABLE train (id BIGINT PRIMARY KEY, "
            + ", ".join(f"{n} DOUBLE" for n in names)
            + ", label BIGINT)"
        )
        db.sql("INSERT INTO train SELECT * FROM tf; CREATE TABLE val AS SELECT * FROM vf")
        loaded = _rss_mb()
        started = time.perf_counter()
        out = db.sql(
            f"VALUATE (SELECT * FROM train) EVALUATE ON (SELECT * FROM val) USING knn_shapley "
            f"WITH (k = {k}, label = 'label', transformer = 'none', n_jobs = 2)"
        ).fetchall()
        total = float(out[0][7])
    elif method == "pydvl":
        import warnings

        warnings.filterwarnings("ignore")
        from pydvl.valuation import KNNShapleyValuation
        from pydvl.valuation.dataset import Dataset
        from sklearn.neighbors import KNeighborsClassifier

        valuation = KNNShapleyValuation(
            KNeighborsClassifier(n_neighbors=k), Dataset(v, yv), progress=False
        )
        valuation.fit(Dataset(x, y))
        total = float(np.sum(valuation.result.values))
    elif method == "datascope":
        import warnings

        warnings.filterwarnings("ignore")
        from datascope.importance import ImportanceMethod, ShapleyImportance, SklearnModelAccuracy
        from sklearn.neighbors import KNeighborsClassifier

        importance = ShapleyImportance(
            method=ImportanceMethod.NEIGHBOR,
            utility=SklearnModelAccuracy(KNeighborsClassifier(n_neighbors=k)),
            nn_k=k,
        )
        total = float(np.sum(importance.fit(x, y).score(v, yv)))
    elif method in ("fork", "join"):
        from cfdb.valuation import knn_fork, knn_join
        from cfdb.valuation.neighbors import Ranker

        groups = int(extra["groups"])
        rng = np.random.default_rng(1)
        owner = rng.integers(0, groups, len(x))
        ranker = Ranker(x)
        if method == "fork":
            total = float(knn_fork.fork_values(ranker, owner, y, v, gain, groups, k, "soft").sum())
        else:
            values, nodes = knn_join.join_values(
                ranker, np.arange(len(x)), len(x) + owner, y, v, gain, len(x) + groups, k, "soft"
            )
            total = float(values.sum())
            extra = {**extra, "nodes": len(nodes.t), "exact": nodes.exact}
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": _rss_mb(), "data_mb": loaded, "sum": total, **extra}


# -- orchestration ------------------------------------------------------------------------------------
def peers_python(venv: Path) -> Path | None:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the peers' environment in {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = subprocess.run(
        [str(python), "-c", "import pydvl, datascope"], capture_output=True, text=True
    )
    if check.returncode != 0:
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEERS], capture_output=True, text=True
        )
        if result.returncode != 0:
            print("could not install the peers:", result.stderr[-2000:], flush=True)
            return None
    return python


#: Address-space cap of one measurement: a peer that needs more fails with MemoryError
#: instead of bringing the kernel's OOM killer onto a shared machine.
MEMORY_CAP_GB = float(os.environ.get("CFDB_BENCH_MEMORY_GB", "14"))


def _cap_memory() -> None:
    limit = int(MEMORY_CAP_GB * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(python: Path | str, method: str, data: Path, k: int, timeout: float, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    cmd = [
        str(python),
        str(HERE),
        "--measure",
        method,
        "--data",
        str(data),
        "--k",
        str(k),
        "--extra",
        json.dumps(extra),
    ]
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=_cap_memory
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        return {"error": f"{last[:120]} (memory cap {MEMORY_CAP_GB:g} GB)"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, r: dict, base: dict | None) -> str:
    if "error" in r:
        return f"| {label} | – | – | – | {r['error']} |"
    ratio = f"{r['seconds'] / base['seconds']:.2f}×" if base and "seconds" in base else "1.00×"
    note = f"sum {r['sum']:.4f}" if r.get("sum") == r.get("sum") else ""
    for key in ("nodes", "exact", "val_rows"):
        if key in r:
            note += f" {key}={r[key]}"
    return (
        f"| {label} | {r['seconds']:.2f} | {r['peak_mb']:.0f} ({r['peak_mb'] - r['data_mb']:+.0f})"
        f" | {ratio} | {note} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--no-sql", action="store_true")
    p.add_argument("--peers-venv", default=str(Path(tempfile.gettempdir()) / "cfdb-knn-peers"))
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--fork-rows", type=int, default=100_000)
    p.add_argument("--join-facts", type=int, default=100_000)
    p.add_argument("--join-val", type=int, default=20)
    p.add_argument("--only", default="", help="comma list of floor,cfdb,sql,peers,fork,join")
    p.add_argument("--measure")
    p.add_argument("--data")
    p.add_argument("--extra", default="{}")
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.data, args.k, json.loads(args.extra))))
        return
    only = set((args.only or "floor,cfdb,sql,peers,fork,join").split(","))
    folder = Path(tempfile.gettempdir()) / "cfdb-knn-bench"
    folder.mkdir(exist_ok=True)
    peers = None if args.no_peers or "peers" not in only else peers_python(Path(args.peers_venv))
    print(
        f"map pipeline, K = {args.k}, {args.features} features, {args.val} validation rows; "
        "seconds, peak RSS MB (over the loaded data), ratio to the floor",
        flush=True,
    )
    for n in [int(s) for s in args.sizes.split(",")]:
        data = make_data(folder, n, args.val, args.features)
        print(
            f"\n### N = {n:,}\n\n| method | seconds | peak MB | vs floor | notes |\n|---|---|---|---|---|",
            flush=True,
        )
        floor = run(sys.executable, "floor", data, args.k, args.timeout)
        print(row("floor: distances + sort", floor, floor), flush=True)
        ours = run(sys.executable, "cfdb", data, args.k, args.timeout) if "cfdb" in only else {}
        if ours:
            print(row(f"cfdb map soft K={args.k}", ours, floor), flush=True)
        if not args.no_sql and "sql" in only:
            print(
                row(
                    "cfdb VALUATE statement",
                    run(sys.executable, "cfdb_sql", data, args.k, args.timeout),
                    floor,
                ),
                flush=True,
            )
        if peers:
            r = run(peers, "pydvl", data, args.k, args.timeout)
            print(row(f"pyDVL K={args.k}", r, floor), flush=True)
            if "seconds" in r and "seconds" in ours:
                print(
                    f"|   pyDVL / cfdb | {r['seconds'] / ours['seconds']:.1f}× | | | |", flush=True
                )
            ours1 = run(sys.executable, "cfdb", data, 1, args.timeout)
            print(row("cfdb map K=1", ours1, floor), flush=True)
            r = run(peers, "datascope", data, 1, args.timeout)
            print(row("datascope K=1", r, floor), flush=True)
            if "seconds" in r and "seconds" in ours1:
                print(
                    f"|   datascope / cfdb (K=1) | {r['seconds'] / ours1['seconds']:.1f}× | | | |",
                    flush=True,
                )
    if not only & {"fork", "join"}:
        return
    fork_data = make_data(folder, args.fork_rows, args.val, args.features)
    print(
        f"\n### fork: {args.fork_rows:,} rows from 100 providers, {args.val} validation rows\n\n"
        "| method | seconds | peak MB | vs floor | notes |\n|---|---|---|---|---|",
        flush=True,
    )
    floor = run(sys.executable, "floor", fork_data, args.k, args.timeout)
    print(row("floor: distances + sort", floor, floor), flush=True)
    for k in (1, args.k):
        print(
            row(
                f"cfdb fork K={k}",
                run(sys.executable, "fork", fork_data, k, args.timeout, groups=100),
                floor,
            ),
            flush=True,
        )
    join_data = make_data(folder, args.join_facts, args.join_val, args.features)
    print(
        f"\n### one-to-many join: fact {args.join_facts:,} × dimension 1,000, "
        f"{args.join_val} validation rows\n\n| method | seconds | peak MB | vs floor | notes |\n"
        "|---|---|---|---|---|",
        flush=True,
    )
    floor = run(sys.executable, "floor", join_data, args.k, args.timeout)
    print(row("floor: distances + sort", floor, floor), flush=True)
    r = run(sys.executable, "join", join_data, 1, args.timeout, groups=1000, val_rows=args.join_val)
    print(row("cfdb join K=1", r, floor), flush=True)
    if "seconds" in r:
        print(f"|   per validation row | {r['seconds'] / args.join_val:.2f} | | | |", flush=True)


if __name__ == "__main__":
    main()
