"""CFQL benchmark: compilation of 10,000 predictions, and generation per generator.

Compilation (EXPLAIN FOREACH) covers Q_pred, the one vectorized base query, instantiating the
c-table condition of every prediction and the z3 feasibility check. Its baseline is the
per-prediction evaluation the paper describes (one base query per prediction), measured on a
sample in the same run and extrapolated per prediction.

Generation runs each registered generator on the same sampled false negatives of a random
forest (10 trees, depth 5) on UCI Adult: wall time per prediction, success rate and mean
tabular distance of the closest CF.

Run:  python benchmarks/cfql_compile_generate.py [--predictions 10000] [--generate 100]
"""

from __future__ import annotations

import argparse
import time

import cfdb
from cfdb.generators import GENERATORS
from cfdb.store.cfql import SELECTED

SHAPES = {
    "Fig. 3b (keep sex, raise hours)": ("C.sex = I.sex AND C.hours_per_week > I.hours_per_week"),
    "Q2 modify one of {age, hours}": "(C.age <> I.age OR C.hours_per_week <> I.hours_per_week)",
    "Q8 workclass changes, age in 3 smallest": (
        "C.workclass <> I.workclass AND C.age IN "
        "(SELECT DISTINCT age FROM Instances ORDER BY age LIMIT 3)"
    ),
    "Q9 hours in (avg, max/2)": (
        "C.hours_per_week > (SELECT avg(hours_per_week) FROM Instances) "
        "AND C.hours_per_week < (SELECT max(hours_per_week) / 2 FROM Instances)"
    ),
}
LINK = "I.InstanceId = pred.InstanceId"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--generate", type=int, default=100)
    parser.add_argument("--naive-sample", type=int, default=200)
    args = parser.parse_args()

    db = cfdb.connect()
    db.sql(
        "LOAD DATASET adult;"
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    q_pred = f"SELECT PredictionId FROM Predictions ORDER BY PredictionId LIMIT {args.predictions}"
    print(f"Compilation: {args.predictions} predictions, UCI Adult, 8 features")
    print(
        f"{'query shape':42} {'EXPLAIN s':>10} {'per pred µs':>12} {'naive per pred µs':>18} "
        f"{'speed-up':>9}"
    )
    for name, cond in SHAPES.items():
        q_cf = f"SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND {cond}"
        started = time.perf_counter()
        db.sql(f"EXPLAIN FOREACH pred IN ({q_pred}) GENERATE ({q_cf})").fetchall()
        seconds = time.perf_counter() - started
        naive = _naive_per_prediction(db, q_cf, args.naive_sample)
        per = seconds / args.predictions
        print(
            f"{name:42} {seconds:10.2f} {per * 1e6:12.0f} {naive * 1e6:18.0f} {naive / per:8.1f}x"
        )

    print()
    print(
        f"Generation: {args.generate} false negatives of the random forest, "
        "Fig. 3b-like query keeping sex and race"
    )
    q_fn = (
        "SELECT P.PredictionId FROM Predictions P JOIN Instances I USING (InstanceId) "
        "WHERE I.GroundTruth = '>50K' AND P.Label = '<=50K' AND I.split = 'test' "
        f"ORDER BY hash(P.PredictionId) LIMIT {args.generate}"
    )
    q_cf = f"SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND C.sex = I.sex AND C.race = I.race"
    print(f"{'generator':18} {'seconds':>8} {'ms/pred':>8} {'found':>7} {'mean dist':>10}")
    for gen in GENERATORS.names():
        started = time.perf_counter()
        try:
            db.sql(f"FOREACH pred IN ({q_fn}) GENERATE ({q_cf}) USING {gen} WITH (seed = 0)")
        except cfdb.CfdbError as err:
            print(f"{gen:18} error: {err.message}")
            continue
        seconds = time.perf_counter() - started
        qid = db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0][0]
        found, dist = db.sql(
            "SELECT count(DISTINCT PredictionId), avg(d) FROM (SELECT PredictionId, "
            f"min(Distance) AS d FROM Prediction_CFs WHERE QueryId = {qid} GROUP BY ALL)"
        ).fetchall()[0]
        print(
            f"{gen:18} {seconds:8.2f} {seconds / args.generate * 1e3:8.1f} "
            f"{found / args.generate:7.0%} {dist or float('nan'):10.3f}"
        )


def _naive_per_prediction(db: cfdb.Database, q_cf: str, sample: int) -> float:
    """Seconds per prediction when the base query runs once per prediction (DuckDB round trip
    per prediction), without the instantiation and solver work the real run also does."""
    from cfdb.lang import split
    from cfdb.lang.cfql import Analyzer
    from cfdb.store import cfql as store_cfql

    store = db.session.store
    stmt = split(f"EXPLAIN FOREACH pred IN (SELECT 1 AS PredictionId) GENERATE ({q_cf})")[0]
    plan = Analyzer(
        stmt.node,
        stmt.script,
        [c for c, _ in store.columns("CFs")],
        [r[0] for r in store.execute("SELECT Name FROM Features")],
        lambda t: [c for c, _ in store.columns(t)] if store.table_exists(t) else None,
        [c for c, _ in store.columns("Predictions")],
    ).plan()
    ids = [r[0] for r in store.execute(f"SELECT PredictionId FROM Predictions LIMIT {sample}")]
    started = time.perf_counter()
    for pid in ids:
        store.execute(f"CREATE OR REPLACE TEMP TABLE {SELECTED} AS SELECT {pid} AS PredictionId")
        store.arrow(
            store_cfql.base_query(plan.from_items, plan.join_where, plan.slots, plan.pred_name)
        )
    return (time.perf_counter() - started) / len(ids)


if __name__ == "__main__":
    main()
