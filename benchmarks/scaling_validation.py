"""The paper's validation of individualized scaling laws, with enough draws to have a truth.

Covert, Ji, Hashimoto & Zou, "Scaling Laws for the Value of Individual Data Points in Machine
Learning" (ICML 2024), Figure 1 and section 5. Their published code fixes the protocol:

* ``D`` of size ``k`` is drawn **stratified by class** (class shares of the training set);
  the metric is the log loss on held-out rows; the model is scikit-learn's
  ``LogisticRegression`` on features prepared once;
* the truth: ``ψ_k`` of validation points as the mean of **1,000 draws per size** (5,000 for
  Figure 1) at 10 sizes ``geomspace(100, 1000)``;
* their R² is scikit-learn's ``r2_score`` on the (points x sizes) arrays, i.e. the R² across
  points **at each size, averaged over the sizes** (not pooled over sizes); Figure 1's 0.987
  is the log-space trend line fitted to those same 5,000-draw means (in sample);
* the estimators see budget draws at sizes uniform in ``100..1000``: the MLE with 50, 100 and
  500 draws per point, the amortized network with 10, 20 and 30.

Training a grid cell through cfdb costs about 75 ms here (two busy cores), so a truth of
1,000 draws per size is out of reach through grids (50 points x 10 sizes x 1,000 draws is
0.5 M cells). This script computes the same contributions exactly and fast: ``D``'s model is
fitted by Newton's method, and each ``D ∪ {z}`` is refitted from ``D``'s optimum with the
chord method (``D``'s Hessian plus ``z``'s rank-one term, Sherman-Morrison) until a step
is below 1e-10 — the same optimum scikit-learn reaches, checked against it on a few draws at
the start of every run (the largest difference of a contribution is printed). It then fits
cfdb's MLE (``estimators.fit_units``) and amortized estimator (``amortized.fit_amortized``) on
the budget and prints, per budget ``m``, the R² against the truth next to the truth's own
noise ceiling (``1 − sampling variance of the truth means / their variance`` per size,
averaged like the R²), so that what is estimator error and what is noise in the truth can be
told apart. Features are one-hot encoded and standardized once on all training rows, as in
the paper (a grid standardizes per cell). Results: docs/scaling_laws.md, "Validation as in
the paper". ::

    python benchmarks/scaling_validation.py [--dataset bank] [--points 200] [--truth 50]
        [--truth-draws 1000] [--draws 100] [--mle-draws 500] [--C 1.0] [--sampling stratified|uniform]
        [--low 100] [--high 1000] [--sizes 10] [--eval all|eighth] [--metric log_loss|accuracy] [--margin]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

import cfdb
from cfdb.scaling import amortized, estimators

EVALS = {
    "all": "SELECT * FROM Instances WHERE split = 'test'",
    "eighth": "SELECT * FROM Instances WHERE split = 'test' AND hash(InstanceId) % 8 = 0",
}


# ----------------------------------------------------------------------------- data


def load(dataset: str, evaluate: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and evaluation rows of a bundled dataset, one-hot and scaled on all of train."""
    from cfdb.engine.handlers.grid_data import _prepare
    from cfdb.models import Featurizer
    from cfdb.store import grid as gstore

    db = cfdb.connect()
    db.sql(f"LOAD DATASET {dataset}")
    # a grid that is never trained: only its prepared data (features, labels) is read
    db.sql(
        "CREATE GRID probe TRAIN ON (SELECT * FROM Instances WHERE split = 'train') "
        f"SUBSETS MARGINAL 1 SIZES (10) EVALUATE ON ({EVALS[evaluate]}) "
        "MODEL logistic_regression METRIC log_loss"
    )
    data = _prepare(db.session, gstore.require_grid(db.session.store, "probe")).data
    featurizer = Featurizer(data.features, encoding="onehot", scale=True).fit(data.train)
    x = featurizer.transform(data.train)
    xe = featurizer.transform(data.eval)
    add1 = lambda a: np.hstack([np.asarray(a, dtype=float), np.ones((len(a), 1))])  # noqa: E731
    return add1(x), np.asarray(data.train_y, float), add1(xe), np.asarray(data.eval_y, float)


# ----------------------------------------------------------------------------- exact refits


class Logistic:
    """L2 logistic regression as scikit-learn's (``C·Σ loss + ½‖w‖²``, intercept unpenalized)."""

    def __init__(self, C: float, p: int) -> None:
        self.reg = np.full(p, 1.0 / C)
        self.reg[-1] = 0.0  # the intercept column is last

    def fit(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Newton's method with halving; returns θ and the Cholesky factor of the Hessian."""
        theta = np.zeros(x.shape[1])
        theta[-1] = np.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3))
        obj = self._objective(theta, x, y)
        for _ in range(100):
            s = x @ theta
            p = expit(s)
            grad = x.T @ (p - y) + self.reg * theta
            hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(self.reg + 1e-12)
            step = cho_solve(cho_factor(hess), grad)
            if np.abs(step).max() < 1e-10:
                break
            t = 1.0
            while True:
                new = theta - t * step
                new_obj = self._objective(new, x, y)
                if new_obj <= obj + 1e-14 * abs(obj) or t < 1e-8:
                    break
                t /= 2
            theta, obj = new, new_obj
        p = expit(x @ theta)
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(self.reg + 1e-12)
        return theta, cho_factor(hess)

    def _objective(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        s = x @ theta
        return float(np.sum(-log_expit(s) + (1 - y) * s) + 0.5 * np.sum(self.reg * theta**2))

    def add_each(
        self,
        theta: np.ndarray,
        chol: tuple,
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray,
        yz: np.ndarray,
    ) -> np.ndarray:
        """The optimum of ``D ∪ {z_j}`` for every row ``z_j`` (columns of the result)."""
        pz = expit(z @ theta)
        w = pz * (1 - pz)
        hz = cho_solve(chol, z.T)  # H⁻¹ z_j, one column per target
        denom = 1 + w * np.einsum("jp,pj->j", z, hz)
        thetas = np.repeat(theta[:, None], len(z), axis=1)
        for _ in range(30):
            grad = x.T @ (expit(x @ thetas) - y[:, None]) + self.reg[:, None] * thetas
            grad += z.T * (expit(np.einsum("jp,pj->j", z, thetas)) - yz)
            a = cho_solve(chol, grad)
            # Sherman-Morrison: (H + w z zᵀ)⁻¹ g = a − H⁻¹z · w zᵀa / (1 + w zᵀH⁻¹z)
            step = a - hz * (w * np.einsum("jp,pj->j", z, a) / denom)
            thetas -= step
            if np.abs(step).max() < 1e-10:
                break
        return thetas


def eval_metric(metric: str, thetas: np.ndarray, xe: np.ndarray, ye: np.ndarray) -> np.ndarray:
    """Metric of each column of ``thetas`` on the evaluation rows, oriented so higher is better."""
    s = xe @ thetas
    if metric == "accuracy":
        return ((s > 0) == (ye[:, None] > 0.5)).mean(axis=0)
    return -(-log_expit(s) + (1 - ye[:, None]) * s).mean(axis=0)


class Sampler:
    """Datasets ``D`` of size ``k`` from a pool: uniform, or stratified by class as the paper."""

    def __init__(self, pool: np.ndarray, y: np.ndarray, how: str, rng: np.random.Generator):
        self.pool, self.rng, self.how = pool, rng, how
        self.classes = [pool[y[pool] == c] for c in np.unique(y[pool])]
        self.shares = np.array([len(c) for c in self.classes]) / len(pool)

    def draw(self, k: int) -> np.ndarray:
        if self.how == "uniform":
            return self.rng.choice(self.pool, size=k, replace=False)
        counts = np.round(self.shares * k).astype(int)
        counts[np.argmax(self.shares)] += k - counts.sum()
        counts = np.maximum(counts, 1)
        return np.concatenate(
            [self.rng.choice(c, size=n, replace=False) for c, n in zip(self.classes, counts)]
        )


def contributions(
    model: Logistic,
    data: tuple,
    targets: np.ndarray,
    sizes: np.ndarray,
    sampler: Sampler,
    metric: str,
) -> np.ndarray:
    """``Δ(z, D)`` for every target and draw (one ``D`` per draw, shared by all targets)."""
    x, y, xe, ye = data
    out = np.empty((len(sizes), len(targets)))
    for i, k in enumerate(sizes):
        rows = sampler.draw(int(k))
        theta, chol = model.fit(x[rows], y[rows])
        thetas = model.add_each(theta, chol, x[rows], y[rows], x[targets], y[targets])
        out[i] = eval_metric(metric, thetas, xe, ye) - eval_metric(metric, theta[:, None], xe, ye)
    return out


def check_against_sklearn(
    model: Logistic, data: tuple, targets: np.ndarray, sampler: Sampler, C: float, metric: str
) -> float:
    """Largest difference between this script's contributions and scikit-learn's refits."""
    from sklearn.linear_model import LogisticRegression

    x, y, xe, ye = data
    worst = 0.0
    for k in (100, 400):
        rows = sampler.draw(k)
        theta, chol = model.fit(x[rows], y[rows])
        fast = model.add_each(theta, chol, x[rows], y[rows], x[targets[:3]], y[targets[:3]])
        ref = []
        for rs in [rows, *[np.append(rows, t) for t in targets[:3]]]:
            m = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(x[rs][:, :-1], y[rs])
            ref.append(np.append(m.coef_[0], m.intercept_[0]))
        ref = np.array(ref).T
        d_fast = eval_metric(metric, fast, xe, ye) - eval_metric(metric, theta[:, None], xe, ye)
        d_ref = eval_metric(metric, ref[:, 1:], xe, ye) - eval_metric(metric, ref[:, :1], xe, ye)
        worst = max(worst, float(np.abs(d_fast - d_ref).max()))
    return worst


# ----------------------------------------------------------------------------- scoring


def r2_per_size(truth: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's r2_score on (points x sizes): R² across points at each size, averaged."""
    ss_res = ((truth - pred) ** 2).sum(axis=0)
    ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1 - ss_res / ss_tot))


def r2_pooled(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def ceilings(draws: np.ndarray) -> tuple[float, float]:
    """The R² the exact ``ψ_k`` would score against these means: per size (averaged), pooled.

    ``draws`` is (sizes x draws x points). ``E[SS_res] = Σ noise``, ``E[SS_tot]`` is the spread
    of the means; their ratio is the share of that spread that is sampling noise.
    """
    means = draws.mean(axis=1)  # sizes x points
    noise = draws.var(axis=1, ddof=1) / draws.shape[1]
    spread = ((means - means.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    per_size = float(np.mean(1 - noise.sum(axis=1) / spread))
    pooled = float(1 - noise.sum() / ((means - means.mean()) ** 2).sum())
    return per_size, pooled


def best_laws(psi: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each row's best ``c·k^-α`` (α searched on 0..4) for the per-size R²: least squares
    weighted by ``1 / spread`` of each size, which separates by point, so this is the largest
    per-size R² that any law can reach against these means (in sample)."""
    alphas = np.linspace(0.0, 4.0, 801)
    w = 1 / ((psi - psi.mean(axis=0)) ** 2).sum(axis=0)  # per size
    basis = sizes[None, :] ** -alphas[:, None]  # alphas x sizes
    c = (psi * w) @ basis.T / (w * basis**2).sum(axis=1)  # points x alphas
    sse = (w * (psi[:, None, :] - c[:, :, None] * basis[None]) ** 2).sum(axis=2)
    best = sse.argmin(axis=1)
    return c[np.arange(len(psi)), best][:, None] * basis[best]


def predict(law: estimators.UnitLaw | None, sizes: np.ndarray) -> np.ndarray:
    if law is None or law.status not in ("ok", "zero", "constant"):
        return np.zeros(len(sizes))
    return law.value(sizes.astype(float))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="bank", choices=["bank", "adult", "compas"])
    parser.add_argument("--points", type=int, default=200, help="units the estimators see")
    parser.add_argument("--truth", type=int, default=50, help="of those, units with a truth")
    parser.add_argument("--truth-draws", type=int, default=1000, help="draws per truth size")
    parser.add_argument("--draws", type=int, default=100, help="budget draws of every unit")
    parser.add_argument(
        "--mle-draws", type=int, default=500, help="budget draws of the truth units (the MLE's)"
    )
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument("--sampling", default="stratified", choices=["stratified", "uniform"])
    parser.add_argument("--low", type=int, default=100)
    parser.add_argument("--high", type=int, default=1000)
    parser.add_argument("--sizes", type=int, default=10, help="truth sizes, geometric")
    parser.add_argument("--eval", default="all", choices=sorted(EVALS))
    parser.add_argument("--metric", default="log_loss", choices=["log_loss", "accuracy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--margin", action="store_true", help="amortized inputs: add the full model's margin"
    )
    args = parser.parse_args()
    wall = time.perf_counter()
    with threadpool_limits(1):  # small matrices: threads only contend on a shared machine
        run(args, wall)


def run(args: argparse.Namespace, wall: float) -> None:
    data = load(args.dataset, args.eval)
    x, y = data[0], data[1]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    units = order[: args.points]  # the estimators' points; the first --truth have a truth
    pool = order[args.points :]
    model = Logistic(args.C, x.shape[1])
    sampler = Sampler(pool, y, args.sampling, rng)
    worst = check_against_sklearn(model, data, units, sampler, args.C, args.metric)

    sizes = np.unique(np.geomspace(args.low, args.high, args.sizes).astype(int))
    started = time.perf_counter()
    truth_draws = np.stack(
        [
            contributions(
                model, data, units[: args.truth], np.full(args.truth_draws, k), sampler, args.metric
            )
            for k in sizes
        ]
    )  # sizes x draws x truth points
    truth_secs = time.perf_counter() - started
    started = time.perf_counter()
    budget_k = rng.integers(args.low, args.high + 1, size=args.draws)
    budget = contributions(model, data, units, budget_k, sampler, args.metric)  # draws x points
    # the truth units' budget goes on to --mle-draws (the MLE's larger budgets)
    more_k = rng.integers(args.low, args.high + 1, size=max(args.mle_draws - args.draws, 0))
    more = contributions(model, data, units[: args.truth], more_k, sampler, args.metric)
    mle_k = np.concatenate([budget_k, more_k])
    mle_budget = np.vstack([budget[:, : args.truth], more])  # draws x truth points
    budget_secs = time.perf_counter() - started

    psi = truth_draws.mean(axis=1).T  # truth points x sizes
    ceil_size, ceil_pooled = ceilings(truth_draws)
    name = {"bank": "Bank Marketing", "adult": "UCI Adult", "compas": "COMPAS"}[args.dataset]
    print(
        f"{name}, logistic regression (C = {args.C}), {args.metric} on {len(data[3]):,} rows, "
        f"D {args.sampling}; contributions agree with scikit-learn within {worst:.1e}"
    )
    print(
        f"truth: {args.truth} points x {len(sizes)} sizes {sizes.min()}..{sizes.max()} x "
        f"{args.truth_draws} draws ({truth_secs:.0f} s); budget: {args.points} points x "
        f"{args.draws} draws ({len(mle_k)} for the truth points), sizes uniform "
        f"({budget_secs:.0f} s)"
    )
    # what the truth is made of: the spread between points at each size vs a draw's noise
    sd_draw = truth_draws.std(axis=1, ddof=1).mean(axis=1)
    spread = psi.std(axis=0, ddof=1)
    print("size        " + "".join(f"{k:>9}" for k in sizes))
    print("mean ψ_k    " + "".join(f"{v:>9.1e}" for v in psi.mean(axis=0)))
    print("sd across z " + "".join(f"{v:>9.1e}" for v in spread))
    print("sd of a draw" + "".join(f"{v:>9.1e}" for v in sd_draw))

    inputs = [x[units][:, :-1], y[units][:, None]]
    if args.margin:
        # the paper's network starts from a classifier trained on the task; the cheap analogue:
        # each point's signed margin under the model fitted to the whole pool
        theta, _ = model.fit(x[pool], y[pool])
        inputs.append(((2 * y[units] - 1) * (x[units] @ theta))[:, None])
    x_units = amortized.standardize(np.hstack(inputs))
    print(
        f"\n{'m':>5}{'MLE':>9}{'amortized':>11}{'MLE pooled':>12}{'amort. pooled':>15}"
        f"{'MLE zero':>10}"
    )
    truth_index = np.arange(args.truth)
    for m in (10, 25, 50, 100, 250, 500):
        if m > len(mle_k):
            continue
        # the MLE, per truth point, on its first m draws
        uidx = np.tile(truth_index, m)
        ks = np.repeat(mle_k[:m], args.truth).astype(float)
        mle = dict(estimators.fit_units("mle", uidx, ks, mle_budget[:m].reshape(-1)))
        pred_mle = np.array([predict(mle.get(int(u)), sizes) for u in truth_index])
        zero = sum(law.status == "zero" for law in mle.values())
        cells = [f"{r2_per_size(psi, pred_mle):>9.3f}"]
        pooled = [f"{r2_pooled(psi, pred_mle):>12.3f}"]
        if m <= args.draws:
            # the amortized network, on the first m draws of every unit
            uidx = np.tile(np.arange(args.points), m)
            ks = np.repeat(budget_k[:m], args.points).astype(float)
            fit = amortized.fit_amortized(x_units, uidx, ks, budget[:m].reshape(-1))
            pred_am = np.array([predict(fit.laws[int(u)], sizes) for u in truth_index])
            cells.append(f"{r2_per_size(psi, pred_am):>11.3f}")
            pooled.append(f"{r2_pooled(psi, pred_am):>15.3f}")
        else:
            cells.append(f"{'':>11}")
            pooled.append(f"{'':>15}")
        print(f"{m:>5}{cells[0]}{cells[1]}{pooled[0]}{pooled[1]}{zero:>10}")
    print(f"{'ceil':>5}{ceil_size:>9.3f}{'':>11}{ceil_pooled:>12.3f}  (the truth's own noise)")
    # the paper's Figure 1 number: the log-space trend line fitted to the truth means themselves
    fig1 = []
    for row in psi:
        slope, _ = np.polyfit(-np.log10(sizes), np.log10(np.abs(row) + 1e-12), 1)
        c = np.sum(row * sizes**-slope) / np.sum(sizes ** (-2 * slope))
        fig1.append(c * sizes**-slope)
    print(
        "in sample, fitted to the truth means themselves: the paper's log-space trend line "
        f"{r2_per_size(psi, np.array(fig1)):.3f}, the best c·k^-α (weighted least squares) "
        f"{r2_per_size(psi, best_laws(psi, sizes)):.3f}"
    )
    print(f"wall time {(time.perf_counter() - wall) / 60:.1f} min")


if __name__ == "__main__":
    main()
