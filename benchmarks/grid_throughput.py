"""Grid throughput: cells per second on UCI Adult, and cfdb's overhead per cell.

For logistic regression and XGBoost (100 trees of depth 6) on random Adult training subsets
of 100, 1,000 and 10,000 rows (2,000 test rows, metric accuracy), measure:

* ``sklearn loop``: the baseline: the same subsets fitted and scored by scikit-learn/XGBoost
  called directly in a Python loop, on a matrix one-hot encoded once (the least work any
  tool could do);
* ``cfdb local 1``: ``MATERIALIZE GRID`` in-process;
* ``cfdb local 2``: two worker processes;
* ``cfdb ray 2``: Ray on this machine (two CPUs).

Every cfdb run includes featurizing the subset, scoring, and committing each cell to DuckDB.
Numbers are quoted as ratios against the baseline measured in the same run.

    python benchmarks/grid_throughput.py [--quick] [--no-ray] [--long]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cfdb

FEATURES = [
    "age",
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "race",
    "sex",
    "hours_per_week",
]


def baseline(db: cfdb.Database, kind: str, size: int, m: int, seed: int) -> float:
    """Seconds per cell of the plain library loop on the same subsets."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits
    from xgboost import XGBClassifier

    train = db.sql("SELECT * FROM Instances WHERE split = 'train' ORDER BY InstanceId").df()
    test = db.sql(
        "SELECT * FROM Instances WHERE split = 'test' ORDER BY InstanceId LIMIT 2000"
    ).df()
    both = pd.get_dummies(pd.concat([train[FEATURES], test[FEATURES]]), dtype=float).to_numpy()
    x_train, x_test = both[: len(train)], both[len(train) :]
    y_train = (train["GroundTruth"] == ">50K").to_numpy().astype(int)
    y_test = (test["GroundTruth"] == ">50K").to_numpy().astype(int)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with threadpool_limits(1):
        for _ in range(m):
            rows = rng.choice(len(train), size=size, replace=False)
            x, y = x_train[rows], y_train[rows]
            if kind == "logistic_regression":
                mean, std = x.mean(axis=0), x.std(axis=0)
                std[std == 0] = 1
                model = LogisticRegression(max_iter=1000).fit((x - mean) / std, y)
                pred = model.predict((x_test - mean) / std)
            else:
                model = XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1).fit(x, y)
                pred = model.predict(x_test)
            float(np.mean(pred == y_test))
    return (time.perf_counter() - started) / m


def cfdb_run(
    db: cfdb.Database, kind: str, size: int, m: int, executor: str, n_jobs: int, seed: int
) -> float:
    """Seconds per cell of MATERIALIZE GRID on ``m`` random subsets of ``size`` rows."""
    name = f"bench_{kind}_{size}_{executor}_{n_jobs}"
    params = "WITH (n_estimators = 100, max_depth = 6)" if kind == "xgboost" else ""
    db.sql(
        f"CREATE OR REPLACE GRID {name} TRAIN ON (SELECT * FROM Instances WHERE split = 'train') "
        f"SUBSETS RANDOM {m} SIZES ({size}) "
        "EVALUATE ON (SELECT * FROM Instances WHERE split = 'test' ORDER BY InstanceId LIMIT 2000) "
        f"MODEL {kind} {params} METRIC accuracy WITH (seed = {seed}, lazy = false)"
    )
    started = time.perf_counter()
    out = db.sql(
        f"MATERIALIZE GRID {name} WITH (executor = '{executor}', n_jobs = {n_jobs})"
    ).fetchall()[0]
    seconds = time.perf_counter() - started
    assert out[1] == m and out[4] == 0, out
    db.sql(f"DROP GRID {name}")
    return seconds / m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--long", action="store_true", help="add a 240-cell run")
    args = parser.parse_args()
    cells = {100: 40, 1000: 20, 10000: 6} if not args.quick else {100: 8, 1000: 4, 10000: 2}
    runs = [("local", 1), ("local", 2)] + ([] if args.no_ray else [("ray", 2)])
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    db = cfdb.connect()
    db.sql("LOAD DATASET adult")
    # warm-up: imports, the first pool and Ray workers are not what is being measured
    for executor, n_jobs in runs:
        cfdb_run(db, "logistic_regression", 100, 4, executor, n_jobs, 99)
    header = f"{'model':<20}{'rows':>7}{'cells':>7}  {'run':<16}{'cells/s':>9}{'s/cell':>9}{'vs loop':>9}{'overhead/cell':>15}"
    print(header)
    print("-" * len(header))
    for kind in ("logistic_regression", "xgboost"):
        for size, m in cells.items():
            base = baseline(db, kind, size, m, 0)
            print(
                f"{kind:<20}{size:>7}{m:>7}  {'sklearn loop':<16}{1 / base:>9.1f}{base:>9.4f}{1.0:>9.2f}{'-':>15}"
            )
            for executor, n_jobs in runs:
                per = cfdb_run(db, kind, size, m, executor, n_jobs, 0)
                label = f"cfdb {executor} {n_jobs}"
                overhead = f"{(per - base) * 1000:+.1f} ms" if n_jobs == 1 else "-"
                print(
                    f"{'':<20}{'':>7}{'':>7}  {label:<16}{1 / per:>9.1f}{per:>9.4f}{per / base:>9.2f}{overhead:>15}"
                )
    if args.long:
        # Fixed costs (a pool's start, shipping the data to the workers) amortized over a long
        # run: where parallel executors pay off.
        m = 240
        print(f"\nlong run: {m} cells, xgboost on 1,000 rows")
        base = baseline(db, "xgboost", 1000, m, 1)
        print(f"{'':<34}{'sklearn loop':<16}{1 / base:>9.1f}{base:>9.4f}{1.0:>9.2f}")
        for executor, n_jobs in runs:
            per = cfdb_run(db, "xgboost", 1000, m, executor, n_jobs, 1)
            print(
                f"{'':<34}{f'cfdb {executor} {n_jobs}':<16}{1 / per:>9.1f}{per:>9.4f}{per / base:>9.2f}"
            )
    db.close()


if __name__ == "__main__":
    main()
