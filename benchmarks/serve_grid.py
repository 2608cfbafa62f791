"""`cfdb serve`: how the grid page scales with the number of subsets.

Grids of growing size (PERMUTATIONS m over 200 rows, one unit per row) are created without
training; their cells are then written with plain SQL (a smooth function of the subset's
size plus seeded noise, per slice), since this measures the page, not the models. Each grid
page is requested through the ASGI app (no network), and so is one unit's panel. The heat map
carries at most 300 bands of consecutive subsets, averaged in DuckDB, so the page size stays
flat while the subsets grow.

Run:  python benchmarks/serve_grid.py [--perms 1 5 25 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import cfdb


def build(path: Path, perms: list[int]) -> None:
    rng = np.random.default_rng(0)
    n = 260
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(size=n),
            "g": rng.choice(["a", "b", "c"], n),
            "y": rng.choice(["yes", "no"], n),
            "part": np.where(np.arange(n) < 200, "train", "test"),
        }
    )
    with cfdb.connect(path) as db:
        db.load_instances(frame, id="id", label="y", split="part")
        for m in perms:
            db.sql(
                f"CREATE GRID p{m} TRAIN ON (SELECT * FROM Instances WHERE split = 'train') "
                f"SUBSETS PERMUTATIONS {m} "
                "EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') SLICE BY g "
                "MODEL logistic_regression METRIC accuracy WITH (lazy = false)"
            )
            db.sql(
                "INSERT INTO GridCells (Grid, SubsetId, SliceId, Metric, Value, Status) "
                "SELECT s.Grid, s.SubsetId, e.SliceId, 'accuracy', "
                "0.5 + 0.4 * (1 - pow(s.Size + 1, -0.5)) + 0.02 * (hash(s.SubsetId, e.SliceId) % 100) / 100, 'ok' "
                f"FROM TrainSubsets s JOIN EvalSlices e ON e.Grid = s.Grid WHERE s.Grid = 'p{m}'"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--perms", type=int, nargs="+", default=[1, 5, 25, 50])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        build(path, args.perms)
        with cfdb.connect(path, read_only=True) as db:
            sizes = dict(db.sql("SELECT Grid, count(*) FROM TrainSubsets GROUP BY Grid").fetchall())
        rows = []
        with TestClient(create_app(str(path))) as c:
            for m in args.perms:
                grid = f"p{m}"
                page_t, unit_t, size = [], [], 0
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    r = c.get(f"/grid/{grid}")
                    page_t.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text[:500]
                    size = len(r.content)
                    t = time.perf_counter()
                    u = c.get(f"/grid/{grid}/unit?unit=3")
                    unit_t.append(time.perf_counter() - t)
                    assert u.status_code == 200
                rows.append(
                    (grid, sizes[grid], statistics.median(page_t), statistics.median(unit_t), size)
                )
    base = rows[0]
    print(f"{'grid':<6} {'subsets':>8} {'page s':>8} {'x first':>8} {'unit s':>8} {'page KB':>8}")
    for grid, n, pt, ut, size in rows:
        print(f"{grid:<6} {n:>8} {pt:>8.3f} {pt / base[2]:>8.2f} {ut:>8.3f} {size / 1024:>8.0f}")


if __name__ == "__main__":
    main()
