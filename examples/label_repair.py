"""Label repair guided by data values (DataScope, section 6), on UCI Adult, in SQL.

A share of the training labels is flipped. Each method ranks the training tuples, the
labels are examined and repaired in that order (most harmful first) in batches, and after
each batch a logistic regression is retrained and scored on a held-out test set (accuracy
and equalized-odds difference across ``sex``). Methods:

* ``random`` — examine in random order;
* ``knn`` — ``VALUATE ... USING knn_shapley`` once, then ascending value;
* ``knn_interactive`` — ``VALUATE`` again after every batch, on the partly repaired data;
* ``tmc`` — TMC-Shapley of the real model from a grid:
  ``CREATE GRID ... SUBSETS PERMUTATIONS m TRUNCATE t`` and ``grid_data_values``.

Each ``VALUATE`` (and the TMC grid) runs on the executor of ``--executor`` (``local``,
``process`` or ``ray`` with ``--address``): the values, hence the repair order and the curves,
are the same on every executor.

Run::

    python examples/label_repair.py --out label_repair.png
    python examples/label_repair.py --executor ray --address auto --n-jobs 8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

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
NUMERIC = ["age", "hours_per_week"]


@dataclass
class Curve:
    """Test metrics after each batch of examined labels."""

    method: str
    examined: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    eq_odds: list[float] = field(default_factory=list)
    found: list[float] = field(default_factory=list)  # share of the flipped labels repaired
    value_seconds: float = 0.0
    values: list[tuple[float, ...]] = field(default_factory=list)  # per valuation, by tuple id


def build(
    db: cfdb.Database, n_train: int, n_valid: int, n_test: int, flip: float, seed: int
) -> None:
    """Tables ``train`` (with ``truth`` and a noisy ``label``), ``valid`` and ``test``."""
    db.sql("LOAD DATASET adult")
    cols = ", ".join(FEATURES)
    db.sql(
        f"CREATE OR REPLACE TABLE pool AS SELECT InstanceId AS id, {cols}, "
        f"(GroundTruth = '>50K') AS truth, split, hash(InstanceId + {seed}) AS h FROM Instances"
    )
    db.sql(
        "CREATE OR REPLACE TABLE train (id BIGINT PRIMARY KEY, age BIGINT, workclass VARCHAR, "
        "education VARCHAR, marital_status VARCHAR, occupation VARCHAR, race VARCHAR, "
        "sex VARCHAR, hours_per_week BIGINT, truth BOOLEAN, label BOOLEAN)"
    )
    db.sql(
        f"INSERT INTO train SELECT id, {cols}, truth, "
        f"CASE WHEN (h >> 7) % 1000 < {int(flip * 1000)} THEN NOT truth ELSE truth END "
        f"FROM pool WHERE split = 'train' ORDER BY h LIMIT {n_train}"
    )
    db.sql(
        f"CREATE OR REPLACE TABLE valid AS SELECT {cols}, truth AS label FROM pool "
        f"WHERE split = 'train' ORDER BY h DESC LIMIT {n_valid}"
    )
    db.sql(
        f"CREATE OR REPLACE TABLE test AS SELECT {cols}, truth AS label FROM pool "
        f"WHERE split = 'test' ORDER BY h LIMIT {n_test}"
    )


def score(db: cfdb.Database) -> tuple[float, float]:
    """Test accuracy and equalized-odds difference of a logistic regression on ``train``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = db.sql("SELECT * FROM train ORDER BY id").df()
    test = db.sql("SELECT * FROM test").df()
    categorical = [f for f in FEATURES if f not in NUMERIC]
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(train[FEATURES], train["label"].astype(bool))
    pred = model.predict(test[FEATURES]).astype(bool)
    truth = test["label"].to_numpy(bool)
    accuracy = float(np.mean(pred == truth))
    gaps = []
    for positive in (True, False):  # TPR and FPR differences across sex
        rates = [
            pred[(truth == positive) & (test["sex"] == s).to_numpy()].mean()
            for s in sorted(test["sex"].unique())
        ]
        gaps.append(max(rates) - min(rates))
    return accuracy, float(max(gaps))


def where(args: argparse.Namespace) -> dict[str, object]:
    """The executor options of every VALUATE and grid (``--executor``, ``--n-jobs``,
    ``--address``)."""
    out: dict[str, object] = {"executor": args.executor}
    if args.n_jobs is not None:
        out["n_jobs"] = args.n_jobs
    if args.address:
        out["address"] = args.address
    return out


def knn_order(
    db: cfdb.Database,
    k: int,
    utility: str,
    exclude: set[int],
    options: dict[str, object] | None = None,
    curve: Curve | None = None,
) -> list[int]:
    """Training ids by ascending KNN-Shapley value (most harmful first); the values are
    appended to ``curve.values``."""
    db.valuate(
        "SELECT id, " + ", ".join(FEATURES) + ", label FROM train",
        "SELECT * FROM valid",
        k=k,
        label="label",
        utility=utility,
        **({"sensitive": "sex", "positive": True} if utility == "equalized_odds" else {}),
        **(options or {}),
    )
    run = db.sql(
        "SELECT max(RunId), any_value(HigherIsBetter) FROM ValuationRuns "
        "WHERE RunId = (SELECT max(RunId) FROM ValuationRuns)"
    ).fetchall()[0]
    direction = "ASC" if run[1] else "DESC"
    ids = db.sql(
        f"SELECT TupleId FROM DataValues WHERE RunId = {run[0]} ORDER BY Value {direction}, TupleId"
    ).fetchall()
    if curve is not None:
        values = db.sql(f"SELECT Value FROM DataValues WHERE RunId = {run[0]} ORDER BY TupleId")
        curve.values.append(tuple(v for (v,) in values.fetchall()))
    return [i for (i,) in ids if i not in exclude]


def tmc_order(
    db: cfdb.Database, permutations: int, truncate: float, options: str = ""
) -> list[int]:
    """Training ids by ascending TMC-Shapley value of the real model (a grid)."""
    cols = ", ".join(FEATURES)
    db.sql("DROP GRID IF EXISTS tmc")
    db.sql(
        f"CREATE GRID tmc TRAIN ON (SELECT id, {cols}, label FROM train) "
        f"SUBSETS PERMUTATIONS {permutations} TRUNCATE {truncate} "
        f"EVALUATE ON (SELECT * FROM valid) MODEL logistic_regression WITH (max_iter = 500) "
        f"METRIC accuracy WITH (label = 'label', key = 'id')"
    )
    db.sql(f"MATERIALIZE GRID tmc{options}")
    rows = db.sql(
        "SELECT TupleId, Value FROM grid_data_values('tmc') "
        "WHERE Slice = 'all' AND Metric = 'accuracy'"
    ).fetchall()
    values = dict(rows)
    ids = [i for (i,) in db.sql("SELECT id FROM train ORDER BY id").fetchall()]
    return sorted(ids, key=lambda i: (values.get(i, 0.0), i))


def repair(db: cfdb.Database, method: str, args: argparse.Namespace) -> Curve:
    """Examine labels in the method's order, a batch at a time; score after each batch."""
    ids = [i for (i,) in db.sql("SELECT id FROM train ORDER BY id").fetchall()]
    batch = max(1, int(len(ids) * args.step))
    curve = Curve(method)
    started = time.perf_counter()
    if method == "random":
        order = list(np.random.default_rng(args.seed).permutation(ids))
    elif method == "knn":
        order = knn_order(db, args.k, args.utility, set(), where(args), curve)
    elif method == "tmc":
        opts = ", ".join(f"{k} = {v!r}" for k, v in where(args).items())
        order = tmc_order(db, args.tmc_permutations, args.tmc_truncate, f" WITH ({opts})")
    else:
        order = []
    curve.value_seconds = time.perf_counter() - started
    examined: set[int] = set()
    flipped = {i for (i,) in db.sql("SELECT id FROM train WHERE label <> truth").fetchall()}
    acc, gap = score(db)
    curve.examined.append(0.0)
    curve.accuracy.append(acc)
    curve.eq_odds.append(gap)
    curve.found.append(0.0)
    while len(examined) < len(ids):
        if method == "knn_interactive":
            t = time.perf_counter()
            order = knn_order(db, args.k, args.utility, examined, where(args), curve)
            curve.value_seconds += time.perf_counter() - t
        todo = [i for i in order if i not in examined][:batch]
        examined.update(int(i) for i in todo)
        db.sql(
            "UPDATE train SET label = truth WHERE id IN ("
            + ", ".join(str(int(i)) for i in todo)
            + ")"
        )
        acc, gap = score(db)
        curve.examined.append(len(examined) / len(ids))
        curve.accuracy.append(acc)
        curve.eq_odds.append(gap)
        curve.found.append(len(examined & flipped) / max(1, len(flipped)))
    return curve


def run(args: argparse.Namespace) -> list[Curve]:
    curves = []
    for method in args.methods.split(","):
        db = cfdb.connect()
        build(db, args.train, args.valid, args.test, args.flip, args.seed)
        curves.append(repair(db, method, args))
        db.close()
    return curves


def plot(curves_by_seed: list[list[Curve]], path: str, title: str) -> None:
    """Median curves over seeds: test accuracy and equalized-odds difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m, first in enumerate(curves_by_seed[0]):
        x = np.array(first.examined) * 100
        acc = np.median([c[m].accuracy for c in curves_by_seed], axis=0)
        gap = np.median([c[m].eq_odds for c in curves_by_seed], axis=0)
        secs = np.median([c[m].value_seconds for c in curves_by_seed])
        label = f"{first.method} ({secs:.1f} s valuing)"
        axes[0].plot(x, acc, label=label)
        axes[1].plot(x, gap, label=label)
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("equalized-odds difference (sex)")
    for ax in axes:
        ax.set_xlabel("labels examined (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The whole description as written, and every option's default."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    p.add_argument("--train", type=int, default=300, help="training rows (Adult's train split)")
    p.add_argument("--valid", type=int, default=200, help="validation rows VALUATE scores on")
    p.add_argument("--test", type=int, default=1000, help="held-out rows the model is scored on")
    p.add_argument("--flip", type=float, default=0.3, help="share of training labels flipped")
    p.add_argument("--step", type=float, default=0.1, help="share of rows examined per batch")
    p.add_argument("--k", type=int, default=10, help="K of the KNN-Shapley proxy")
    p.add_argument(
        "--utility", default="accuracy", help="VALUATE utility (accuracy, fnr, equalized_odds, ...)"
    )
    p.add_argument(
        "--methods", default="random,knn,knn_interactive,tmc", help="comma-separated methods"
    )
    p.add_argument("--tmc-permutations", type=int, default=5, help="permutations of TMC-Shapley")
    p.add_argument("--tmc-truncate", type=float, default=0.02, help="TMC truncation tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of the label flips and orders")
    p.add_argument(
        "--executor", default="local", help="where VALUATE and the grid run: local, process, ray"
    )
    p.add_argument("--address", default=None, help="the Ray cluster (e.g. auto, host:6379)")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel workers of the executor")
    p.add_argument("--out", default="label_repair.png", help="PNG file of the repair curves")
    return p


def main() -> None:
    args = parser().parse_args()
    curves = run(args)
    print(
        f"{'method':16s} {'valuing s':>9s}  test accuracy at 0/20/50/100% examined  "
        "flipped labels found at 20/50%"
    )
    for c in curves:
        at = [round(f * (len(c.accuracy) - 1)) for f in (0, 0.2, 0.5, 1)]
        print(
            f"{c.method:16s} {c.value_seconds:9.1f}  "
            + "  ".join(f"{c.accuracy[i]:.3f}" for i in at)
            + f"  {c.found[at[1]]:.0%} {c.found[at[2]]:.0%}"
        )
    plot(
        [curves],
        args.out,
        f"Label repair on UCI Adult ({args.train} rows, "
        f"{args.flip:.0%} flipped, utility {args.utility})",
    )
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
