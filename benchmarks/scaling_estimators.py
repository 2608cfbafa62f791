"""The estimators of individualized scaling laws against the truth, and their two applications
(Covert, Ji, Hashimoto & Zou, "Scaling Laws for the Value of Individual Data Points in Machine
Learning", ICML 2024, sections 5 and 6), on UCI Bank Marketing (or ``--dataset compas``,
``adult``) with logistic regression.

Two grids over the same training set (log loss on ~1,100 test rows)::

    -- the budget: N points, M draws each, one uniform size in 50..500 per draw (the paper's
    -- sampling), every draw shared by all N points
    CREATE GRID budget ... SUBSETS MARGINAL M SIZES BETWEEN 50 AND 500 FOR (N ids) SHARED ...
    -- the truth: T of those points, MT draws at each of 5 sizes, other datasets (seed 1)
    CREATE GRID truth  ... SUBSETS MARGINAL MT SIZES BETWEEN 50 AND 500 GEOMETRIC 5
                           FOR (T ids) SHARED ... WITH (seed = 1)

Reported:

* **Validation** (the paper's Figure 6): for m = 10, 25, 50, 100 draws per point (each point's
  first m draws of the budget), the MLE (per point) and the amortized estimator (one network
  over all N points' features) predict ``ψ_k`` of the T truth points at the 5 sizes; R² of the
  predictions against the truth's per-size means across points and sizes, beside the truth's
  own noise ceiling (``1 − sampling variance of the truth means / their variance``).
* **Valuation** (section 6.1): the distributional Shapley value over sizes uniform in 50..500,
  approximated from the laws (``unit_scaling_valuation``), against the Monte-Carlo estimate
  from all M budget draws (``unit_scaling_dshap_mc``): Spearman rank correlation over the N
  points, beside the Monte-Carlo estimate from the same m draws.
* **Selection** (section 6.2): to a random dataset of size k (k = 50 and k = 400), add the n
  best candidates by ``ψ_k`` at that size (amortized, m = 25), by the distributional Shapley
  value (Monte Carlo, all M draws), or at random; test accuracy and log loss against n,
  averaged over random base datasets; a PNG of the accuracy curves.

    python benchmarks/scaling_estimators.py [--dataset bank] [--db file.duckdb] [--points 150]
        [--truth 25] [--draws 100] [--truth-draws 100] [--quick] [--png docs/scaling_selection.png]
        [--C 1.0] [--stratified] [--low 50] [--high 500] [--truth-sizes 5]

R² is printed pooled over points and sizes, and as the paper computes it (across points at
each size, averaged over the sizes: ``/size``), each beside the truth's noise ceiling of the
same kind. ``benchmarks/scaling_validation.py`` runs the paper's own protocol with enough
draws for a truth (its contributions computed outside the grid, exactly).

``--db`` keeps the grids in a file, so a second run skips the training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cfdb
from cfdb.scaling import amortized, estimators

TRAIN = "SELECT * FROM Instances WHERE split = 'train'"
#: Evaluation rows per dataset: about 1,100 test rows of Bank Marketing, all 1,227 of COMPAS.
EVALS = {
    "bank": "SELECT * FROM Instances WHERE split = 'test' AND hash(InstanceId) % 8 = 0",
    "compas": "SELECT * FROM Instances WHERE split = 'test'",
    "adult": "SELECT * FROM Instances WHERE split = 'test' AND hash(InstanceId) % 8 = 0",
}
LOW, HIGH, TRUTH_SIZES = 50, 500, 5
NAMES = {"bank": "Bank Marketing", "compas": "COMPAS", "adult": "UCI Adult"}


def build(
    db: cfdb.Database,
    points: int,
    truth: int,
    draws: int,
    truth_draws: int,
    evaluate: str,
    C: float = 1.0,
    stratified: bool = False,
) -> None:
    """Create and train the two grids (skipped when the file has them)."""
    have = {r[0] for r in db.sql("SELECT Name FROM Grids").fetchall()}
    ids = "SELECT InstanceId FROM Instances WHERE split = 'train' ORDER BY hash(InstanceId + 3)"
    model = f"MODEL logistic_regression WITH (tol = 1e-8, C = {C}) METRIC log_loss, accuracy"
    shared = "STRATIFIED SHARED" if stratified else "SHARED"
    if "budget" not in have:
        db.sql(
            f"CREATE GRID budget TRAIN ON ({TRAIN}) SUBSETS MARGINAL {draws} SIZES BETWEEN "
            f"{LOW} AND {HIGH} FOR ({ids} LIMIT {points}) {shared} EVALUATE ON ({evaluate}) {model}"
        )
    if "truth" not in have:
        db.sql(
            f"CREATE GRID truth TRAIN ON ({TRAIN}) SUBSETS MARGINAL {truth_draws} SIZES BETWEEN "
            f"{LOW} AND {HIGH} GEOMETRIC {TRUTH_SIZES} FOR ({ids} LIMIT {truth}) {shared} "
            f"EVALUATE ON ({evaluate}) {model} WITH (seed = 1)"
        )
    for grid in ("budget", "truth"):
        started = time.perf_counter()
        out = db.sql(f"MATERIALIZE GRID {grid} WITH (n_jobs = 2, progress = false)").df()
        trained = int(out["Trained"].iloc[0])
        if trained:
            seconds = time.perf_counter() - started
            print(f"trained {trained:,} cells of {grid} in {seconds:.0f} s")


def _contributions(db: cfdb.Database, grid: str) -> dict[str, np.ndarray]:
    frame = db.sql(
        "SELECT UnitIndex, Size, Draw, -Delta AS Delta FROM marginal_contributions(?) "
        "WHERE Kind = 'unit' AND Metric = 'log_loss' ORDER BY UnitIndex, Draw",
        params=[grid],
    ).df()
    return {c: frame[c].to_numpy() for c in frame.columns}


def _laws(method: str, x: np.ndarray, index: np.ndarray, data: dict[str, np.ndarray]) -> dict:
    """unit index -> law, for one estimator on the given samples."""
    if method == "mle":
        return dict(estimators.fit_units("mle", data["UnitIndex"], data["Size"], data["Delta"]))
    rows = np.searchsorted(index, data["UnitIndex"])
    fit = amortized.fit_amortized(x, rows, data["Size"], data["Delta"])
    return {int(u): law for u, law in zip(index, fit.laws, strict=True)}


def _value(law: estimators.UnitLaw | None, k: np.ndarray) -> np.ndarray:
    if law is None or law.status not in ("ok", "zero", "constant"):
        return np.zeros_like(k, dtype=float)
    return law.value(k)


def report(db: cfdb.Database, args: argparse.Namespace) -> None:
    from scipy.stats import spearmanr
    from threadpoolctl import threadpool_limits

    from cfdb.engine.handlers.scaling_features import unit_features
    from cfdb.store import grid as gstore

    budget = _contributions(db, "budget")
    truth = db.sql(
        "SELECT UnitIndex, Size, avg(-Delta) AS Psi, var_samp(Delta) / count(*) AS Noise "
        "FROM marginal_contributions('truth') WHERE Kind = 'unit' AND Metric = 'log_loss' "
        "GROUP BY ALL ORDER BY UnitIndex, Size"
    ).df()
    index = np.unique(budget["UnitIndex"])
    features = unit_features(db.session, gstore.require_grid(db.session.store, "budget"))
    x = features.x[index]
    psi, noise = truth["Psi"].to_numpy(), truth["Noise"].to_numpy()
    ceiling = 1 - noise.mean() / psi.var()
    by_size = truth["Size"].to_numpy()
    spread = {k: np.sum((psi[by_size == k] - psi[by_size == k].mean()) ** 2) for k in set(by_size)}
    # the paper's R² (scikit-learn's r2_score on points x sizes): across points at each size,
    # averaged over the sizes; and its ceiling the same way
    ceiling_size = np.mean([1 - noise[by_size == k].sum() / v for k, v in spread.items()])

    def r2_size(pred: np.ndarray) -> float:
        return float(
            np.mean([1 - np.sum((pred - psi)[by_size == k] ** 2) / v for k, v in spread.items()])
        )

    print(
        f"\n{NAMES[args.dataset]}, logistic regression, log loss: {len(index)} points with "
        f"{args.draws} draws each (sizes uniform in {LOW}..{HIGH}); truth: "
        f"{truth['UnitIndex'].nunique()} points x {TRUTH_SIZES} sizes x {args.truth_draws} draws"
    )
    print("\nValidation: R² of predicted ψ_k against the truth, across points and sizes")
    print(
        f"{'m':>5}{'MLE':>9}{'amortized':>11}{'MLE/size':>10}{'amort./size':>13}"
        f"{'MLE zero':>10}{'MLE bound':>11}{'seconds':>14}"
    )
    grid_k = np.arange(LOW, HIGH + 1, dtype=float)
    reference = np.array([budget["Delta"][budget["UnitIndex"] == u].mean() for u in index])
    valuation: dict[int, dict[str, float]] = {}
    fitted: dict[tuple[str, int], dict] = {}
    for m in (10, 25, 50, 100):
        if m > args.draws:
            continue
        part = {c: v[budget["Draw"] < m] for c, v in budget.items()}
        row, secs = {}, []
        for method in ("mle", "amortized"):
            started = time.perf_counter()
            with threadpool_limits(1):
                laws = _laws(method, x, index, part)
            secs.append(time.perf_counter() - started)
            fitted[(method, m)] = laws
            pred = np.array(
                [
                    _value(laws.get(int(u)), np.array([float(s)]))[0]
                    for u, s in zip(truth["UnitIndex"], truth["Size"], strict=True)
                ]
            )
            row[method] = 1 - np.sum((pred - psi) ** 2) / np.sum((psi - psi.mean()) ** 2)
            row[method + "/size"] = r2_size(pred)
            dshap = np.array([_value(laws.get(int(u)), grid_k).mean() for u in index])
            valuation.setdefault(m, {})[method] = spearmanr(dshap, reference).statistic
        mc = np.array([part["Delta"][part["UnitIndex"] == u].mean() for u in index])
        valuation[m]["mc"] = spearmanr(mc, reference).statistic
        mle = fitted[("mle", m)]
        zero = sum(law.status == "zero" for law in mle.values())
        bound = sum(law.at_bound for law in mle.values() if law.status == "ok")
        print(
            f"{m:>5}{row['mle']:>9.3f}{row['amortized']:>11.3f}{row['mle/size']:>10.3f}"
            f"{row['amortized/size']:>13.3f}{zero:>10}{bound:>11}"
            f"{secs[0]:>7.1f}/{secs[1]:<6.1f}"
        )
    print(
        f"{'ceiling':>5}{ceiling:>9.3f}{'':>11}{ceiling_size:>10.3f}  (the truth's own sampling noise)"
    )

    print(
        f"\nValuation: Spearman of the distributional Shapley value (sizes {LOW}..{HIGH}) "
        f"against the Monte-Carlo estimate from all {args.draws} draws"
    )
    print(f"{'m':>5}{'MLE law':>9}{'amortized law':>15}{'MC from m':>11}")
    for m, v in valuation.items():
        print(f"{m:>5}{v['mle']:>9.3f}{v['amortized']:>15.3f}{v['mc']:>11.3f}")
    selection(db, args, index, fitted, reference)


def selection(
    db: cfdb.Database,
    args: argparse.Namespace,
    index: np.ndarray,
    fitted: dict,
    dshap: np.ndarray,
) -> None:
    """Add the n best candidates to random datasets of size k; accuracy and log loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from threadpoolctl import threadpool_limits

    from cfdb.engine.handlers.grid_data import _prepare
    from cfdb.models import Featurizer
    from cfdb.store import grid as gstore

    prepared = _prepare(db.session, gstore.require_grid(db.session.store, "budget"))
    data = prepared.data
    featurizer = Featurizer(data.features, encoding="onehot", scale=True).fit(data.train)
    x_all, y_all = featurizer.transform(data.train), np.asarray(data.train_y)
    x_eval, y_eval = featurizer.transform(data.eval), np.asarray(data.eval_y)
    row_of = np.array([int(r[0]) for r in prepared.units.rows])  # unit index -> training row
    candidates = row_of[index]
    pool = np.setdiff1d(np.arange(len(y_all)), candidates)
    m_sel = 25 if args.draws >= 25 else args.draws
    m_mle = max(m for method, m in fitted if method == "mle")  # the largest budget fitted
    steps = [0, 5, 10, 20, 40, 80]
    steps = [n for n in steps if n <= len(index)]
    rng = np.random.default_rng(0)
    curves: dict[int, dict[str, np.ndarray]] = {}
    for k in (50, 400):
        rankings = {
            f"ψ_k at k = {k} (amortized, m = {m_sel})": np.array(
                [
                    -_value(fitted[("amortized", m_sel)].get(int(u)), np.array([float(k)]))[0]
                    for u in index
                ]
            ),
            f"ψ_k at k = {k} (MLE, m = {m_mle})": np.array(
                [
                    -_value(fitted[("mle", m_mle)].get(int(u)), np.array([float(k)]))[0]
                    for u in index
                ]
            ),
            "distributional Shapley (Monte Carlo)": -dshap,
        }
        acc = {name: np.zeros(len(steps)) for name in [*rankings, "random"]}
        loss = {name: np.zeros(len(steps)) for name in acc}
        bases = 8
        with threadpool_limits(1):
            for _ in range(bases):
                base = rng.choice(pool, size=k, replace=False)
                while len(np.unique(y_all[base])) < 2:  # a tiny base may miss a class
                    base = rng.choice(pool, size=k, replace=False)
                orders = {
                    name: candidates[np.argsort(score, kind="stable")]
                    for name, score in rankings.items()
                }
                randoms = [rng.permutation(candidates) for _ in range(3)]
                for i, n in enumerate(steps):
                    for name, order in [*orders.items(), *(("random", r) for r in randoms)]:
                        rows = np.concatenate([base, order[:n]])
                        model = LogisticRegression(max_iter=1000, tol=1e-8)
                        model.fit(x_all[rows], y_all[rows])
                        share = 1 / bases / (3 if name == "random" else 1)
                        acc[name][i] += share * accuracy_score(y_eval, model.predict(x_eval))
                        loss[name][i] += share * log_loss(
                            y_eval, model.predict_proba(x_eval), labels=[0, 1]
                        )
        curves[k] = acc
        print(f"\nSelection: add n candidates to a random dataset of {k} rows ({bases} datasets)")
        print(f"{'ranking':<44}" + "".join(f"{'n=' + str(n):>15}" for n in steps))
        for name in acc:
            cells = "".join(f"{a:>8.4f}/{l_:<6.3f}" for a, l_ in zip(acc[name], loss[name]))
            print(f"{name:<44}{cells}")
        print("(each cell: test accuracy / test log loss)")
    if args.png:
        _plot(curves, steps, args.png, NAMES[args.dataset])
        print(f"\nfigure: {args.png}")


def _plot(curves: dict[int, dict[str, np.ndarray]], steps: list[int], path: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4))
    for ax, (k, acc) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for name, values in acc.items():
            ax.plot(steps, values, marker="o", label=name)
        ax.set_title(f"adding points to {k} random rows ({name})")
        ax.set_xlabel("points added")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    global LOW, HIGH, TRUTH_SIZES  # the sizes every part of the run uses (set from the options)
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default=":memory:")
    parser.add_argument("--points", type=int, default=150)
    parser.add_argument("--truth", type=int, default=25)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--truth-draws", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="40 points, 10 truth, 30 draws")
    parser.add_argument("--png", default=None, help="the selection figure")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--dataset", default="bank", choices=sorted(EVALS))
    parser.add_argument("--low", type=int, default=LOW, help="smallest dataset size")
    parser.add_argument("--high", type=int, default=HIGH, help="largest dataset size")
    parser.add_argument("--truth-sizes", type=int, default=TRUTH_SIZES, help="geometric sizes")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the model")
    parser.add_argument(
        "--stratified", action="store_true", help="D in the pool's class shares (the paper's)"
    )
    args = parser.parse_args()
    if args.quick:
        args.points, args.truth, args.draws, args.truth_draws = 40, 10, 30, 30
    LOW, HIGH, TRUTH_SIZES = args.low, args.high, args.truth_sizes
    wall = time.perf_counter()
    db = cfdb.connect(args.db)
    if not db.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'Instances'").fetchall()[
        0
    ][0]:
        db.sql(f"LOAD DATASET {args.dataset}")
    build(
        db,
        args.points,
        args.truth,
        args.draws,
        args.truth_draws,
        EVALS[args.dataset],
        args.C,
        args.stratified,
    )
    if args.build_only:
        return
    report(db, args)
    print(f"\nwall time {(time.perf_counter() - wall) / 60:.1f} min")


if __name__ == "__main__":
    main()
