"""Counterfactuals of a regression model against those of a classifier, end to end in SQL.

On UCI Adult (bundled), two random forests of the same size are trained on the training
split: a classifier of income (``GroundTruth``) and a regressor of ``hours_per_week`` from the
other features (CFDB paper, section 4.4: a CF must move the output by ``min_change``). For each
generator, one FOREACH over the same test instances keeps sex and race; the classifier's CFs
flip ``<=50K``, the regressor's raise the predicted hours by at least ``--min-change``.

Reported per (generator, model): milliseconds per prediction, the share of predictions with a
CF and the mean tabular distance. The ratio column is the regressor's time over the
classifier's for the same generator, measured in the same run. A last row runs the regressor's
query twice in one batch with a reuse threshold and reports the generator calls saved.

Run:  python benchmarks/regression_cfs.py [--predictions 100] [--min-change 5]
"""

from __future__ import annotations

import argparse
import time

import cfdb

FEATURES = "('age', 'workclass', 'education', 'marital_status', 'occupation', 'race', 'sex')"
Q_CF = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
    "AND C.sex = I.sex AND C.race = I.race"
)


def q_pred(model: str, extra: str, limit: int) -> str:
    return (
        f"SELECT PredictionId FROM Predictions P JOIN Models M USING (ModelId) "
        f"JOIN Instances I USING (InstanceId) WHERE M.Name = '{model}' AND I.split = 'test' "
        f"{extra} ORDER BY PredictionId LIMIT {limit}"
    )


def run(db: cfdb.Database, statement: str) -> tuple[float, float, float | None]:
    started = time.perf_counter()
    db.sql(statement)
    seconds = time.perf_counter() - started
    preds, failed, infeasible, mean = db.sql(
        "SELECT Predictions, Failed, Infeasible, MeanDistance FROM CFQueries "
        "ORDER BY QueryId DESC LIMIT 1"
    ).fetchall()[0]
    return seconds / preds, 1 - (failed + infeasible) / preds, mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=100)
    parser.add_argument("--min-change", type=float, default=5.0)
    args = parser.parse_args()
    db = cfdb.connect()
    db.sql("LOAD DATASET adult")
    train = "TRAIN ON (SELECT * FROM Instances WHERE split = 'train')"
    forest = "n_estimators = 20, max_depth = 8"
    db.sql(
        f"CREATE MODEL clf AS random_forest WITH ({forest}, features = {FEATURES}) {train};"
        f"CREATE MODEL reg AS random_forest_regressor WITH ({forest}, features = {FEATURES}, "
        f"label = 'hours_per_week') {train};"
        "PREDICT clf ON (SELECT * FROM Instances WHERE split = 'test');"
        # The regressor's ground truth is its label, not the income in GroundTruth.
        "PREDICT reg ON (SELECT * REPLACE (hours_per_week AS GroundTruth) FROM Instances "
        "WHERE split = 'test')"
    )
    n = args.predictions
    rows = []
    rejected = q_pred("clf", "AND P.Label = '<=50K'", n)
    for generator in ("nearest", "growing_spheres", "random"):
        options = "n = 1, seed = 1"
        clf = run(
            db,
            f"FOREACH pred IN ({rejected}) GENERATE ({Q_CF}) USING {generator} WITH ({options})",
        )
        reg = run(
            db,
            f"FOREACH pred IN ({q_pred('reg', '', n)}) GENERATE ({Q_CF}) USING {generator} "
            f"WITH ({options}, min_change = {args.min_change}, direction = 'up')",
        )
        rows.append((generator, clf, reg))
    print(f"Adult, {n} test predictions per query, random forests ({forest})")
    print(
        f"{'generator':<16} {'clf ms/pred':>11} {'reg ms/pred':>11} {'reg/clf':>8} "
        f"{'clf found':>9} {'reg found':>9} {'clf dist':>8} {'reg dist':>8}"
    )
    for generator, clf, reg in rows:
        print(
            f"{generator:<16} {clf[0] * 1e3:>11.1f} {reg[0] * 1e3:>11.1f} "
            f"{reg[0] / clf[0]:>8.2f} {clf[1]:>9.0%} {reg[1]:>9.0%} "
            f"{clf[2] or float('nan'):>8.3f} {reg[2] or float('nan'):>8.3f}"
        )
    weak = Q_CF.replace(" AND C.race = I.race", "")
    query = q_pred("reg", "", n)
    options = f"min_change = {args.min_change}, direction = 'up', seed = 2"
    started = time.perf_counter()
    db.sql(
        "BEGIN BATCH WITH (reuse_threshold = 0.5);"
        f"FOREACH pred IN ({query}) GENERATE ({Q_CF}) USING growing_spheres WITH ({options});"
        f"FOREACH pred IN ({query}) GENERATE ({weak}) USING growing_spheres WITH ({options});"
        "END BATCH"
    )
    seconds = time.perf_counter() - started
    nodes, calls, reused = db.sql(
        "SELECT Nodes, GeneratorCalls, Reused FROM CFBatches ORDER BY BatchId DESC LIMIT 1"
    ).fetchall()[0]
    print(
        f"batch of two regressor queries, reuse_threshold 0.5: {nodes} nodes, {calls} "
        f"generator calls, {reused} reused ({reused / max(nodes, 1):.0%} of calls saved), "
        f"{seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
