"""The ``smt`` generator against brute force: on tiny integer and categorical domains, every
point of the domain is labelled by the model's own ``predict``, and no point that satisfies
the condition, keeps the immutable feature and gets the required label is closer than the
generator's CF, for every objective and every model kind (randomized with hypothesis); for
regressors, no point moves the output far enough in the asked direction and is closer.

Points whose scores are within the model's margin of a tie are *ambiguous*: floating point
may label them either way, and the exact encoding stays clear of them, so the oracle's optimum
is taken over the other points (and the CF itself must still be valid).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from cfdb.ctable.condition import (
    TRUE,
    And,
    Cmp,
    Cond,
    Domains,
    Member,
    Not,
    Or,
    VarCmp,
    evaluate,
    normalize,
)
from cfdb.generators import GenerationTask, distance, valid_mask
from cfdb.generators.smt import Smt
from cfdb.generators.smt_model import compile_model, score_gap, scores
from cfdb.models import Model, train
from cfdb.types import FeatureSpec

FEATURES = [
    FeatureSpec("a", "integer", min=0, max=4, mad=1.5),
    FeatureSpec("b", "integer", min=-2, max=2, mad=2.0),
    FeatureSpec("c", "categorical", domain=("p", "q", "r")),
    FeatureSpec("d", "boolean", domain=("false", "true")),
    FeatureSpec("e", "categorical", domain=("f", "m"), mutable=False),
]
KINDS = {
    "logistic_regression": {},
    "linear_svm": {},
    "decision_tree": {"max_depth": 4},
    "random_forest": {"n_estimators": 5, "max_depth": 3},
    "gradient_boosting": {"n_estimators": 5, "max_depth": 2},
    "hist_gradient_boosting": {"max_iter": 5, "max_leaf_nodes": 8},
    "xgboost": {"n_estimators": 5, "max_depth": 3},
    # The CFDB paper's third model is a ReLU network (two hidden layers); a small one here.
    "mlp": {"hidden_layer_sizes": (5, 5), "max_iter": 200},
}
#: Kinds whose sweep is slow (a network's exact encoding takes seconds to set up per model);
#: a fixed case of each runs in the default suite below.
SLOW_KINDS = {"mlp"}
OBJECTIVES = ("l0", "l1", "tabular", "l0_l1")


def grid(e: str) -> dict[str, np.ndarray]:
    """Every point of the domain with the immutable feature at ``e``."""
    rows = list(itertools.product(range(5), range(-2, 3), "pqr", (False, True)))
    return {
        "a": np.array([r[0] for r in rows], dtype=np.int64),
        "b": np.array([r[1] for r in rows], dtype=np.int64),
        "c": np.array([r[2] for r in rows], dtype=object),
        "d": np.array([r[3] for r in rows], dtype=bool),
        "e": np.array([e] * len(rows), dtype=object),
    }


@functools.cache
def tiny_model(kind: str, seed: int, classes: int, encoding: str) -> Model:
    rng = np.random.default_rng(seed)
    n = 300
    cols = {
        "a": rng.integers(0, 5, n),
        "b": rng.integers(-2, 3, n),
        "c": rng.choice(["p", "q", "r"], n).astype(object),
        "d": rng.random(n) < 0.5,
        "e": rng.choice(["f", "m"], n).astype(object),
    }
    table = dict(zip("pqr", rng.normal(0, 2, 3), strict=True))
    w = rng.normal(0, 1, 4)
    s = (
        w[0] * cols["a"]
        + w[1] * cols["b"]
        + np.array([table[v] for v in cols["c"]])
        + w[2] * cols["d"]
        + w[3] * (cols["e"] == "m")
        + rng.normal(0, 0.5, n)
    )
    cuts = np.quantile(s, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.array(["k0", "k1", "k2"], dtype=object)[np.digitize(s, cuts)]
    with threadpool_limits(1):  # OpenMP threads make tiny fits slow on a busy machine
        return train(kind, KINDS[kind], FEATURES, cols, labels, name=kind, encoding=encoding)


def key(objective: str, l0: np.ndarray, l1: np.ndarray, tab: np.ndarray) -> np.ndarray:
    """Objective values as sortable floats (``l0_l1``: L0 first, L1 breaks ties)."""
    if objective == "l0":
        return l0
    if objective == "l1":
        return l1
    if objective == "tabular":
        return tab
    return l0 * 1000.0 + l1


def blocked(points: dict[str, np.ndarray], x: dict[str, Any], cf: dict[str, Any]) -> np.ndarray:
    """Points with the same changed features, and the same values of changed categoricals,
    as ``cf`` (the blocking clauses of ``n > 1``)."""
    same = np.ones(len(points["a"]), dtype=bool)
    for f in FEATURES:
        if not f.mutable:
            continue
        moved_cf = cf[f.name] != x[f.name]
        moved = points[f.name] != x[f.name]
        same &= moved == moved_cf
        if moved_cf and f.is_categorical:
            same &= points[f.name] == cf[f.name]
    return same


def random_condition(rng: np.random.Generator, depth: int = 2) -> Cond:
    if depth == 0 or rng.random() < 0.35:
        pick = rng.integers(5)
        if pick == 0:
            return Cmp(
                "a", str(rng.choice(["=", "<>", "<", "<=", ">", ">="])), float(rng.integers(0, 5))
            )
        if pick == 1:
            return Cmp("b", str(rng.choice(["<", ">=", "<>"])), float(rng.integers(-2, 3)))
        if pick == 2:
            values = rng.choice(list("pqr"), int(rng.integers(1, 3)), replace=False).tolist()
            return Member("c", frozenset(values), negated=bool(rng.random() < 0.3))
        if pick == 3:
            return Member("d", frozenset({str(rng.choice(["false", "true"]))}))
        return VarCmp("a", str(rng.choice(["<", ">", "<=", ">=", "=", "<>"])), "b")
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return Not(random_condition(rng, depth - 1))
    items = tuple(random_condition(rng, depth - 1) for _ in range(int(rng.integers(2, 4))))
    return And(items) if kind == "and" else Or(items)


def check_against_oracle(
    kind: str, seed: int, classes: int, encoding: str, objective: str, n: int, picks: int
) -> None:
    model = tiny_model(kind, seed, classes, encoding)
    compiled = compile_model(model, FEATURES)
    gen = Smt(objective=objective, process=False).fit(model, FEATURES)
    rng = np.random.default_rng(picks)
    for e in ("f", "m"):
        points = grid(e)
        labels = model.predict(points).astype(str)
        gap = score_gap(compiled, scores(compiled, model.transform(points)))
        clear = gap > 10 * compiled.margin
        i = int(rng.integers(len(labels)))
        x = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in points.items()}
        cond = random_condition(rng) if rng.random() < 0.7 else TRUE
        cond = normalize(cond, Domains(FEATURES))
        target = None
        if classes > 2 and rng.random() < 0.5:
            target = str(rng.choice([c for c in model.labels if c != labels[i]]))
        task = GenerationTask(
            instance=x, original_label=labels[i], target=target, condition=cond, n=n
        )
        ok = evaluate(cond, points) & (labels != labels[i] if target is None else labels == target)
        good = ok & clear
        l0 = distance("l0", x, points, FEATURES)
        l1 = distance("l1", x, points, FEATURES)
        tab = distance("tabular", x, points, FEATURES)
        value = key(objective, l0, l1, tab)
        out = gen.generate(task)
        m = len(out["a"])
        assert valid_mask(model, FEATURES, task, out).all()
        ambiguous = (evaluate(cond, points) & ~clear).any()
        assert out.info["rejected"] == 0 or ambiguous, out.info
        if not good.any():
            continue  # only ambiguous points (or none) are valid: nothing to compare
        assert m >= 1, f"{kind}: brute force finds a CF, smt none ({out.info})"
        assert out.info["status"] == "optimal"
        assert out.extra["__optimal"].all()
        got = key(
            objective,
            distance("l0", x, out, FEATURES),
            distance("l1", x, out, FEATURES),
            distance("tabular", x, out, FEATURES),
        )
        allowed = good.copy()
        for j in range(m):
            best = value[allowed].min()
            assert got[j] <= best + 1e-9, (kind, objective, j, got[j], best, dict(out))
            cf = {k: v[j].item() if hasattr(v[j], "item") else v[j] for k, v in out.items()}
            allowed &= ~blocked(points, x, cf)
            if not allowed.any():
                break


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_KINDS else k for k in KINDS],
)
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2),
    classes=st.sampled_from([2, 3]),
    encoding=st.sampled_from(["onehot", "target"]),
    n=st.sampled_from([1, 2]),
    picks=st.integers(0, 10**6),
)
def test_no_point_of_the_domain_is_closer(
    kind: str, objective: str, seed: int, classes: int, encoding: str, n: int, picks: int
) -> None:
    check_against_oracle(kind, seed, classes, encoding, objective, n, picks)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("objective", ["l0_l1", "l1"])
def test_relu_network_cfs_are_minimal_on_a_fixed_case(objective: str) -> None:
    check_against_oracle("mlp", 0, 2, "onehot", objective, 1, 7)


REGRESSORS = {
    "linear_regression": {},
    "ridge": {},
    "decision_tree_regressor": {"max_depth": 4},
    "random_forest_regressor": {"n_estimators": 5, "max_depth": 3},
    "gradient_boosting_regressor": {"n_estimators": 5, "max_depth": 2},
    "xgboost_regressor": {"n_estimators": 5, "max_depth": 3},
}


@functools.cache
def tiny_regressor(kind: str, seed: int) -> Model:
    rng = np.random.default_rng(seed)
    points = grid("f")
    for k, v in grid("m").items():
        points[k] = np.concatenate([points[k], v])
    w = rng.normal(0, 1, 4)
    y = (
        w[0] * points["a"]
        + w[1] * points["b"] ** 2
        + np.where(points["c"] == "q", w[2], 0.0)
        + w[3] * points["d"]
        + rng.normal(0, 0.3, len(points["a"]))
    )
    return train(kind, REGRESSORS[kind], FEATURES, points, y, name=kind)


def check_regressor(kind: str, seed: int, objective: str, direction: str, picks: int) -> None:
    model = tiny_regressor(kind, seed)
    compiled = compile_model(model, FEATURES)
    gen = Smt(objective=objective, process=False).fit(model, FEATURES)
    rng = np.random.default_rng(picks)
    for e in ("f", "m"):
        points = grid(e)
        values = model.predict_value(points)
        i = int(rng.integers(len(values)))
        x = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in points.items()}
        cond = normalize(random_condition(rng) if rng.random() < 0.5 else TRUE, Domains(FEATURES))
        change = float(rng.uniform(0.1, 2.0))
        task = GenerationTask(
            instance=x,
            original_label=None,
            target=None,
            condition=cond,
            n=1,
            original_value=float(values[i]),
            min_change=change,
            direction=direction,
        )
        delta = values - values[i]
        moved = {"up": delta, "down": -delta, "any": np.abs(delta)}[direction]
        ok = evaluate(cond, points) & (moved >= change)
        good = ok & (np.abs(moved - change) > 10 * compiled.margin + 1e-9)
        out = gen.generate(task)
        assert valid_mask(model, FEATURES, task, out).all()
        if not good.any():
            continue
        value = key(
            objective,
            distance("l0", x, points, FEATURES),
            distance("l1", x, points, FEATURES),
            distance("tabular", x, points, FEATURES),
        )
        assert len(out["a"]) == 1, (kind, out.info)
        got = key(
            objective,
            distance("l0", x, out, FEATURES),
            distance("l1", x, out, FEATURES),
            distance("tabular", x, out, FEATURES),
        )
        assert got[0] <= value[good].min() + 1e-9, (kind, objective, direction, got, dict(out))


@pytest.mark.parametrize("kind", list(REGRESSORS))
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2),
    objective=st.sampled_from(OBJECTIVES),
    direction=st.sampled_from(["up", "down", "any"]),
    picks=st.integers(0, 10**6),
)
def test_regressors_no_point_of_the_domain_is_closer(
    kind: str, seed: int, objective: str, direction: str, picks: int
) -> None:
    check_regressor(kind, seed, objective, direction, picks)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 5),
    classes=st.sampled_from([2, 3]),
    encoding=st.sampled_from(["onehot", "target"]),
    objective=st.sampled_from(OBJECTIVES),
    n=st.sampled_from([1, 2, 3]),
    picks=st.integers(0, 10**6),
)
def test_many_more_draws(
    kind: str, seed: int, classes: int, encoding: str, objective: str, n: int, picks: int
) -> None:
    check_against_oracle(kind, seed, classes, encoding, objective, n, picks)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(REGRESSORS))
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 5),
    objective=st.sampled_from(OBJECTIVES),
    direction=st.sampled_from(["up", "down", "any"]),
    picks=st.integers(0, 10**6),
)
def test_regressors_many_more_draws(
    kind: str, seed: int, objective: str, direction: str, picks: int
) -> None:
    check_regressor(kind, seed, objective, direction, picks)
