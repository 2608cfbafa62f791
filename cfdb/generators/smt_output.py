"""A bound on a CF's score (``C.Score`` in CFQL) as bounds on the exact encoding's raw score
(the "result" attribute of CFs that the CFDB paper's section 4.4 proposes).

The score is a regressor's output, or a classifier's probability of the CF's label. For a
regressor it *is* the encoded score. For a binary classifier the probability of class 1 is a
monotone function of the single encoded score ``s``, so a probability threshold is a
threshold on ``s``:

* logistic links (logistic regression and other linear classifiers, ``linear_svm``'s sigmoid
  calibration, histogram gradient boosting, XGBoost's ``binary:logistic``, gradient boosting
  with the log loss): ``p1 = 1 / (1 + exp(-s))``, so ``p1 >= p`` iff ``s >= log(p / (1 - p))``;
  gradient boosting's exponential loss uses ``2s``;
* trees and forests: ``s`` is the sum over ``T`` trees of ``p1 - p0`` per leaf, so
  ``p1 = (s / T + 1) / 2`` and ``p1 >= p`` iff ``s >= T (2p - 1)``.

The probability of class 0 is ``1 - p1``. Multi-class classifiers (softmax or averaged
probability vectors: not one monotone score) are refused with
:class:`~cfdb.errors.CfdbUnsupportedError`, as are probability bounds a logistic link never
reaches exactly (``p >= 1``, ``p <= 0``). Each raw bound gets the model's decision margin to
spare, and every CF is still checked with the model's own ``predict_proba``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from cfdb.errors import CfdbUnsupportedError
from cfdb.generators.base import ScoreBound
from cfdb.generators.smt_model import CompiledModel
from cfdb.models import Model

#: Raw bounds: (lowest score, highest score), None where unbounded.
RawBounds = tuple[Fraction | None, Fraction | None]
#: Estimators whose binary probability is the logistic function of the encoded score.
LOGISTIC = (
    "CalibratedClassifierCV",
    "HistGradientBoostingClassifier",
    "XGBClassifier",
)


def raw_bounds(
    model: Model, compiled: CompiledModel, bound: ScoreBound, target: int | None
) -> RawBounds | None:
    """Bounds on the encoded score equivalent to ``bound`` on the CF's score; None when no
    CF can meet them (e.g. a probability above 1).

    Args:
        target: the class code a CF must get (binary classifiers); unused for a regressor.

    Raises:
        CfdbUnsupportedError: a multi-class model, a classifier without a known link, or a
            probability bound a logistic link cannot reach.
    """
    if compiled.regression:
        return _frac(bound.low), _frac(bound.high)
    if compiled.n_scores != 1 or target is None:
        raise CfdbUnsupportedError(
            f"the smt generator encodes a bound on C.Score for regressors and binary "
            f"classifiers only; model {model.name!r} has {compiled.n_classes} classes"
        )
    inverse = _inverse_link(model, compiled)
    low, high = bound.low, bound.high
    if target == 0:  # P(class 0) = 1 - P(class 1)
        low, high = (None if high is None else 1 - high), (None if low is None else 1 - low)
    forest = inverse is None
    if low is not None and (low > 1 or (low >= 1 and not forest)):
        if low > 1:
            return None
        raise _unreachable(model, low)
    if high is not None and (high < 0 or (high <= 0 and not forest)):
        if high < 0:
            return None
        raise _unreachable(model, high)
    n_trees = Fraction(len(compiled.trees))

    def raw(p: float | None) -> Fraction | None:
        if p is None:
            return None
        if forest:
            return n_trees * (2 * Fraction(p) - 1)
        return Fraction(inverse(p))

    lo = None if low is None or (low <= 0 and not forest) else raw(low)
    hi = None if high is None or (high >= 1 and not forest) else raw(high)
    return lo, hi


def _inverse_link(model: Model, compiled: CompiledModel) -> Any:
    """The encoded score at probability ``p`` of class 1 (None: the linear forest link)."""
    est = model.estimator
    kind = type(est).__name__
    if compiled.trees and kind not in LOGISTIC and kind != "GradientBoostingClassifier":
        return None  # trees and forests: averaged leaf probabilities
    scale = 1.0
    if kind == "GradientBoostingClassifier" and getattr(est, "loss", "log_loss") == "exponential":
        scale = 0.5
    if compiled.is_linear or kind in LOGISTIC or kind == "GradientBoostingClassifier":
        return lambda p: scale * math.log(p / (1 - p))
    raise CfdbUnsupportedError(
        f"the smt generator cannot encode a bound on C.Score for model {model.name!r} ({kind})"
    )


def _unreachable(model: Model, p: float) -> CfdbUnsupportedError:
    return CfdbUnsupportedError(
        f"model {model.name!r} gives probabilities strictly between 0 and 1 (a logistic "
        f"link); the smt generator cannot encode a probability bound of {p!r} exactly"
    )


def _frac(value: float | None) -> Fraction | None:
    return None if value is None else Fraction(value)
