"""Counterfactual generators on UCI Adult, called directly (no engine): time, success, quality.

For a logistic regression and a random forest trained on Adult's training split, each
registered generator answers the same tasks: test instances the model labels ``<=50K``, under
four conditions (none; keep hours or raise them by 5+; workclass in a set; a forced
occupation). Reported per generator: milliseconds per task, the share of tasks with a CF, mean
tabular distance and mean L0 of the closest CF.

Ratios are against baselines measured in the same run:
- time: a naive ``nearest`` that re-labels the whole pool for every task with
  :func:`~cfdb.generators.valid_mask` (what ``nearest`` avoids by labelling the pool once);
- distance: the closest real instance (``nearest``'s answer) for the same task.

Run:  python benchmarks/generators.py [--tasks 100] [--n 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import cfdb
from cfdb.ctable.condition import TRUE, Cmp, Domains, Member, Or, normalize
from cfdb.generators import GENERATORS, GenerationTask, distance, take, valid_mask
from cfdb.models import train
from cfdb.types import FeatureSpec


def load() -> tuple[list[FeatureSpec], dict[str, np.ndarray], dict[str, np.ndarray]]:
    db = cfdb.connect()
    db.sql("LOAD DATASET adult")
    features = [
        FeatureSpec(name, kind, tuple(domain) if domain else None, lo, hi, mad, mutable)
        for name, _, kind, domain, lo, hi, mad, mutable in db.sql(
            "SELECT * FROM Features ORDER BY 2"
        ).fetchall()
    ]
    frame = db.sql("SELECT * FROM Instances").df()
    db.close()
    cols = {
        c: np.asarray(frame[c].to_numpy(), dtype=object if frame[c].dtype != "int64" else np.int64)
        for c in frame.columns
    }
    train_rows = cols["split"] == "train"
    return (
        features,
        {k: v[train_rows] for k, v in cols.items()},
        {k: v[~train_rows] for k, v in cols.items()},
    )


def conditions(x: dict[str, Any]) -> dict[str, Any]:
    return {
        "none": TRUE,
        "hours kept or +5": Or(
            (
                Cmp("hours_per_week", "=", x["hours_per_week"]),
                Cmp("hours_per_week", ">=", x["hours_per_week"] + 5),
            )
        ),
        "workclass in set": Member(
            "workclass", frozenset({"Private", "Self-emp-inc", "Federal-gov"})
        ),
        "occupation forced": Member("occupation", frozenset({"Exec-managerial"})),
    }


def naive_nearest(
    model: Any, features: list[FeatureSpec], pool: Any, task: GenerationTask
) -> dict[str, np.ndarray]:
    ok = valid_mask(model, features, task, pool)
    rows = take(pool, np.flatnonzero(ok))
    d = distance(task.distance, task.instance, rows, features)
    return take(rows, np.argsort(d, kind="stable")[: task.n])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100, help="instances per model")
    parser.add_argument("--n", type=int, default=3, help="CFs per task")
    args = parser.parse_args()
    features, train_cols, test_cols = load()
    names = [f.name for f in features]
    pool = {k: test_cols[k] for k in names}
    domains = Domains(features)
    print(
        f"UCI Adult: {len(train_cols['age'])} training rows, pool of {len(pool['age'])} "
        f"test rows, {args.tasks} instances x 4 conditions per model, n = {args.n}"
    )
    for kind, params in (
        ("logistic_regression", {}),
        ("random_forest", {"n_estimators": 50, "max_depth": 8}),
    ):
        model = train(
            kind,
            params,
            features,
            {k: train_cols[k] for k in names},
            train_cols["GroundTruth"],
            name=kind,
        )
        labels = model.predict(pool)
        rng = np.random.default_rng(0)
        picks = rng.choice(np.flatnonzero(labels == "<=50K"), args.tasks, replace=False)
        tasks = []
        for i in picks:
            x = {k: pool[k][i].item() if hasattr(pool[k][i], "item") else pool[k][i] for k in names}
            for cname, cond in conditions(x).items():
                tasks.append(
                    (
                        cname,
                        GenerationTask(
                            instance=x,
                            original_label="<=50K",
                            target=None,
                            condition=normalize(cond, domains),
                            n=args.n,
                            seed=int(i),
                        ),
                    )
                )
        results: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        naive = [naive_nearest(model, features, pool, t) for _, t in tasks]
        results["naive nearest"] = {"seconds": time.perf_counter() - started, "out": naive}
        for name in GENERATORS.names():
            gen = GENERATORS.get(name)()
            started = time.perf_counter()
            gen.fit(model, features, pool)
            out = [gen.generate(t) for _, t in tasks]
            results[name] = {"seconds": time.perf_counter() - started, "out": out}
        base_time = results["naive nearest"]["seconds"]
        nearest_d = [
            _best(t, o, features)[0]
            for (_, t), o in zip(tasks, results["nearest"]["out"], strict=True)
        ]
        print(f"\n{kind}: {len(tasks)} tasks")
        print(
            f"{'generator':16} {'ms/task':>8} {'time ratio':>10} {'found':>6} "
            f"{'tabular':>8} {'L0':>5} {'dist/nearest':>12}"
        )
        for name, res in results.items():
            best = [_best(t, o, features) for (_, t), o in zip(tasks, res["out"], strict=True)]
            found = [b for b in best if b[0] is not None]
            both = [
                (b[0], nd) for b, nd in zip(best, nearest_d, strict=True) if b[0] is not None and nd
            ]
            ratio = np.mean([b / nd for b, nd in both]) if both else float("nan")
            print(
                f"{name:16} {res['seconds'] / len(tasks) * 1e3:8.2f} "
                f"{res['seconds'] / base_time:10.3f} {len(found) / len(tasks):6.0%} "
                f"{np.mean([b[0] for b in found]):8.3f} {np.mean([b[1] for b in found]):5.2f} "
                f"{ratio:12.3f}"
            )
        for cname in conditions(tasks[0][1].instance):
            row = []
            for name, res in results.items():
                hits = sum(
                    len(next(iter(o.values()))) > 0
                    for (c, _), o in zip(tasks, res["out"], strict=True)
                    if c == cname
                )
                row.append(f"{name}={hits / args.tasks:.0%}")
            print(f"  found, {cname:18} " + "  ".join(row))


def _best(
    task: GenerationTask, out: Any, features: list[FeatureSpec]
) -> tuple[float | None, float | None]:
    if not len(next(iter(out.values()))):
        return None, None
    d = distance("tabular", task.instance, out, features)
    i = int(np.argmin(d))
    return float(d[i]), float(distance("l0", task.instance, take(out, np.array([i])), features)[0])


if __name__ == "__main__":
    main()
