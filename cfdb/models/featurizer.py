"""The featurizer cfdb owns: raw feature columns -> one float64 matrix for an estimator.

Every consumer of a model (prediction, counterfactual generators, exact encoders, data
valuation) goes through the same :class:`Featurizer`, so a model is always fed raw feature
values. The fitted state is a list of :class:`FeatureBlock` values, one per feature, each owning
a contiguous block of output columns:

* ``numeric``/``integer`` features give one column ``(x - mean) / std``; without scaling
  ``mean = 0`` and ``std = 1``; with scaling a zero standard deviation is replaced by 1.
* ``boolean`` features give one 0/1 column (1 for ``"true"``), under either encoding.
* ``categorical`` features under ``onehot`` give one column per value of the domain (the
  feature's declared domain in its order, else the values seen in ``fit`` sorted as strings).
  A value outside the domain gives a row of zeros.
* ``categorical`` features under ``target`` use smoothed target encoding: with ``n_c`` training
  rows of category ``c``, ``m`` the smoothing and ``prior`` the overall class share, a category
  encodes as ``(n_c * mean_c + m * prior) / (n_c + m)``. With two classes there is one column
  (``mean_c`` = share of class 1); with ``k > 2`` classes there are ``k`` columns, column ``j``
  holding the smoothed share of class ``j``. The categories are the declared domain (else the
  values seen in ``fit``); a value outside them encodes as ``prior`` (training rows with such
  values count in the prior only).

Categorical values are compared as strings: ``str(value)``, except booleans which are spelled
``"true"``/``"false"``. The state serializes to plain JSON (:meth:`Featurizer.to_dict`), so a
stored featurizer loads without executing code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd

from cfdb.errors import CfdbDataError, CfdbNotFittedError
from cfdb.types import FEATURE_TYPES, Columns, FeatureSpec

ENCODINGS = ("onehot", "target")
_FORMAT = "cfdb-featurizer"
_VERSION = 1
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})


# --------------------------------------------------------------------------------------------
# Input validation and normalization (shared with raw-mode models)
# --------------------------------------------------------------------------------------------


def get_column(columns: Columns, name: str) -> np.ndarray:
    """The 1-D array of feature ``name``; a missing column raises :class:`CfdbDataError`."""
    if name not in columns:
        raise CfdbDataError(f"model needs feature {name!r}, which the input lacks")
    arr = np.asarray(columns[name])
    if arr.ndim != 1:
        raise CfdbDataError(f"feature {name!r} must be a 1-D column, got shape {arr.shape}")
    return arr


def check_no_nulls(name: str, arr: np.ndarray) -> None:
    """Raise :class:`CfdbDataError` if ``arr`` holds NULLs (None, NaN, NA), giving the count."""
    if arr.dtype.kind in "biuUS":
        return
    nulls = int(np.count_nonzero(pd.isna(arr)))
    if nulls:
        raise CfdbDataError(
            f"feature {name!r} has {nulls} NULL row{'s' if nulls != 1 else ''}; "
            "models need complete rows"
        )


def to_numeric(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as float64; NULLs, non-numeric and non-finite values raise :class:`CfdbDataError`."""
    check_no_nulls(name, arr)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        for v in arr:
            try:
                float(v)
            except (TypeError, ValueError):
                raise CfdbDataError(
                    f"numeric feature {name!r} holds a non-numeric value {v!r}"
                ) from None
        raise  # pragma: no cover - astype failed but every element converts
    if not np.all(np.isfinite(out)):
        bad = out[~np.isfinite(out)]
        if np.isnan(bad).any():
            raise CfdbDataError(
                f"feature {name!r} has {int(np.isnan(out).sum())} NULL rows (NaN); "
                "models need complete rows"
            )
        raise CfdbDataError(f"numeric feature {name!r} holds a non-finite value {bad[0]!r}")
    return out


def bool_string(name: str, value: Any) -> str:
    """Normalize one boolean-ish value to ``"true"``/``"false"``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return "true" if value == 1 else "false"
    text = str(value).strip().lower()
    if text in _TRUE:
        return "true"
    if text in _FALSE:
        return "false"
    raise CfdbDataError(f"boolean feature {name!r} holds a non-boolean value {value!r}")


def to_strings(spec: FeatureSpec, arr: np.ndarray) -> np.ndarray:
    """Category values of ``arr`` as an object array of str (booleans as ``"true"/"false"``)."""
    check_no_nulls(spec.name, arr)
    if spec.type == "boolean":
        if arr.dtype.kind == "b":
            return np.where(arr, "true", "false").astype(object)
        return np.array([bool_string(spec.name, v) for v in arr], dtype=object)
    if arr.dtype.kind == "b":
        return np.where(arr, "true", "false").astype(object)
    if arr.dtype.kind in "US":
        return arr.astype(str).astype(object)
    return np.array([_category_string(v) for v in arr], dtype=object)


def _category_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------
# Fitted state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureBlock:
    """The fitted encoding of one feature and the output columns ``[start, stop)`` it fills.

    Attributes:
        name: the feature.
        type: the feature's type (numeric, integer, categorical, boolean).
        encoding: ``numeric`` (one scaled column), ``boolean`` (one 0/1 column), ``onehot``
            (one column per category) or ``target`` (1 or k target-encoding columns).
        start: first output column of the block.
        stop: one past the last output column.
        output_names: names of the block's output columns.
        mean: subtracted from a numeric value (0 without scaling).
        std: divides a numeric value after the mean (1 without scaling).
        categories: the known category values, in column order for ``onehot``;
            ``("false", "true")`` for ``boolean``.
        values: for ``target``, the encoded row of each category (aligned with ``categories``).
        default: the encoded row of a value outside ``categories`` (zeros for ``onehot``, the
            class prior for ``target``).
    """

    name: str
    type: str
    encoding: str
    start: int
    stop: int
    output_names: tuple[str, ...]
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()
    default: tuple[float, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.categories)})

    @property
    def width(self) -> int:
        """Number of output columns."""
        return self.stop - self.start

    def column_of(self, value: str) -> int | None:
        """For ``onehot``: the output column set to 1 by ``value`` (None if unseen).

        For ``boolean``: the block's column if ``value`` is ``"true"``, else None.
        """
        if self.encoding == "boolean":
            return self.start if value == "true" else None
        if self.encoding != "onehot":
            raise CfdbDataError(f"feature {self.name!r} is not one-hot encoded")
        i = self._index.get(value)
        return None if i is None else self.start + i

    def target_of(self, value: str) -> tuple[float, ...]:
        """For ``target``: the encoded row of ``value`` (the prior if unseen)."""
        if self.encoding != "target":
            raise CfdbDataError(f"feature {self.name!r} is not target encoded")
        i = self._index.get(value)
        return self.default if i is None else self.values[i]

    def encode_value(self, value: Any) -> np.ndarray:
        """The block's output row for one raw value of the feature."""
        return self.encode(np.array([value], dtype=object))[0]

    def encode(self, arr: np.ndarray) -> np.ndarray:
        """The block's output columns (n x width) for a column of raw values."""
        spec = FeatureSpec(self.name, self.type)
        if self.encoding == "numeric":
            x = to_numeric(self.name, arr)
            return ((x - self.mean) / self.std).reshape(-1, 1)
        values = to_strings(spec, arr)
        if self.encoding == "boolean":
            return (values == "true").astype(np.float64).reshape(-1, 1)
        idx = np.fromiter((self._index.get(v, -1) for v in values), np.int64, len(values))
        if self.encoding == "onehot":
            out = np.zeros((len(values), self.width))
            seen = idx >= 0
            out[np.nonzero(seen)[0], idx[seen]] = 1.0
            return out
        table = np.array((*self.values, self.default), dtype=np.float64).reshape(
            len(self.categories) + 1, self.width
        )
        return table[idx]  # idx -1 picks the default (last) row

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON state of the block."""
        return {
            "name": self.name,
            "type": self.type,
            "encoding": self.encoding,
            "start": self.start,
            "stop": self.stop,
            "output_names": list(self.output_names),
            "mean": self.mean,
            "std": self.std,
            "categories": list(self.categories),
            "values": [list(row) for row in self.values],
            "default": list(self.default),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureBlock:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            type=str(d["type"]),
            encoding=str(d["encoding"]),
            start=int(d["start"]),
            stop=int(d["stop"]),
            output_names=tuple(str(n) for n in d["output_names"]),
            mean=float(d["mean"]),
            std=float(d["std"]),
            categories=tuple(str(c) for c in d["categories"]),
            values=tuple(tuple(float(v) for v in row) for row in d["values"]),
            default=tuple(float(v) for v in d["default"]),
        )


# --------------------------------------------------------------------------------------------
# Featurizer
# --------------------------------------------------------------------------------------------


class Featurizer:
    """Turns raw feature columns into the float64 matrix an estimator is trained on.

    Args:
        features: the features, in output order.
        encoding: ``"onehot"`` or ``"target"`` for categorical features.
        scale: standardize numeric/integer features with the mean/std seen in ``fit``.
        smoothing: the ``m`` of smoothed target encoding.

    Attributes:
        output_names_: names of the output columns once fitted (``age``,
            ``workclass=Private``, ``smoker=true``, ``te(workclass)`` or ``te(workclass)[j]``).
        n_classes_: number of label classes seen in ``fit`` (0 if fitted without labels).
    """

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        encoding: str = "onehot",
        scale: bool = False,
        smoothing: float = 10.0,
    ) -> None:
        if encoding not in ENCODINGS:
            raise CfdbDataError(
                f"unknown categorical encoding {encoding!r}; known: {', '.join(ENCODINGS)}"
            )
        if not math.isfinite(smoothing) or smoothing < 0:
            raise CfdbDataError(f"target-encoding smoothing must be >= 0, got {smoothing!r}")
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CfdbDataError(f"feature {dupes[0]!r} is listed twice")
        for f in features:
            if f.type not in FEATURE_TYPES:
                raise CfdbDataError(
                    f"feature {f.name!r} has unknown type {f.type!r}; "
                    f"known: {', '.join(FEATURE_TYPES)}"
                )
        self.features = list(features)
        self.encoding = encoding
        self.scale = bool(scale)
        self.smoothing = float(smoothing)
        self.n_classes_ = 0
        self._blocks: list[FeatureBlock] | None = None

    # ---- fitting -----------------------------------------------------------------------------

    def fit(self, columns: Columns, y: np.ndarray | None = None) -> Self:
        """Learn domains, scaling and target encodings from training columns.

        Args:
            columns: raw feature columns (extra columns are ignored).
            y: integer class codes ``0..k-1``; required for target encoding.

        Returns:
            ``self``.
        """
        n = _n_rows(columns, self.features)
        if n == 0:
            raise CfdbDataError("cannot fit a featurizer on zero rows")
        codes = None
        if y is not None:
            codes = np.asarray(y)
            if codes.shape != (n,):
                raise CfdbDataError(f"got {len(codes)} labels for {n} rows")
            codes = codes.astype(np.int64)
            if codes.min() < 0:
                raise CfdbDataError("label codes must be 0..k-1")
            self.n_classes_ = max(2, int(codes.max()) + 1)
        needs_target = self.encoding == "target" and any(
            f.type == "categorical" for f in self.features
        )
        if needs_target and codes is None:
            raise CfdbDataError("target encoding needs the labels to fit")
        blocks: list[FeatureBlock] = []
        start = 0
        for spec in self.features:
            arr = get_column(columns, spec.name)
            block = self._fit_block(spec, arr, codes, start)
            blocks.append(block)
            start = block.stop
        self._blocks = blocks
        return self

    def _fit_block(
        self, spec: FeatureSpec, arr: np.ndarray, codes: np.ndarray | None, start: int
    ) -> FeatureBlock:
        name = spec.name
        if spec.type in ("numeric", "integer"):
            x = to_numeric(name, arr)
            mean, std = 0.0, 1.0
            if self.scale:
                mean = float(x.mean())
                std = float(x.std())
                if not std > 0 or not math.isfinite(std):
                    std = 1.0
            return FeatureBlock(name, spec.type, "numeric", start, start + 1, (name,), mean, std)
        values = to_strings(spec, arr)
        if spec.type == "boolean":
            return FeatureBlock(
                name,
                spec.type,
                "boolean",
                start,
                start + 1,
                (f"{name}=true",),
                categories=("false", "true"),
            )
        if spec.domain is not None:
            categories = list(dict.fromkeys(str(v) for v in spec.domain))
        else:
            categories = sorted(set(values.tolist()))
        if self.encoding == "onehot":
            width = len(categories)
            return FeatureBlock(
                name,
                spec.type,
                "onehot",
                start,
                start + width,
                tuple(f"{name}={c}" for c in categories),
                categories=tuple(categories),
                default=(0.0,) * width,
            )
        assert codes is not None
        return self._fit_target(spec, values, codes, categories, start)

    def _fit_target(
        self,
        spec: FeatureSpec,
        values: np.ndarray,
        codes: np.ndarray,
        categories: list[str],
        start: int,
    ) -> FeatureBlock:
        k = self.n_classes_
        onehot_y = np.eye(k)[codes]  # n x k
        prior = onehot_y.mean(axis=0)
        index = {c: i for i, c in enumerate(categories)}
        cat_idx = np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))
        known = cat_idx >= 0  # values outside a declared domain only count in the prior
        counts = np.bincount(cat_idx[known], minlength=len(categories)).astype(np.float64)
        sums = np.zeros((len(categories), k))
        np.add.at(sums, cat_idx[known], onehot_y[known])
        m = self.smoothing
        with np.errstate(invalid="ignore", divide="ignore"):
            enc = (sums + m * prior) / (counts[:, None] + m)
        enc[counts + m == 0] = prior  # unseen domain values with m = 0
        cols = [1] if k == 2 else list(range(k))
        name = spec.name
        names = (f"te({name})",) if k == 2 else tuple(f"te({name})[{j}]" for j in cols)
        return FeatureBlock(
            name,
            spec.type,
            "target",
            start,
            start + len(cols),
            names,
            categories=tuple(categories),
            values=tuple(tuple(float(v) for v in row[cols]) for row in enc),
            default=tuple(float(v) for v in prior[cols]),
        )

    # ---- using -------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_dict`) has run."""
        return self._blocks is not None

    def blocks(self) -> list[FeatureBlock]:
        """The fitted per-feature blocks, in output order (what an exact encoder reads)."""
        if self._blocks is None:
            raise CfdbNotFittedError("the featurizer is not fitted")
        return list(self._blocks)

    @property
    def output_names_(self) -> list[str]:
        """Names of the output columns."""
        return [n for b in self.blocks() for n in b.output_names]

    @property
    def n_outputs(self) -> int:
        """Number of output columns."""
        blocks = self.blocks()
        return blocks[-1].stop if blocks else 0

    def transform(self, columns: Columns) -> np.ndarray:
        """The float64 matrix (n x :attr:`n_outputs`) of the given raw columns."""
        blocks = self.blocks()
        n = _n_rows(columns, self.features)
        out = np.empty((n, self.n_outputs), dtype=np.float64)
        for block in blocks:
            out[:, block.start : block.stop] = block.encode(get_column(columns, block.name))
        return out

    def fit_transform(self, columns: Columns, y: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fit` then :meth:`transform`."""
        return self.fit(columns, y).transform(columns)

    # ---- state -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as plain JSON values (lists, floats, strings)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "encoding": self.encoding,
            "scale": self.scale,
            "smoothing": self.smoothing,
            "n_classes": self.n_classes_,
            "features": [_spec_dict(f) for f in self.features],
            "blocks": [b.to_dict() for b in self.blocks()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Featurizer:
        """Rebuild a fitted featurizer from :meth:`to_dict` output."""
        if d.get("format") != _FORMAT or d.get("version") != _VERSION:
            raise CfdbDataError(
                f"not a stored featurizer (format {d.get('format')!r}, "
                f"version {d.get('version')!r})"
            )
        feat = cls(
            [FeatureSpec.from_dict(f) for f in d["features"]],
            encoding=str(d["encoding"]),
            scale=bool(d["scale"]),
            smoothing=float(d["smoothing"]),
        )
        feat.n_classes_ = int(d["n_classes"])
        feat._blocks = [FeatureBlock.from_dict(b) for b in d["blocks"]]
        return feat

    def __repr__(self) -> str:
        state = f"{self.n_outputs} outputs" if self.fitted else "unfitted"
        return (
            f"Featurizer({len(self.features)} features, encoding={self.encoding!r}, "
            f"scale={self.scale}, {state})"
        )


def _n_rows(columns: Columns, features: Sequence[FeatureSpec]) -> int:
    lengths = {f.name: len(get_column(columns, f.name)) for f in features}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise CfdbDataError(f"feature columns differ in length: {desc}")
    return next(iter(lengths.values()), 0)


def _spec_dict(spec: FeatureSpec) -> dict[str, Any]:
    d = spec.to_dict()
    for key in ("min", "max", "mad"):
        if d[key] is not None:
            d[key] = float(d[key])
    return d
