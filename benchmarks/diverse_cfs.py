"""Diversity of n > 1 counterfactuals: cfdb's ``diversity`` option against dice-ml.

The same fitted scikit-learn pipeline (one-hot + random forest on UCI Adult) is imported into
cfdb (``IMPORT MODEL``) and wrapped for dice-ml; both explain the same predictions, keeping
sex and race, with 3 CFs each. The table reports, per method, how many predictions got 3 CFs,
the mean pairwise CERTIFAI tabular distance among a prediction's CFs (DiCE's diversity
measure) and the mean distance of a CF to its instance (proximity), over the same predictions,
and seconds. Ratios are to cfdb without diversity, measured in the same run.

Needs dice-ml (``pip install 'cfdb[bench]'``); without it, only the cfdb rows are printed.

Run: ``python benchmarks/diverse_cfs.py [--predictions 10] [--n 3] [--train-rows 5000]``
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import cfdb
from cfdb.generators.distance import distance
from cfdb.store import catalog

NUMERIC = ["age", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "race", "sex"]
FEATURES = ["age", *CATEGORICAL[:4], "race", "sex", "hours_per_week"]
KEEP = ("sex", "race")


def build(train_rows: int) -> tuple[cfdb.Database, Any, pd.DataFrame]:
    db = cfdb.connect()
    db.load_dataset("adult")
    train = db.sql(
        f"SELECT * FROM Instances WHERE split = 'train' ORDER BY hash(InstanceId) "
        f"LIMIT {int(train_rows)}"
    ).df()
    pipe = make_pipeline(
        ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
            remainder="passthrough",
        ),
        RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
    )
    y = (train.GroundTruth == ">50K").astype(int)
    pipe.fit(train[FEATURES], y)
    db.register_model("rf", pipe, features=FEATURES)
    db.predict("rf", "SELECT * FROM Instances WHERE split = 'test' ORDER BY InstanceId LIMIT 300")
    data = train[FEATURES].assign(income=y)
    return db, pipe, data


def diversity_stats(
    groups: list[pd.DataFrame], instances: list[dict[str, Any]], features: list[Any], n: int
) -> tuple[int, float, float]:
    full, pairwise, proximity = 0, [], []
    for cfs, x in zip(groups, instances, strict=True):
        rows = {f.name: cfs[f.name].to_numpy() for f in features}
        m = len(cfs)
        proximity += list(distance("tabular", x, rows, features))
        if m == n:
            full += 1
        if m >= 2:
            d = [
                distance("tabular", {k: v[i] for k, v in rows.items()}, rows, features)
                for i in range(m)
            ]
            pairwise.append(float(np.sum(d)) / (m * (m - 1)))
    return full, float(np.mean(pairwise)), float(np.mean(proximity))


def run_cfdb(db: cfdb.Database, preds: list[int], n: int, diversity: float) -> pd.DataFrame:
    ids = ", ".join(map(str, preds))
    keep = " AND ".join(f"C.{c} = I.{c}" for c in KEEP)
    db.foreach(
        f"SELECT PredictionId FROM Predictions WHERE PredictionId IN ({ids})",
        f"SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId AND {keep}",
        using="growing_spheres",
        n=n,
        diversity=diversity,
        seed=1,
        reuse_threshold=0,
        persistent_pool=False,
    )
    qid = db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0][0]
    return db.sql(
        f"SELECT pc.PredictionId, c.* FROM Prediction_CFs pc JOIN CFs c USING (CfId) "
        f"WHERE pc.QueryId = {qid}"
    ).df()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--predictions", type=int, default=10, help="predictions explained (default 10)"
    )
    ap.add_argument("--n", type=int, default=3, help="CFs per prediction (default 3)")
    ap.add_argument("--train-rows", type=int, default=5000, help="training rows (default 5000)")
    args = ap.parse_args()
    db, pipe, data = build(args.train_rows)
    preds = [
        r[0]
        for r in db.sql(
            f"SELECT PredictionId FROM Predictions WHERE Label = '0' ORDER BY PredictionId "
            f"LIMIT {args.predictions}"
        ).fetchall()
    ]
    inst = db.sql(
        f"SELECT P.PredictionId, I.* FROM Predictions P JOIN Instances I USING (InstanceId) "
        f"WHERE P.PredictionId IN ({', '.join(map(str, preds))}) ORDER BY P.PredictionId"
    ).df()
    features = catalog.read_features(db.session.store)
    instances = [{f.name: row[f.name] for f in features} for _, row in inst.iterrows()]
    rows = []
    for label, diversity in (
        ("cfdb growing_spheres, diversity 0", 0.0),
        ("cfdb growing_spheres, diversity 1", 1.0),
    ):
        started = time.perf_counter()
        out = run_cfdb(db, preds, args.n, diversity)
        seconds = time.perf_counter() - started
        groups = [out[out.PredictionId == p] for p in preds]
        rows.append((label, *diversity_stats(groups, instances, features, args.n), seconds))
    try:
        import dice_ml
    except ImportError:
        print("dice-ml is not installed: comparing cfdb with and without diversity only")
    else:
        d = dice_ml.Data(dataframe=data, continuous_features=NUMERIC, outcome_name="income")
        m = dice_ml.Model(model=pipe, backend="sklearn")
        explainer = dice_ml.Dice(d, m, method="random")
        vary = [f for f in FEATURES if f not in KEEP]
        started = time.perf_counter()
        groups = []
        for x in instances:
            query = pd.DataFrame([{f: x[f] for f in FEATURES}])
            try:
                res = explainer.generate_counterfactuals(
                    query,
                    total_CFs=args.n,
                    desired_class="opposite",
                    features_to_vary=vary,
                    random_seed=1,
                    verbose=False,
                )
                cfs = res.cf_examples_list[0].final_cfs_df
                groups.append(cfs[FEATURES] if cfs is not None else pd.DataFrame(columns=FEATURES))
            except Exception:  # dice-ml raises when it finds none
                groups.append(pd.DataFrame(columns=FEATURES))
        seconds = time.perf_counter() - started
        for g in groups:
            for c in NUMERIC:
                g[c] = g[c].astype(float)
        rows.append(
            ("dice-ml random", *diversity_stats(groups, instances, features, args.n), seconds)
        )
    base = rows[0]
    print(
        f"{len(preds)} predictions of a random forest on UCI Adult, n = {args.n}, keeping sex and race"
    )
    print(
        f"{'method':36} {'full sets':>9} {'pairwise':>9} {'ratio':>6} {'proximity':>9} {'ratio':>6} {'seconds':>8}"
    )
    for label, full, pair, prox, sec in rows:
        print(
            f"{label:36} {full:>9} {pair:>9.3f} {pair / base[2]:>6.2f} {prox:>9.3f} "
            f"{prox / base[3]:>6.2f} {sec:>8.1f}"
        )


if __name__ == "__main__":
    main()
