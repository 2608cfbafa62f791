"""Individualized data scaling laws on UCI Adult with logistic regression (Covert, Ji, Hashimoto
& Zou, "Scaling Laws for the Value of Individual Data Points in Machine Learning", ICML 2024).

The paper's validation (its Figure 1, IMDB with logistic regression) on Adult: 200 training
points, datasets of the ten sizes ``geomspace(100, 1000, 10)`` drawn from the rest of the
training set, ``m`` draws at each size, every draw trained with and without each point::

    CREATE GRID adult_laws TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
      SUBSETS MARGINAL m SIZES BETWEEN 100 AND 1000 GEOMETRIC 10 FOR (200 training ids) SHARED
      EVALUATE ON (2,000 test rows) MODEL logistic_regression WITH (tol = 1e-8) METRIC log_loss;

``SHARED`` lets one dataset per draw serve all 200 points: ``m·10·201`` cells instead of
``m·10·400``. The solver's tolerance is tightened from scikit-learn's ``1e-4``: at ``k = 1000``
a point moves the log loss by ~1e-4, and the default stopping rule adds noise of that order.

Reported:

* **wall time**: the first half of the grid's cells with the local executor (2 worker
  processes), the second half with Ray (2 CPUs), as cells per second and as a ratio against
  the baseline, scikit-learn called directly in a loop (one process) on the grid's first
  subsets, measured in the same run;
* **R²** of ``c·k^(−α)`` against the measured ``ψ_k`` across points, overall and at each
  size, for the log-linear (OLS) and maximum-likelihood fits, beside the **noise ceiling**:
  ``1 − (sampling variance of the measured means) / (their variance across points)``, the
  best R² any law can reach against means of ``m`` draws;
* the **distribution of α** (points whose log-space fit has R² ≥ 0.8, as the paper's Figure 4);
* the MLE from few draws (one per size) against the OLS from all of them;
* subset selection: overlap of the top 20 points at ``k = 100`` and at ``k = 1000``.

PNG figures (curves, α histogram, R² per size) go to ``--out``.

    python benchmarks/individual_scaling_laws.py [--draws 12] [--units 200] [--no-ray] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import cfdb
from cfdb.scaling import estimators

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
TRAIN = "SELECT * FROM Instances WHERE split = 'train'"
EVAL = "SELECT * FROM Instances WHERE split = 'test' ORDER BY hash(InstanceId) LIMIT 2000"


def baseline(db: cfdb.Database, grid: str, n: int, subsets: int) -> tuple[int, float]:
    """Seconds per cell of scikit-learn called directly on ``n`` of the grid's subsets, evenly
    spread over its ``subsets`` (hence over its sizes)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from threadpoolctl import threadpool_limits

    train = db.sql(f"{TRAIN} ORDER BY InstanceId").df()
    test = db.sql(EVAL).df()
    both = pd.get_dummies(pd.concat([train[FEATURES], test[FEATURES]]), dtype=float)
    numeric = [both.columns.get_loc(c) for c in ("age", "hours_per_week")]
    x_all = both.to_numpy()
    x_train, x_test = x_all[: len(train)], x_all[len(train) :]
    y_train = (train["GroundTruth"] == ">50K").to_numpy().astype(int)
    y_test = (test["GroundTruth"] == ">50K").to_numpy().astype(int)
    row_of = {str(i): r for r, i in enumerate(train["InstanceId"])}
    members = db.sql(
        f"SELECT m.SubsetId, list(u.UnitId) FROM grid_members('{grid}') m "
        f"JOIN GridUnits u ON u.Grid = '{grid}' AND u.UnitIndex = m.UnitIndex "
        f"WHERE m.SubsetId % {max(1, subsets // n)} = 0 GROUP BY 1 ORDER BY 1"
    ).fetchall()
    started = time.perf_counter()
    with threadpool_limits(1):
        for _, units in members:
            rows = np.array([row_of[u] for u in units])
            x, y = x_train[rows].copy(), y_train[rows]
            mean, std = x[:, numeric].mean(axis=0), x[:, numeric].std(axis=0)
            std[std == 0] = 1
            x[:, numeric] = (x[:, numeric] - mean) / std
            xt = x_test.copy()
            xt[:, numeric] = (xt[:, numeric] - mean) / std
            model = LogisticRegression(max_iter=1000, tol=1e-8).fit(x, y)
            log_loss(y_test, model.predict_proba(xt), labels=[0, 1])
    return len(members), time.perf_counter() - started


def materialize(
    db: cfdb.Database, grid: str, executor: str, limit: int | None
) -> tuple[int, float]:
    tail = f" LIMIT {limit}" if limit is not None else ""
    started = time.perf_counter()
    out = db.sql(
        f"MATERIALIZE GRID {grid}{tail} WITH (executor = '{executor}', n_jobs = 2, progress = false)"
    ).df()
    seconds = time.perf_counter() - started
    assert out["Failed"].iloc[0] == 0, out
    return int(out["Trained"].iloc[0]), seconds


def noise_ceiling(check) -> tuple[dict[int, float], float]:
    """1 − sampling variance of the measured means / their variance across points."""
    noise = check["StdDev"].fillna(0) ** 2 / check["Samples"]
    per = {}
    for size, part in check.groupby("Size"):
        per[int(size)] = 1 - noise[part.index].mean() / part["Measured"].var(ddof=0)
    return per, 1 - noise.mean() / check["Measured"].var(ddof=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--draws", type=int, default=12, help="draws per size (m)")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20 points, 2 draws per size")
    parser.add_argument("--out", default=None, help="folder for the PNG figures")
    args = parser.parse_args()
    if args.quick:
        args.units, args.draws = 20, 2
    out_dir = args.out or tempfile.mkdtemp(prefix="scaling_laws_")
    os.makedirs(out_dir, exist_ok=True)
    wall = time.perf_counter()

    db = cfdb.connect()
    db.sql("LOAD DATASET adult")
    targets = (
        f"SELECT InstanceId FROM Instances WHERE split = 'train' "
        f"ORDER BY hash(InstanceId + 7) LIMIT {args.units}"
    )
    started = time.perf_counter()
    created = db.sql(
        f"CREATE GRID adult_laws TRAIN ON ({TRAIN}) "
        f"SUBSETS MARGINAL {args.draws} SIZES BETWEEN 100 AND 1000 GEOMETRIC 10 "
        f"FOR ({targets}) SHARED EVALUATE ON ({EVAL}) "
        "MODEL logistic_regression WITH (tol = 1e-8) METRIC log_loss WITH (lazy = false)"
    ).df()
    create_s = time.perf_counter() - started
    subsets = int(created["Subsets"].iloc[0])
    print(
        f"grid: {args.units} points, 10 sizes, {args.draws} draws per size, SHARED: "
        f"{subsets:,} cells, {int(created['Pairs'].iloc[0]):,} pairs (created in {create_s:.1f} s)"
    )

    n_base, base_s = baseline(db, "adult_laws", min(100, subsets), subsets)
    base = base_s / n_base
    half = subsets // 2 if not args.no_ray else None
    trained_local, local_s = materialize(db, "adult_laws", "local", half)
    runs = [("sklearn loop (1 process)", n_base, base_s, 1 / base)]
    runs.append(("cfdb local, 2 workers", trained_local, local_s, trained_local / local_s))
    if not args.no_ray:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t
        trained_ray, ray_s = materialize(db, "adult_laws", "ray", None)
        runs.append(("cfdb ray, 2 CPUs", trained_ray, ray_s, trained_ray / ray_s))
    print(f"\n{'run':<28}{'cells':>8}{'seconds':>10}{'cells/s':>10}{'vs loop':>9}{'full grid':>11}")
    for label, cells, seconds, rate in runs:
        full = subsets / rate
        print(
            f"{label:<28}{cells:>8}{seconds:>10.1f}{rate:>10.1f}{rate * base:>9.2f}"
            f"{full / 60:>9.1f} m"
        )
    if not args.no_ray:
        print(f"(Ray's start-up, {ray_start:.1f} s, is not in its row)")

    started = time.perf_counter()
    db.sql("FIT SCALING LAWS FOR GRID adult_laws")
    print(
        f"\nFIT SCALING LAWS (OLS and MLE, {args.units} points): {time.perf_counter() - started:.2f} s"
    )

    check = db.sql("SELECT * FROM unit_scaling_check('adult_laws', fit_method := 'ols')").df()
    ceiling, ceiling_all = noise_ceiling(check)
    r2 = {
        m: db.sql(f"SELECT Size, R2 FROM unit_scaling_r2('adult_laws', fit_method := '{m}')").df()
        for m in ("ols", "mle")
    }

    def r2_at(method: str, size: int | None) -> float:
        frame = r2[method]
        rows = frame[frame["Size"].isna()] if size is None else frame[frame["Size"] == size]
        return float(rows["R2"].iloc[0])

    print("\nR² of c·k^(−α) against measured ψ_k across points (paper, IMDB: 0.987 overall)")
    print(f"{'size':>8}{'OLS':>9}{'MLE':>9}{'ceiling':>9}")
    for size in sorted(ceiling):
        print(f"{size:>8}{r2_at('ols', size):>9.3f}{r2_at('mle', size):>9.3f}{ceiling[size]:>9.3f}")
    print(f"{'overall':>8}{r2_at('ols', None):>9.3f}{r2_at('mle', None):>9.3f}{ceiling_all:>9.3f}")

    laws = db.sql("SELECT * FROM unit_scaling_laws('adult_laws', fit_method := 'ols')").df()
    ok = laws[(laws["Status"] == "ok")]
    good = ok[ok["R2"] >= 0.8]
    alphas = good["Alpha"].to_numpy()
    print(
        f"\nα of the {len(good)} of {len(ok)} points whose log-space fit has R² ≥ 0.8 "
        f"(median log-space R² of all: {ok['R2'].median():.2f}); paper: mode in [1, 1.5]"
    )
    if len(alphas):
        q = np.quantile(alphas, [0.1, 0.25, 0.5, 0.75, 0.9])
        counts, edges = np.histogram(alphas, bins=np.arange(-0.5, 3.01, 0.5))
        mode = int(np.argmax(counts))
        print(f"  quantiles 10/25/50/75/90%: {' '.join(f'{v:.2f}' for v in q)}")
        print(
            "  histogram: "
            + "  ".join(f"[{edges[i]:.1f},{edges[i + 1]:.1f}): {c}" for i, c in enumerate(counts))
        )
        print(
            f"  mode bin: [{edges[mode]:.1f}, {edges[mode + 1]:.1f}); in [1, 1.5]: {np.mean((alphas >= 1) & (alphas < 1.5)):.0%}"
        )
    print(f"  share of all points with a negative c: {np.mean(ok['C'] < 0):.0%}")

    # The MLE from one draw per size (10 samples a point) against the OLS from all the draws:
    # how far a per-point estimate gets with few samples, the regime the paper's amortized
    # estimator targets.
    data = db.sql(
        "SELECT mc.UnitIndex, mc.Size, mc.Draw, -mc.Delta AS Delta "
        "FROM marginal_contributions('adult_laws') mc"
    ).df()
    first = data[data["Draw"] % args.draws == 0] if args.draws > 1 else data
    few = dict(estimators.fit_units("mle", first["UnitIndex"], first["Size"], first["Delta"]))
    full_mle = dict(estimators.fit_units("mle", data["UnitIndex"], data["Size"], data["Delta"]))
    units = sorted(set(few) & set(full_mle))
    a_few = np.array([few[u].alpha for u in units])
    a_all = np.array([full_mle[u].alpha for u in units])
    keep = np.isfinite(a_few) & np.isfinite(a_all)
    print(
        f"\nMLE α from 1 draw per size vs from all {args.draws}: correlation "
        f"{np.corrcoef(a_few[keep], a_all[keep])[0, 1]:.2f}, median |difference| "
        f"{np.median(np.abs(a_few[keep] - a_all[keep])):.2f}"
    )

    # The amortized estimator predicts a point's law from its features; it can only beat the
    # per-point fits if the features predict α. Cross-validated R² of a random forest from
    # (features, label) to the well-fitted points' α:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import cross_val_score

    rows = db.sql(
        "SELECT i.*, l.Alpha FROM unit_scaling_laws('adult_laws', fit_method := 'ols') l "
        "JOIN Instances i ON CAST(i.InstanceId AS VARCHAR) = l.UnitId "
        "WHERE l.Status = 'ok' AND l.R2 >= 0.8"
    ).df()
    if len(rows) >= 10:
        import pandas as pd

        x = pd.get_dummies(rows[[*FEATURES, "GroundTruth"]], dtype=float).to_numpy()
        cv = cross_val_score(
            RandomForestRegressor(n_estimators=200, min_samples_leaf=3, random_state=0),
            x,
            rows["Alpha"].to_numpy(),
            cv=5,
            scoring="r2",
        )
        print(
            f"α predicted from a point's features and label ({len(rows)} points, 5-fold): "
            f"R² {cv.mean():.2f} ± {cv.std():.2f}"
        )

    overlap = db.sql(
        "SELECT Overlap, Jaccard, RankCorrelation FROM "
        "unit_scaling_selection_overlap('adult_laws', 100, 1000, 20)"
    ).fetchall()[0]
    print(
        f"top 20 points to add at k = 100 vs k = 1000 (MLE): {overlap[0]} in common, "
        f"rank correlation {overlap[2]:.2f}"
    )

    for figure in ("curves", "alpha", "r2"):
        db.sql(
            f"PLOT SCALING LAWS FOR GRID adult_laws {figure.upper()} TO "
            f"'{os.path.join(out_dir, figure + '.png')}' WITH (method = 'ols'"
            + (", min_r2 = 0.8)" if figure == "alpha" else ")")
        )
    print(f"\nfigures: {out_dir}/{{curves,alpha,r2}}.png")
    print(f"benchmark wall time: {(time.perf_counter() - wall) / 60:.1f} min")
    db.close()


if __name__ == "__main__":
    main()
