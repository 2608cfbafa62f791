"""Exact counterfactuals (the ``smt`` generator) on UCI Adult and COMPAS.

Part 1, generators called directly (no engine). For each dataset and model (the CFDB paper's
random forest, 10 trees of depth 5, and logistic regression; and XGBoost, 50 trees of depth 4),
the tasks are ``--tasks`` test instances the model gives the unfavourable label (Adult
``<=50K``, COMPAS ``1``), each under two conditions: none, and one that restricts a feature to
one direction (Adult: hours per week kept or raised by 5 or more; COMPAS: age not lower).

* Time: for each objective, the median and 95th percentile of seconds per CF (n = 1, so per
  task), the share of CFs proven optimal, and the share of tasks that hit the time limit.
* Distance: for each distance (``l0``, ``l1``, ``tabular``), the mean distance of the closest
  CF of ``growing_spheres``, ``random`` and ``nearest`` (pool: the test split) divided by that
  of ``smt`` with the same objective, over the tasks where both found one. A ratio above 1 is
  how much farther the heuristic's CF is than the provably closest one.

Part 2, the burden experiment through CFQL (CFDB paper, section 5.4; CERTIFAI's burden): for
the random forest, up to ``--per-group`` test predictions with the unfavourable label in each
sex x race group, CFs that keep sex and race, tabular distance; the burden of a group is the
mean distance to its members' closest CFs. Per generator: the burden of each group, how many
predictions got a CF, and the statement's total seconds; the time ratio is against
``nearest`` (the cheapest) measured in the same run.

Run:  python benchmarks/smt_generator.py [--tasks 25] [--time-limit 10] [--per-group 15]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import cfdb
from cfdb.ctable.condition import TRUE, Cmp, Domains, Or, normalize
from cfdb.generators import GENERATORS, GenerationTask, distance
from cfdb.models import train
from cfdb.types import FeatureSpec

UNFAVOURABLE = {"adult": "<=50K", "compas": "1"}
MODELS = {
    "random_forest": {"n_estimators": 10, "max_depth": 5},
    "logistic_regression": {},
    "xgboost": {"n_estimators": 50, "max_depth": 4},
}
OBJECTIVES = ("l0", "l1", "tabular", "l0_l1")
HEURISTICS = ("growing_spheres", "random", "nearest")


def load(name: str) -> tuple[list[FeatureSpec], dict[str, np.ndarray]]:
    db = cfdb.connect()
    db.sql(f"LOAD DATASET {name}")
    features = [
        FeatureSpec(n, kind, tuple(domain) if domain else None, lo, hi, mad, mutable)
        for n, _, kind, domain, lo, hi, mad, mutable in db.sql(
            "SELECT * FROM Features ORDER BY 2"
        ).fetchall()
    ]
    frame = db.sql("SELECT * FROM Instances ORDER BY InstanceId").df()
    db.close()
    cols = {
        c: np.asarray(frame[c].to_numpy(), dtype=np.int64 if frame[c].dtype == "int64" else object)
        for c in frame.columns
    }
    return features, cols


def condition(dataset: str, x: dict[str, Any]) -> dict[str, Any]:
    if dataset == "adult":
        hours = float(x["hours_per_week"])
        one_way = Or((Cmp("hours_per_week", "=", hours), Cmp("hours_per_week", ">=", hours + 5)))
        return {"none": TRUE, "hours kept or +5": one_way}
    return {"none": TRUE, "age not lower": Cmp("age", ">=", float(x["age"]))}


def row(cols: dict[str, np.ndarray], names: list[str], i: int) -> dict[str, Any]:
    return {k: cols[k][i].item() if hasattr(cols[k][i], "item") else cols[k][i] for k in names}


def closest(out: Any, task: GenerationTask, features: list[FeatureSpec], kind: str) -> float | None:
    if not len(next(iter(out.values()))):
        return None
    return float(distance(kind, task.instance, out, features).min())


def part1(dataset: str, args: argparse.Namespace) -> None:
    features, cols = load(dataset)
    names = [f.name for f in features]
    train_rows = cols["split"] == "train"
    fit_cols = {k: cols[k][train_rows] for k in names}
    test = {k: cols[k][~train_rows] for k in names}
    domains = Domains(features)
    bad = UNFAVOURABLE[dataset]
    print(f"\n== {dataset}: {train_rows.sum()} training rows, {len(test[names[0]])} test rows")
    for kind, params in MODELS.items():
        model = train(kind, params, features, fit_cols, cols["GroundTruth"][train_rows], name=kind)
        labels = model.predict(test)
        rng = np.random.default_rng(0)
        picks = rng.choice(np.flatnonzero(labels == bad), args.tasks, replace=False)
        tasks = []
        for i in picks:
            x = row(test, names, int(i))
            for cname, cond in condition(dataset, x).items():
                tasks.append((cname, x, normalize(cond, domains), int(i)))
        print(f"\n{kind}: {len(tasks)} tasks ({args.tasks} instances x 2 conditions)")
        print(
            f"{'objective':10} {'median s/CF':>12} {'p95 s/CF':>9} {'found':>6} "
            f"{'optimal':>8} {'timeouts':>9}"
        )
        smt_best: dict[str, list[float | None]] = {}
        for objective in OBJECTIVES:
            gen = GENERATORS.get("smt")(objective=objective).fit(model, features)
            seconds, found, optimal, timeouts, best = [], 0, 0, 0, []
            for _, x, cond, seed in tasks:
                task = GenerationTask(
                    instance=x,
                    original_label=bad,
                    target=None,
                    condition=cond,
                    n=1,
                    seed=seed,
                    deadline=time.monotonic() + args.time_limit,
                    distance="l1" if objective == "l0_l1" else objective,
                )
                started = time.perf_counter()
                out = gen.generate(task)
                seconds.append(time.perf_counter() - started)
                found += len(out[names[0]])
                optimal += int(out.extra["__optimal"].sum())
                timeouts += int(out.info["status"] in ("timeout", "feasible"))
                best.append(closest(out, task, features, task.distance))
            gen.close()
            smt_best[objective] = best
            n = len(tasks)
            print(
                f"{objective:10} {np.median(seconds):12.3f} {np.percentile(seconds, 95):9.3f} "
                f"{found / n:6.0%} {optimal / max(found, 1):8.0%} {timeouts / n:9.0%}"
            )
        print(
            f"{'generator':16} " + " ".join(f"{d + ' ratio':>13}" for d in ("l0", "l1", "tabular"))
        )
        for name in HEURISTICS:
            gen = GENERATORS.get(name)()
            gen.fit(model, features, test if name == "nearest" else None)
            ratios = []
            for dist in ("l0", "l1", "tabular"):
                pairs = []
                for (_, x, cond, seed), exact in zip(tasks, smt_best[dist], strict=True):
                    task = GenerationTask(
                        instance=x,
                        original_label=bad,
                        target=None,
                        condition=cond,
                        n=1,
                        seed=seed,
                        deadline=time.monotonic() + args.time_limit,
                        distance=dist,
                    )
                    theirs = closest(gen.generate(task), task, features, dist)
                    if theirs is not None and exact is not None:
                        pairs.append((theirs, exact))
                if pairs and np.mean([p[1] for p in pairs]) > 0:
                    mean_theirs = np.mean([p[0] for p in pairs])
                    ratios.append(
                        f"{mean_theirs / np.mean([p[1] for p in pairs]):9.2f} ({len(pairs):>2})"
                    )
                else:
                    ratios.append(f"{'-':>13}")
            print(f"{name:16} " + " ".join(ratios))


def part2(dataset: str, args: argparse.Namespace) -> None:
    bad = UNFAVOURABLE[dataset]
    db = cfdb.connect()
    db.sql(
        f"LOAD DATASET {dataset};"
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances WHERE split = 'test')"
    )
    q_pred = f"""SELECT PredictionId FROM (
        SELECT P.PredictionId, row_number() OVER (
            PARTITION BY I.sex, I.race ORDER BY hash(P.PredictionId)) AS k
        FROM Predictions P JOIN Instances I USING (InstanceId) WHERE P.Label = '{bad}')
      WHERE k <= {args.per_group}"""
    q_cf = (
        "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND C.sex = I.sex AND C.race = I.race"
    )
    runs = {
        "smt": "objective = 'tabular'",
        "nearest": "",
        "growing_spheres": "seed = 0",
        "random": "seed = 0",
    }
    results: dict[str, dict[str, Any]] = {}
    for name, extra in runs.items():
        options = ", ".join(
            o for o in ("distance = 'tabular'", f"time_limit = {args.time_limit}", extra) if o
        )
        started = time.perf_counter()
        db.sql(f"FOREACH pred IN ({q_pred}) GENERATE ({q_cf}) USING {name} WITH ({options})")
        seconds = time.perf_counter() - started
        (query,) = db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0]
        rows = db.sql(
            f"""SELECT I.sex || ' / ' || I.race AS grp, count(*) AS asked,
                   count(B.best) AS found, avg(B.best) AS burden
            FROM Conditions K JOIN Predictions P USING (PredictionId)
            JOIN Instances I ON I.InstanceId = P.InstanceId
            LEFT JOIN (SELECT PredictionId, min(Distance) AS best FROM Prediction_CFs
                       WHERE QueryId = {query} GROUP BY ALL) B USING (PredictionId)
            WHERE K.QueryId = {query} GROUP BY ALL ORDER BY grp"""
        ).fetchall()
        results[name] = {"seconds": seconds, "rows": {r[0]: r[1:] for r in rows}}
    db.close()
    groups = sorted(results["smt"]["rows"])
    print(f"\n== burden on {dataset} (random forest, tabular distance, keep sex and race)")
    header = f"{'group':34} {'asked':>5} " + " ".join(f"{n[:15]:>15}" for n in runs)
    print(header)
    for g in groups:
        cells = []
        for name in runs:
            _, found, burden = results[name]["rows"].get(g, (0, 0, None))
            cells.append(f"{burden:8.3f} ({found:>3})" if burden is not None else f"{'-':>15}")
        print(
            f"{g[:34]:34} {results['smt']['rows'][g][0]:5} " + " ".join(f"{c:>15}" for c in cells)
        )
    base = results["nearest"]["seconds"]
    print(
        f"{'seconds (ratio to nearest)':40} "
        + " ".join(
            f"{results[n]['seconds']:7.1f} ({results[n]['seconds'] / base:5.1f}x)" for n in runs
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=25, help="instances per model")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per task")
    parser.add_argument("--per-group", type=int, default=15, help="burden: predictions per group")
    parser.add_argument("--datasets", default="adult,compas")
    parser.add_argument("--skip-part1", action="store_true")
    parser.add_argument("--skip-burden", action="store_true")
    args = parser.parse_args()
    for dataset in args.datasets.split(","):
        if not args.skip_part1:
            part1(dataset, args)
        if not args.skip_burden:
            part2(dataset, args)


if __name__ == "__main__":
    main()
