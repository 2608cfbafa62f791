"""Bounds on a CF's score (``C.Score``: a binary classifier's probability of the CF's label,
a regressor's output) in the ``smt`` generator, against brute force on tiny domains: no point
that satisfies the condition, gets the target label and whose probability meets the bound is
closer than the generator's CF; when the generator says ``infeasible``, no point qualifies.

Points whose probability is within 1e-6 of the bound, or whose label is within the model's
margin of a tie, are ambiguous (floating point may put them either side) and left out of the
oracle's optimum; the CF itself must still be valid (checked with ``predict_proba``).
"""

from __future__ import annotations

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE
from cfdb.errors import CfdbUnsupportedError
from cfdb.generators import GenerationTask, distance, valid_mask
from cfdb.generators.base import ScoreBound, output_scores
from cfdb.generators.smt import Smt
from cfdb.generators.smt_model import compile_model, score_gap, scores
from tests.generators.test_smt_oracle import FEATURES, grid, key, tiny_model

BINARY_KINDS = [
    "logistic_regression",
    "linear_svm",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
    "xgboost",
]
BOUNDS = [
    ScoreBound(low=0.8),
    ScoreBound(low=0.65, low_strict=True),
    ScoreBound(high=0.7),
    ScoreBound(low=0.55, high=0.9),
    ScoreBound(low=0.999),
]


@pytest.mark.parametrize("kind", BINARY_KINDS)
def test_probability_bounds_against_brute_force(kind):
    model = tiny_model(kind, 3, 2, "onehot")
    compiled = compile_model(model, FEATURES)
    gen = Smt(objective="l0_l1", process=False).fit(model, FEATURES)
    rng = np.random.default_rng(7)
    checked = 0
    for e in ("f", "m"):
        points = grid(e)
        labels = model.predict(points).astype(str)
        proba = output_scores(model, points)
        gap = score_gap(compiled, scores(compiled, model.transform(points)))
        clear = gap > 10 * compiled.margin
        for bound in BOUNDS:
            i = int(rng.integers(len(labels)))
            x = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in points.items()}
            target = next(c for c in model.labels if c != labels[i])
            task = GenerationTask(
                instance=x, original_label=labels[i], target=target, condition=TRUE, score=bound
            )
            near = np.zeros(len(proba), dtype=bool)
            for v in (bound.low, bound.high):
                if v is not None:
                    near |= np.abs(proba - v) < 1e-6
            meets = (labels == target) & bound.mask(proba)
            good = meets & clear & ~near
            out = gen.generate(task)
            assert valid_mask(model, FEATURES, task, out).all()
            if out.info["status"] == "infeasible":
                assert not good.any(), (kind, bound, "smt says infeasible, brute force finds one")
                continue
            if not good.any():
                continue  # only ambiguous points (or none) qualify: nothing to compare
            assert len(out["a"]) == 1, (kind, bound, out.info)
            assert out.info["status"] == "optimal" and out.extra["__optimal"].all()
            l0 = distance("l0", x, points, FEATURES)
            l1 = distance("l1", x, points, FEATURES)
            best = key("l0_l1", l0, l1, l1)[good].min()
            got = key(
                "l0_l1", distance("l0", x, out, FEATURES), distance("l1", x, out, FEATURES), l1[:1]
            )
            assert got[0] <= best + 1e-9, (kind, bound, got[0], best)
            checked += 1
    assert checked >= 2


def test_regression_output_bound_against_brute_force():
    from cfdb.models import train

    rng = np.random.default_rng(0)
    n = 300
    cols = {
        "a": rng.integers(0, 5, n),
        "b": rng.integers(-2, 3, n),
        "c": rng.choice(["p", "q", "r"], n).astype(object),
        "d": rng.random(n) < 0.5,
        "e": rng.choice(["f", "m"], n).astype(object),
    }
    y = 2.0 * cols["a"] - cols["b"] + 3.0 * (cols["c"] == "q") + rng.normal(0, 0.1, n)
    model = train("ridge", {}, FEATURES, cols, y, name="r")
    gen = Smt(objective="l0_l1", process=False).fit(model, FEATURES)
    points = grid("f")
    values = model.predict_value(points)
    x = {k: v[0].item() if hasattr(v[0], "item") else v[0] for k, v in points.items()}
    base = float(values[0])
    for low in (base + 3.0, base + 6.5, base + 100.0):
        bound = ScoreBound(low=low)
        task = GenerationTask(
            instance=x,
            original_label=None,
            target=None,
            condition=TRUE,
            original_value=base,
            min_change=0.5,
            direction="any",
            score=bound,
        )
        good = (np.abs(values - base) >= 0.5) & (values >= low + 1e-6)
        out = gen.generate(task)
        assert valid_mask(model, FEATURES, task, out).all()
        if not good.any():
            assert out.info["status"] == "infeasible"
            continue
        l0 = distance("l0", x, points, FEATURES)
        l1 = distance("l1", x, points, FEATURES)
        best = key("l0_l1", l0, l1, l1)[good].min()
        got = key("l0_l1", distance("l0", x, out, FEATURES), distance("l1", x, out, FEATURES), l1)
        assert got[0] <= best + 1e-9


def test_multiclass_bound_is_refused_by_name():
    model = tiny_model("logistic_regression", 3, 3, "onehot")
    gen = Smt(process=False).fit(model, FEATURES)
    points = grid("f")
    x = {k: v[0].item() if hasattr(v[0], "item") else v[0] for k, v in points.items()}
    label = str(model.predict(points)[0])
    task = GenerationTask(
        instance=x, original_label=label, target=None, condition=TRUE, score=ScoreBound(low=0.5)
    )
    with pytest.raises(CfdbUnsupportedError, match="binary classifiers only"):
        gen.generate(task)
