"""Additive utilities as gain matrices, label encoding and KNN tally utilities.

DataScope section 3.2: a utility is *additive* when it is a weighted sum over validation rows
of a tuple-wise utility ``u_T(predicted label, validation row)``. cfdb represents every
additive utility by one matrix ``G`` (validation rows × classes): ``G[j, c]`` is what the
metric gains when row ``j`` is predicted as class ``c``, the weight ``w`` folded in. Accuracy
is ``G[j, c] = 1[c = y_j] / n``; the false negative rate is ``1[y_j = +] · 1[c ≠ +] / n_+``;
and so on. The metric of a prediction vector is then ``Σ_j G[j, ŷ_j]``.

Equalized-odds difference (section 4.3) is made additive by fixing, on the full training set,
which of the TPR or FPR differences dominates and which two sensitive groups realize it;
``G`` is then the difference of the two groups' rates.

A K-nearest-neighbour proxy turns the K nearest present training rows into a prediction in
one of two ways (:func:`tally_utility`), both functions of the *label tally* ``γ`` (count of
each class among the K nearest):

* ``soft`` (Jia et al. 2019): ``u(γ) = Σ_c γ_c · G[j, c] / K`` — the share of the K nearest
  whose label scores, so an empty set scores 0 and fewer than K rows score less;
* ``vote`` (DataScope eq. 13): ``u(γ) = G[j, argmax γ]``, ties to the class first in sorted
  order, all present rows voting when fewer than K; the empty set scores 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.registry import Registry

KNN_UTILITIES = ("soft", "vote")
_TRUE_WORDS = ("1", "true", "t", "yes", "y")


# -- labels ---------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating | bool | np.bool_)


def encode_labels(
    train: np.ndarray, val: np.ndarray, *, column: str = "label"
) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray]:
    """Class codes for training and validation labels over their sorted union.

    Labels sort by value when they are all numbers, else as strings.

    Returns:
        ``(classes, train codes, validation codes)``; codes index ``classes``.

    Raises:
        CfdbDataError: a label is NULL.
    """
    train, val = np.asarray(train), np.asarray(val)
    numeric = train.dtype.kind in "biuf" and val.dtype.kind in "biuf"
    if numeric:
        both = np.concatenate([train.astype(np.float64), val.astype(np.float64)])
        null = np.isnan(both)
    else:
        both = np.concatenate([train.astype(object), val.astype(object)])
        null = np.fromiter(
            (v is None or (isinstance(v, float) and v != v) for v in both), bool, len(both)
        )
    if null.any():
        first = int(np.argmax(null))
        where = "training" if first < len(train) else "validation"
        raise CfdbDataError(f"label column {column!r} is NULL in {int(null.sum())} {where} rows")
    if not numeric and all(_is_number(v) for v in both[:1000]) and all(_is_number(v) for v in both):
        both, numeric = both.astype(np.float64), True
    if numeric:
        uniq, first, inv = np.unique(both, return_index=True, return_inverse=True)
        source = np.concatenate([train, val])
        classes = tuple(_plain(source[i]) for i in first)
    else:
        text = both.astype(str)
        uniq, inv = np.unique(text, return_inverse=True)
        classes = tuple(str(u) for u in uniq)
    inv = inv.astype(np.int32)
    return classes, inv[: len(train)], inv[len(train) :]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def positive_class(classes: Sequence[Any], positive: Any = None) -> int:
    """The code of the positive class: ``positive`` if given, else an obvious 1/true/yes.

    Raises:
        CfdbDataError: ``positive`` is not a label, or there is no obvious positive class.
    """
    if positive is not None:
        for i, c in enumerate(classes):
            if c == positive or str(c) == str(positive):
                return i
        shown = ", ".join(repr(c) for c in classes)
        raise CfdbDataError(f"positive label {positive!r} is not a label (labels: {shown})")
    for i, c in enumerate(classes):
        if str(c).strip().lower() in _TRUE_WORDS and len(classes) == 2:
            return i
    shown = ", ".join(repr(c) for c in classes)
    raise CfdbDataError(
        f"this utility needs to know the positive label; give positive = ... (labels: {shown})"
    )


# -- gains ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gain:
    """An additive utility bound to a validation set.

    Attributes:
        matrix: ``G[j, c]``: the metric's gain when validation row ``j`` is predicted ``c``.
        higher_is_better: whether a larger metric is better (False for error rates).
        info: what the utility decided (positive label, dominant rate, groups).
    """

    matrix: np.ndarray
    higher_is_better: bool = True
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UtilitySpec:
    """One additive utility: how to build its gain matrix.

    Attributes:
        name: the name used in ``UTILITY name``.
        build: ``build(y_val, classes, options) -> Gain``; ``options`` holds ``positive``,
            ``sensitive`` (the validation rows' sensitive values) and ``predicted_positive``
            (each validation row's proxy prediction of the positive class on the full
            training set, for the equalized-odds choice).
        higher_is_better: direction of the metric.
        needs_sensitive: whether the utility needs a sensitive column.
        description: one line for the docs.
    """

    name: str
    build: Callable[[np.ndarray, tuple[Any, ...], dict[str, Any]], Gain]
    higher_is_better: bool
    needs_sensitive: bool = False
    description: str = ""


#: Additive utilities by name.
UTILITIES: Registry[UtilitySpec] = Registry("utility", "cfdb.utilities")


def _accuracy(y: np.ndarray, classes: tuple[Any, ...], options: dict[str, Any]) -> Gain:
    n = len(y)
    g = np.zeros((n, len(classes)))
    g[np.arange(n), y] = 1.0 / max(n, 1)
    return Gain(g, True, {})


def _rate(truth_positive: bool, predict_positive: bool, higher: bool) -> Callable[..., Gain]:
    def build(y: np.ndarray, classes: tuple[Any, ...], options: dict[str, Any]) -> Gain:
        pos = positive_class(classes, options.get("positive"))
        rows = (y == pos) if truth_positive else (y != pos)
        count = int(rows.sum())
        g = np.zeros((len(y), len(classes)))
        cols = np.arange(len(classes)) == pos
        if not predict_positive:
            cols = ~cols
        if count:
            g[np.ix_(rows, cols)] = 1.0 / count
        return Gain(g, higher, {"positive": classes[pos], "rows": count})

    return build


def _equalized_odds(y: np.ndarray, classes: tuple[Any, ...], options: dict[str, Any]) -> Gain:
    pos = positive_class(classes, options.get("positive"))
    groups = np.asarray(options["sensitive"], dtype=object)
    predicted = np.asarray(options["predicted_positive"], dtype=np.float64)
    best: tuple[float, str, Any, Any, dict[Any, int]] | None = None
    for rate, truth in (("tpr", True), ("fpr", False)):
        rows = (y == pos) if truth else (y != pos)
        rates, counts = {}, {}
        for gval in sorted({str(v) for v in groups[rows]}):
            mask = rows & (np.asarray([str(v) for v in groups]) == gval)
            counts[gval] = int(mask.sum())
            rates[gval] = float(predicted[mask].mean())
        if len(rates) < 2:
            continue
        hi = max(rates, key=lambda k: (rates[k], k))
        lo = min(rates, key=lambda k: (rates[k], k))
        diff = rates[hi] - rates[lo]
        if best is None or diff > best[0]:
            best = (diff, rate, hi, lo, counts)
    if best is None:
        raise CfdbDataError(
            "equalized_odds needs at least two sensitive groups with validation rows of one "
            "true class"
        )
    diff, rate, hi, lo, counts = best
    truth_rows = (y == pos) if rate == "tpr" else (y != pos)
    as_text = np.asarray([str(v) for v in groups])
    g = np.zeros((len(y), len(classes)))
    g[truth_rows & (as_text == hi), pos] = 1.0 / counts[hi]
    g[truth_rows & (as_text == lo), pos] -= 1.0 / counts[lo]
    info = {
        "positive": classes[pos],
        "rate": rate,
        "group_max": hi,
        "group_min": lo,
        "full_data_difference": diff,
    }
    return Gain(g, False, info)


for _spec in (
    UtilitySpec("accuracy", _accuracy, True, description="share of validation rows right"),
    UtilitySpec("tpr", _rate(True, True, True), True, description="true positive rate (recall)"),
    UtilitySpec("tnr", _rate(False, False, True), True, description="true negative rate"),
    UtilitySpec("fnr", _rate(True, False, False), False, description="false negative rate"),
    UtilitySpec("fpr", _rate(False, True, False), False, description="false positive rate"),
    UtilitySpec(
        "equalized_odds",
        _equalized_odds,
        False,
        needs_sensitive=True,
        description="equalized-odds difference across a sensitive column (additive approx.)",
    ),
):
    UTILITIES.register(_spec.name, _spec)


# -- tallies ----------------------------------------------------------------------------------
class Tallies:
    """Every label tally (class count vector) of total size ``<= max_size``.

    Tallies are indexed by size, then lexicographically; index 0 is the empty tally.

    Args:
        n_classes: number of classes ``C``.
        max_size: largest total count.
    """

    def __init__(self, n_classes: int, max_size: int) -> None:
        self.n_classes = n_classes
        self.max_size = max_size
        vectors = []
        for size in range(max_size + 1):
            for combo in combinations_with_replacement(range(n_classes), size):
                v = np.zeros(n_classes, dtype=np.int64)
                for c in combo:
                    v[c] += 1
                vectors.append(v)
        self.vectors = np.array(vectors, dtype=np.int64).reshape(-1, n_classes)
        self.sizes = self.vectors.sum(axis=1)
        self._index = {tuple(v): i for i, v in enumerate(self.vectors.tolist())}
        # vote winner of each tally: the most frequent class, ties to the lowest code
        winners = np.argmax(self.vectors, axis=1)
        winners[self.sizes == 0] = -1
        self.vote = winners

    def __len__(self) -> int:
        return len(self.vectors)

    def index(self, vector: Sequence[int]) -> int:
        """Index of ``vector``; -1 when it is too large or has a negative count."""
        return self._index.get(tuple(int(x) for x in vector), -1)

    def shift(self, delta: Sequence[int]) -> np.ndarray:
        """For each tally ``γ``: the index of ``γ + delta`` (-1 if out of range)."""
        d = np.asarray(delta, dtype=np.int64)
        return np.array([self.index(v + d) for v in self.vectors], dtype=np.int64)

    def of_size(self, size: int) -> np.ndarray:
        """Indices of the tallies of total exactly ``size``."""
        return np.nonzero(self.sizes == size)[0]

    def product_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, k)`` index triples with ``γ_i + γ_j = γ_k`` (truncated product)."""
        ii, jj, kk = [], [], []
        for i, vi in enumerate(self.vectors):
            for j, vj in enumerate(self.vectors):
                k = self.index(vi + vj)
                if k >= 0:
                    ii.append(i)
                    jj.append(j)
                    kk.append(k)
        return np.array(ii), np.array(jj), np.array(kk)


def tally_utility(gain: np.ndarray, tallies: Tallies, knn_utility: str, k: int) -> np.ndarray:
    """``U[j, t]``: the KNN utility of tally ``t`` for validation row ``j`` (0 when empty).

    Args:
        gain: the gain matrix (validation rows × classes).
        tallies: the tallies to score.
        knn_utility: ``soft`` or ``vote``.
        k: the K of the KNN proxy (``soft`` divides by it).
    """
    if knn_utility == "soft":
        return gain @ tallies.vectors.T.astype(np.float64) / k
    out = np.zeros((gain.shape[0], len(tallies)))
    nonempty = tallies.vote >= 0
    out[:, nonempty] = gain[:, tallies.vote[nonempty]]
    return out


def check_knn_utility(name: str) -> str:
    """``name`` lower-cased if it is a KNN utility, else a CfdbDataError."""
    key = str(name).lower()
    if key not in KNN_UTILITIES:
        raise CfdbDataError(f"unknown knn_utility {name!r}; known: {', '.join(KNN_UTILITIES)}")
    return key


def count_utility(gain: np.ndarray, counts: np.ndarray, knn_utility: str, k: int) -> np.ndarray:
    """The KNN utility of label-count vectors, without enumerating tallies.

    Args:
        gain: gain rows, one per count vector (``... × C``).
        counts: label counts of the (up to) K nearest present rows (``... × C``).
        knn_utility: ``soft`` (``Σ_c γ_c·G[c] / K``) or ``vote`` (``G[argmax γ]``, ties to
            the lowest class; 0 for an empty tally), as :func:`tally_utility`.
        k: the K of the KNN proxy.

    Returns:
        One utility per count vector (the leading shape).
    """
    if knn_utility == "soft":
        return np.einsum("...c,...c->...", counts, gain) / k
    winner = np.argmax(counts, axis=-1)
    picked = np.take_along_axis(gain, winner[..., None], axis=-1)[..., 0]
    return np.where(counts.sum(axis=-1) > 0, picked, 0.0)
