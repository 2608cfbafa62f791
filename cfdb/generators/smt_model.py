"""What the exact (SMT) generator knows of a model: a plain-data, solver-free description.

:func:`compile_model` reads a fitted cfdb :class:`~cfdb.models.Model` (featurized mode) and
returns a :class:`CompiledModel`: each column of the featurized matrix as a function of one raw
feature (a scaled number, or a value per category), the model's *scores* (linear functions of
the columns, or sums of tree leaves) and the *decision* that turns scores into a class. Every
supported estimator reduces to that shape, exactly as its own ``predict`` computes:

* ``LogisticRegression`` (any linear classifier with ``coef_``/``intercept_``): scores
  ``w·x + b``; two classes: class 1 iff the score is ``> 0``; more: the argmax.
* ``linear_svm`` (``CalibratedClassifierCV(LinearSVC(), ensemble=False)`` with sigmoid
  calibration): the calibrated probability ``1 / (1 + exp(a·d + b))`` of the decision ``d`` is
  monotone in ``-(a·d + b)``, a linear score; two classes: class 1 iff that score is ``> 0``
  (probability above 1/2); more: the argmax (normalizing the probabilities keeps it).
* ``DecisionTreeClassifier``, ``RandomForestClassifier`` (and extra trees): the sum over trees
  of each leaf's class-probability vector; sklearn predicts the argmax of the *mean* of the
  trees' probabilities, not a majority of votes. Two classes use one score, ``p1 - p0``.
* ``GradientBoostingClassifier``: ``init + learning_rate · Σ leaves``; two classes: class 1
  iff the score is ``>= 0``.
* ``HistGradientBoostingClassifier``: ``baseline + Σ leaves``; two classes: ``> 0``.
* ``MLPClassifier`` with ReLU hidden layers: the output layer's pre-activations over the last
  hidden layer are the scores; two classes (a logistic output): class 1 iff the score is
  ``> 0`` (probability above 1/2); more (softmax): the argmax.
* ``XGBClassifier`` (``gbtree``; ``binary:logistic``, ``multi:softprob``/``softmax``): the
  margin ``Σ leaves + base``; for ``binary:logistic`` the base is ``logit(base_score)``
  (XGBoost 3 stores ``base_score`` as a vector string such as ``'[5.01E-1]'``), for
  multi-class the stored vector is already a margin. Class 1 iff the probability is
  ``> 1/2``.

Tree splits keep their estimator's comparison: sklearn's trees and gradient boosting compare
``float32(x) <= t`` (they cast inputs to float32), histogram boosting ``x <= t`` in float64 and
XGBoost ``float32(x) < t`` with a float32 ``t``, stored here as ``float32(x) <= t'`` with ``t'``
the float32 just below ``t``. :func:`scores` evaluates a compiled model with numpy, so tests can
check it against ``predict`` and ``decision_function``.

Floating-point sums make scores near a decision boundary unreliable, so every compiled model
carries a ``margin``: the exact encoding asks a CF's winning score to beat the others by it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cfdb.errors import CfdbUnsupportedError
from cfdb.models import Model
from cfdb.types import FeatureSpec

#: Relative margin on float64 scores, and per float32 addition on XGBoost margins.
REL_MARGIN_64 = 1e-9
REL_MARGIN_32 = 4 * 2.0**-24


@dataclass(frozen=True)
class InputColumn:
    """One column of the featurized matrix as a function of one raw feature.

    Attributes:
        feature: the raw feature.
        mean: numeric features: the column is ``(y - mean) / std``.
        std: see ``mean``.
        table: categorical/boolean features: the column's value for each domain value.
    """

    feature: str
    mean: float = 0.0
    std: float = 1.0
    table: tuple[tuple[str, float], ...] | None = None

    @property
    def identity(self) -> bool:
        return self.table is None and self.mean == 0.0 and self.std == 1.0


@dataclass
class Tree:
    """One tree in array form; leaves have ``feature == -1``.

    Attributes:
        feature: the input column each internal node splits on.
        threshold: go left iff ``x <= threshold`` (in float32 or float64, see ``split``).
        left: left child of each node.
        right: right child of each node.
        value: n_nodes x len(outputs): what a leaf adds to the scores.
        outputs: the score each column of ``value`` adds to.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    outputs: tuple[int, ...]

    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.feature < 0)


@dataclass
class CompiledModel:
    """A model as scores over featurized columns plus a decision rule.

    Attributes:
        name: the model's name (for messages).
        columns: the featurized columns, in the estimator's input order.
        n_classes: number of classes (class codes index the model's labels).
        n_scores: 1 for a binary ``sign`` decision, else the number of classes.
        inclusive: ``sign`` decisions: class 1 also when the score is exactly 0.
        coef: linear models: n_scores x n_columns.
        intercept: the constant of each score (linear intercepts, boosting base scores).
        trees: tree models: the trees.
        split: ``"le32"`` (``float32(x) <= t``) or ``"le64"`` (``x <= t``).
        margin: how much a winning score must beat the others in the exact encoding.
        float32_sums: the estimator adds leaves in float32 (XGBoost).
        regression: the single score is a regressor's output (no decision rule).
        hidden: networks: the hidden layers ``(W, b)`` (``h = max(0, x W + b)``), input
            first; ``coef``/``intercept`` are then the output layer over the last one.
    """

    name: str
    columns: list[InputColumn]
    n_classes: int
    n_scores: int
    inclusive: bool = False
    coef: np.ndarray | None = None
    intercept: np.ndarray = field(default_factory=lambda: np.zeros(1))
    trees: list[Tree] = field(default_factory=list)
    split: str = "le32"
    margin: float = 0.0
    float32_sums: bool = False
    regression: bool = False
    hidden: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def is_linear(self) -> bool:
        return self.coef is not None and not self.hidden

    @property
    def is_network(self) -> bool:
        return bool(self.hidden)


# ---------------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------------


def compile_model(model: Model, features: list[FeatureSpec]) -> CompiledModel:
    """The solver-free description of ``model`` over the raw ``features``.

    Raises:
        CfdbUnsupportedError: raw-mode (user pipeline) models and estimators the exact
            encoding does not cover, naming the model and the estimator.
    """
    if model.mode != "featurized" or model.featurizer is None:
        raise CfdbUnsupportedError(
            f"the smt generator cannot encode model {model.name!r}: it wraps a user estimator "
            "with its own preprocessing (raw mode), which is opaque to the solver"
        )
    columns = _columns(model, features)
    est = model.estimator
    kind = type(est).__name__
    if getattr(model, "is_regression", False):
        from cfdb.generators.smt_regression import compile_regressor  # built on this module

        compiled = compile_regressor(model, est, columns)
        compiled.margin = _margin(compiled, features)
        return compiled
    compilers = {
        "LogisticRegression": _linear,
        "CalibratedClassifierCV": _calibrated,
        "DecisionTreeClassifier": _forest,
        "ExtraTreeClassifier": _forest,
        "RandomForestClassifier": _forest,
        "ExtraTreesClassifier": _forest,
        "GradientBoostingClassifier": _gradient_boosting,
        "HistGradientBoostingClassifier": _hist_gradient_boosting,
        "XGBClassifier": _xgboost,
        "MLPClassifier": _mlp,
    }
    if kind not in compilers and hasattr(est, "coef_") and hasattr(est, "decision_function"):
        kind = "LogisticRegression"  # any sklearn linear classifier predicts the same way
    if kind not in compilers:
        raise CfdbUnsupportedError(
            f"the smt generator cannot encode model {model.name!r} of kind {model.kind!r} "
            f"({type(est).__name__}); it supports linear models, linear SVMs, decision trees, "
            "random forests, gradient boosting, XGBoost and ReLU networks"
        )
    compiled = compilers[kind](model, est, columns)
    compiled.margin = _margin(compiled, features)
    return compiled


def _columns(model: Model, features: list[FeatureSpec]) -> list[InputColumn]:
    specs = {f.name: f for f in features}
    out: list[InputColumn] = []
    for block in model.featurizer.blocks():  # type: ignore[union-attr]
        spec = specs.get(block.name)
        if spec is None:
            raise CfdbUnsupportedError(
                f"model {model.name!r} reads feature {block.name!r}, which is not a feature here"
            )
        if block.encoding == "numeric":
            out.append(InputColumn(block.name, float(block.mean), float(block.std)))
            continue
        domain = domain_of(spec)
        rows = block.encode(np.array(domain, dtype=object)) if domain else np.zeros((0, 1))
        for j in range(block.width):
            table = tuple((v, float(rows[i, j])) for i, v in enumerate(domain))
            out.append(InputColumn(block.name, table=table))
    return out


def domain_of(spec: FeatureSpec) -> list[str]:
    """The values a categorical/boolean feature's CF may take, as condition strings."""
    if spec.type == "boolean":
        return ["false", "true"]
    return [str(v) for v in (spec.domain or ())]


def _linear(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if intercept.shape == (1,) and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    check_width(model, coef.shape[1], columns)
    n_classes = len(est.classes_)
    return CompiledModel(
        model.name, columns, n_classes, coef.shape[0], coef=coef, intercept=intercept
    )


def _calibrated(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    calibrated = getattr(est, "calibrated_classifiers_", [])
    if len(calibrated) != 1:
        raise CfdbUnsupportedError(
            f"the smt generator encodes calibrated model {model.name!r} only with "
            "ensemble=False (one calibrated classifier)"
        )
    inner = calibrated[0].estimator
    calibrators = calibrated[0].calibrators
    if not hasattr(inner, "coef_") or not all(hasattr(c, "a_") for c in calibrators):
        raise CfdbUnsupportedError(
            f"the smt generator encodes calibrated model {model.name!r} only for a linear "
            "estimator with sigmoid calibration"
        )
    coef = np.atleast_2d(np.asarray(inner.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(inner.intercept_, dtype=np.float64))
    check_width(model, coef.shape[1], columns)
    a = np.array([float(c.a_) for c in calibrators])
    b = np.array([float(c.b_) for c in calibrators])
    # p_k = expit(-(a_k d_k + b_k)): the argmax of p is the argmax of -(a d + b).
    coef = -a[:, None] * coef
    intercept = -(a * intercept + b)
    return CompiledModel(
        model.name, columns, len(est.classes_), coef.shape[0], coef=coef, intercept=intercept
    )


def _mlp(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    if est.activation != "relu":
        raise CfdbUnsupportedError(
            f"the smt generator encodes networks with ReLU activations; model {model.name!r} "
            f"uses {est.activation!r}"
        )
    weights = [np.asarray(w, dtype=np.float64) for w in est.coefs_]
    biases = [np.asarray(b, dtype=np.float64) for b in est.intercepts_]
    check_width(model, weights[0].shape[0], columns)
    hidden = list(zip(weights[:-1], biases[:-1], strict=True))
    out_w, out_b = weights[-1], biases[-1]
    n_classes = len(est.classes_)
    # A logistic output (two classes) has one unit: class 1 iff its pre-activation is > 0.
    return CompiledModel(
        model.name,
        columns,
        n_classes,
        out_w.shape[1],
        coef=out_w.T.copy(),
        intercept=out_b.copy(),
        hidden=hidden,
    )


def input_ranges(columns: list[InputColumn], features: list[FeatureSpec]) -> np.ndarray:
    """Per featurized column, the interval ``[lo, hi]`` it spans over the features' observed
    ranges (``±inf`` where a numeric feature has no bound)."""
    specs = {f.name: f for f in features}
    out = np.empty((len(columns), 2))
    for j, col in enumerate(columns):
        if col.table is not None:
            values = [v for _, v in col.table] or [0.0]
            out[j] = (min(values), max(values))
            continue
        spec = specs.get(col.feature)
        lo = float(spec.min) if spec is not None and spec.min is not None else -math.inf
        hi = float(spec.max) if spec is not None and spec.max is not None else math.inf
        ends = sorted(((lo - col.mean) / col.std, (hi - col.mean) / col.std))
        out[j] = ends
    return out


def layer_ranges(w: np.ndarray, b: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of ``x W + b`` for ``x`` in the boxes ``inputs`` (n x 2)."""
    pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
    with np.errstate(invalid="ignore"):
        lo = _dot(inputs[:, 0], pos) + _dot(inputs[:, 1], neg) + b
        hi = _dot(inputs[:, 1], pos) + _dot(inputs[:, 0], neg) + b
    return np.nan_to_num(lo, nan=-math.inf), np.nan_to_num(hi, nan=math.inf)


def _dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    # 0 · inf is 0 here: a zero weight ignores an unbounded input.
    terms = np.where(w == 0.0, 0.0, x[:, None] * w)
    return terms.sum(axis=0)


def forward(compiled: CompiledModel, x: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations of featurized rows ``x`` (``x`` itself for models
    without hidden layers)."""
    h = x
    for w, b in compiled.hidden:
        h = np.maximum(h @ w + b, 0.0)
    return h


def check_width(model: Model, width: int, columns: list[InputColumn]) -> None:
    if width != len(columns):
        raise CfdbUnsupportedError(
            f"model {model.name!r} has {width} inputs but its featurizer gives {len(columns)}"
        )


def sklearn_tree(tree: Any, value: np.ndarray, outputs: tuple[int, ...]) -> Tree:
    """A fitted scikit-learn tree in array form, with the given leaf values."""
    t = tree.tree_
    feature = np.where(t.children_left < 0, -1, t.feature).astype(np.int64)
    return Tree(
        feature=feature,
        threshold=t.threshold.astype(np.float64),
        left=t.children_left.astype(np.int64),
        right=t.children_right.astype(np.int64),
        value=value,
        outputs=outputs,
    )


def _forest(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    trees = getattr(est, "estimators_", None) or [est]
    if getattr(est, "n_outputs_", 1) != 1:
        raise CfdbUnsupportedError(f"model {model.name!r} has several outputs")
    k = len(est.classes_)
    out = []
    for tree in trees:
        v = tree.tree_.value[:, 0, :].astype(np.float64)
        sums = v.sum(axis=1, keepdims=True)
        v = np.divide(v, sums, out=np.zeros_like(v), where=sums > 0)
        if k == 2:
            out.append(sklearn_tree(tree, (v[:, 1] - v[:, 0])[:, None], (0,)))
        else:
            out.append(sklearn_tree(tree, v, tuple(range(k))))
    n_scores = 1 if k == 2 else k
    return CompiledModel(
        model.name, columns, k, n_scores, intercept=np.zeros(n_scores), trees=out, split="le32"
    )


def _gradient_boosting(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    probe = np.zeros((1, len(columns)), dtype=np.float32)
    if est.init_ != "zero" and type(est.init_).__name__ != "DummyClassifier":
        raise CfdbUnsupportedError(
            f"the smt generator cannot encode model {model.name!r}: its initial estimator "
            f"{type(est.init_).__name__} depends on the input"
        )
    base = np.asarray(est._raw_predict_init(probe), dtype=np.float64)[0]
    k = len(est.classes_)
    lr = float(est.learning_rate)
    trees = []
    for stage in est.estimators_:
        for j, tree in enumerate(stage):
            value = tree.tree_.value[:, 0, :1].astype(np.float64) * lr
            trees.append(sklearn_tree(tree, value, (j,)))
    n_scores = 1 if k == 2 else k
    return CompiledModel(
        model.name,
        columns,
        k,
        n_scores,
        inclusive=k == 2,
        intercept=base,
        trees=trees,
        split="le32",
    )


def _hist_gradient_boosting(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    k = len(est.classes_)
    trees = []
    for iteration in est._predictors:
        for j, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise CfdbUnsupportedError(
                    f"the smt generator cannot encode model {model.name!r}: it has native "
                    "categorical splits"
                )
            leaf = nodes["is_leaf"].astype(bool)
            trees.append(
                Tree(
                    feature=np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                    threshold=nodes["num_threshold"].astype(np.float64),
                    left=np.where(leaf, -1, nodes["left"]).astype(np.int64),
                    right=np.where(leaf, -1, nodes["right"]).astype(np.int64),
                    value=nodes["value"].astype(np.float64)[:, None],
                    outputs=(j,),
                )
            )
    base = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
    return CompiledModel(
        model.name, columns, k, 1 if k == 2 else k, intercept=base, trees=trees, split="le64"
    )


def xgboost_booster(model: Model, est: Any, objectives: tuple[str, ...]) -> dict[str, Any]:
    """The parts of an XGBoost model's JSON the encoding needs: ``objective``, ``base`` (the
    stored ``base_score`` vector, XGBoost 3 writes it as a string like ``'[5.01E-1]'``) and
    ``trees`` (raw JSON trees with the class each serves).

    Raises:
        CfdbUnsupportedError: another booster than gbtree, an objective not in ``objectives``,
            or categorical splits.
    """
    doc = json.loads(bytes(est.get_booster().save_raw("json")))
    learner = doc["learner"]
    objective = learner["objective"]["name"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise CfdbUnsupportedError(
            f"the smt generator encodes XGBoost model {model.name!r} only with the gbtree "
            f"booster, not {gb.get('name')!r}"
        )
    if objective not in objectives:
        raise CfdbUnsupportedError(
            f"the smt generator cannot encode XGBoost objective {objective!r} "
            f"of model {model.name!r}"
        )
    text = str(learner["learner_model_param"]["base_score"])
    base = np.array([float(v) for v in text.strip("[]").split(",")])
    trees = list(zip(gb["model"]["trees"], gb["model"]["tree_info"], strict=True))
    for tree, _ in trees:
        if any(int(t) != 0 for t in tree.get("split_type", [])):
            raise CfdbUnsupportedError(
                f"the smt generator cannot encode model {model.name!r}: it has categorical splits"
            )
    return {"objective": objective, "base": base, "trees": trees}


def xgboost_tree(tree: dict[str, Any], output: int) -> Tree:
    """One XGBoost JSON tree in array form (leaf values in ``split_conditions``)."""
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    cond = np.asarray(tree["split_conditions"], dtype=np.float32)
    leaf = left < 0
    # x < t in float32  <=>  float32(x) <= the float32 just below t.
    below = np.nextafter(cond, np.float32(-np.inf)).astype(np.float64)
    return Tree(
        feature=np.where(leaf, -1, np.asarray(tree["split_indices"])).astype(np.int64),
        threshold=np.where(leaf, 0.0, below),
        left=np.where(leaf, -1, left),
        right=np.where(leaf, -1, right),
        value=np.where(leaf, cond.astype(np.float64), 0.0)[:, None],
        outputs=(output,),
    )


def _xgboost(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    booster = xgboost_booster(model, est, ("binary:logistic", "multi:softprob", "multi:softmax"))
    base = booster["base"]
    k = len(est.classes_)
    if booster["objective"] == "binary:logistic":
        base = np.log(base / (1 - base))  # the margin of the base probability
    elif len(base) == 1:
        base = np.repeat(base, k)
    n_scores = 1 if booster["objective"] == "binary:logistic" else k
    trees = [xgboost_tree(t, int(c) if n_scores > 1 else 0) for t, c in booster["trees"]]
    return CompiledModel(
        model.name,
        columns,
        k,
        n_scores,
        intercept=base[:n_scores].astype(np.float64),
        trees=trees,
        split="le32",
        float32_sums=True,
    )


def _margin(compiled: CompiledModel, features: list[FeatureSpec]) -> float:
    """A bound on how far the estimator's floating-point scores can be from exact ones."""
    if compiled.is_linear or compiled.is_network:
        assert compiled.coef is not None
        reach = np.array([_column_reach(c, features) for c in compiled.columns])
        # Through a network, bound every layer's magnitude (ReLU never increases it); each
        # layer's float64 rounding is relative to it.
        for w, b in compiled.hidden:
            reach = np.abs(w).T @ reach + np.abs(b)
        scale = float(np.max(np.abs(compiled.coef) @ reach + np.abs(compiled.intercept)))
        return REL_MARGIN_64 * (len(compiled.hidden) + 1) * max(scale, 1.0)
    tops = sum(float(np.max(np.abs(t.value))) if t.value.size else 0.0 for t in compiled.trees)
    scale = tops + float(np.max(np.abs(compiled.intercept), initial=0.0))
    if compiled.float32_sums:
        return REL_MARGIN_32 * (len(compiled.trees) + 1) * max(scale, 1.0) + 1e-6
    return REL_MARGIN_64 * max(scale, 1.0)


def _column_reach(column: InputColumn, features: list[FeatureSpec]) -> float:
    if column.table is not None:
        return max((abs(v) for _, v in column.table), default=0.0)
    spec = next((f for f in features if f.name == column.feature), None)
    ends = [v for v in (spec.min, spec.max) if v is not None] if spec else []
    if not ends:
        return 1.0
    return max(abs((float(v) - column.mean) / column.std) for v in ends) + 1.0


# ---------------------------------------------------------------------------------------------
# Evaluation with numpy (the tests' oracle of the compilation)
# ---------------------------------------------------------------------------------------------


def tree_leaf(tree: Tree, x: np.ndarray, split: str) -> np.ndarray:
    """The leaf each row of the featurized matrix ``x`` reaches."""
    node = np.zeros(len(x), dtype=np.int64)
    cast = x.astype(np.float32).astype(np.float64) if split == "le32" else x
    rows = np.arange(len(x))
    while True:
        feat = tree.feature[node]
        inner = feat >= 0
        if not inner.any():
            return node
        go_left = cast[rows, np.maximum(feat, 0)] <= tree.threshold[node]
        step = np.where(go_left, tree.left[node], tree.right[node])
        node = np.where(inner, step, node)


def scores(compiled: CompiledModel, x: np.ndarray) -> np.ndarray:
    """The n x n_scores scores of featurized rows ``x`` (float64)."""
    if compiled.is_linear or compiled.is_network:
        assert compiled.coef is not None
        return forward(compiled, x) @ compiled.coef.T + compiled.intercept
    out = np.tile(compiled.intercept[: compiled.n_scores], (len(x), 1)).astype(np.float64)
    for tree in compiled.trees:
        leaf = tree_leaf(tree, x, compiled.split)
        for j, o in enumerate(tree.outputs):
            out[:, o] += tree.value[leaf, j]
    return out


def decide(compiled: CompiledModel, s: np.ndarray) -> np.ndarray:
    """Class codes from scores (ties of an argmax go to the first class, as numpy's)."""
    if compiled.n_scores == 1:
        return (s[:, 0] >= 0 if compiled.inclusive else s[:, 0] > 0).astype(np.int64)
    return np.argmax(s, axis=1)


def score_gap(compiled: CompiledModel, s: np.ndarray) -> np.ndarray:
    """How far each row's scores are from a tie (0 on a decision boundary)."""
    if compiled.n_scores == 1:
        return np.abs(s[:, 0])
    top = np.sort(s, axis=1)
    return top[:, -1] - top[:, -2]


def is_finite_model(compiled: CompiledModel) -> bool:
    """Whether every number of the compiled model is finite."""
    parts = [compiled.intercept]
    if compiled.coef is not None:
        parts.append(compiled.coef)
    for w, b in compiled.hidden:
        parts += [w, b]
    for t in compiled.trees:
        parts += [t.value, t.threshold]
    return all(bool(np.all(np.isfinite(p))) for p in parts) and math.isfinite(compiled.margin)
