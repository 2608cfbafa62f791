"""Models over rows given as Arrow STRUCT arrays: what cfdb's SQL functions compute.

``predict(model, row)`` and friends receive a row as a STRUCT (a table alias, ``struct_pack``,
``struct_update`` or a ``{'age': 40, ...}`` literal), one Arrow ``StructArray`` per batch of
rows. This module turns such a batch into the raw feature columns a :class:`Model` reads —
the same numpy arrays ``PREDICT`` hands it (``to_numpy`` of each Arrow column), so the
featurizer and the estimator see exactly what they see there — and back into Arrow results.

Field names match features case-insensitively (as SQL does); fields that are not features
(``InstanceId``, ``GroundTruth``, ...) are ignored. A missing feature, a value of the wrong
type or a NULL feature raises :class:`~cfdb.errors.CfdbDataError` naming the model and the
features; a NULL row (the struct itself) gives a NULL result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.models.model import Model
from cfdb.types import FeatureSpec

#: SQL names of Arrow types in messages.
_TYPE_NAMES = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "an integer"),
    (pa.types.is_floating, "DOUBLE"),
    (pa.types.is_decimal, "DECIMAL"),
    (pa.types.is_string, "VARCHAR"),
    (pa.types.is_large_string, "VARCHAR"),
    (pa.types.is_dictionary, "ENUM"),
    (pa.types.is_null, "NULL"),
)


def sql_type_name(t: pa.DataType) -> str:
    """A SQL-ish name of an Arrow type, for messages."""
    for test, name in _TYPE_NAMES:
        if test(t):
            return name
    return str(t)


def _accepts(spec: FeatureSpec, t: pa.DataType) -> bool:
    # What PREDICT would read from an Instances column of this feature type.
    if spec.type in ("numeric", "integer"):
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if spec.type == "boolean":
        return pa.types.is_boolean(t) or pa.types.is_integer(t) or is_text(t)
    return is_text(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)


def is_text(t: pa.DataType) -> bool:
    """Whether Arrow type ``t`` holds text (VARCHAR, ENUM)."""
    view = getattr(pa.types, "is_string_view", lambda _: False)(t)
    return view or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def as_struct(values: Any, what: str) -> pa.StructArray:
    """``values`` as a flat StructArray (a chunked array is combined).

    Raises:
        CfdbDataError: ``values`` is not a row (a STRUCT).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_struct(values.type):
        raise CfdbDataError(
            f"{what} takes a row as a STRUCT (a table alias such as I, struct_pack(...) or "
            f"{{'age': 40, ...}}), got {sql_type_name(values.type)}"
        )
    return values


def feature_columns(
    owner: str, features: Sequence[FeatureSpec], rows: pa.StructArray, what: str
) -> dict[str, np.ndarray]:
    """The raw feature columns from the non-NULL rows of ``rows``.

    Args:
        owner: who needs the features, for messages (``model 'rf'``).
        features: the features to read.
        rows: the rows.
        what: the SQL function, for messages.

    Raises:
        CfdbDataError: features missing from the row (all named), a value of the wrong type,
            or NULL values of a feature.
    """
    by_lower: dict[str, int] = {}
    for i in range(rows.type.num_fields):
        by_lower.setdefault(rows.type.field(i).name.lower(), i)
    missing = [f.name for f in features if f.name.lower() not in by_lower]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise CfdbDataError(
            f"{what}: {owner} needs feature{'s' if len(missing) > 1 else ''} "
            f"{names}, which the row lacks"
        )
    valid = None if rows.null_count == 0 else pc.is_valid(rows)
    out: dict[str, np.ndarray] = {}
    for spec in features:
        child = rows.field(by_lower[spec.name.lower()])
        if valid is not None:
            child = child.filter(valid)
        if child.null_count or pa.types.is_null(child.type):
            raise CfdbDataError(
                f"{what}: feature {spec.name!r} of {owner} is NULL in "
                f"{child.null_count or len(child)} row{'s' if child.null_count != 1 else ''}; "
                "models need complete rows"
            )
        if not _accepts(spec, child.type):
            raise CfdbDataError(
                f"{what}: feature {spec.name!r} of {owner} is {spec.type}, but "
                f"the row gives {sql_type_name(child.type)}"
            )
        if pa.types.is_dictionary(child.type):
            child = child.dictionary_decode()
        elif pa.types.is_decimal(child.type):
            child = child.cast(pa.float64())
        out[spec.name] = child.to_numpy(zero_copy_only=False)
    return out


def _scatter(rows: pa.StructArray, values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Results of the non-NULL rows, with NULL where the row itself was NULL."""
    if rows.null_count == 0:
        return pa.array(values, arrow_type)
    valid = np.asarray(pc.is_valid(rows).to_numpy(zero_copy_only=False), dtype=bool)
    full = np.empty(len(rows), dtype=object)
    full[valid] = list(values)
    full[~valid] = None
    return pa.array(full.tolist(), arrow_type)


def output_text(model: Model, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Labels of a classifier, or a regressor's values as the shortest exact text (as in
    ``CFs.Label``)."""
    if model.is_regression:
        return np.array([repr(float(v)) for v in model.predict_value(columns).tolist()], object)
    return model.predict(columns)


def predict(model: Model, rows: pa.StructArray, what: str = "predict") -> pa.Array:
    """``predict(model, row)``: the label ``PREDICT`` stores (a regressor's value as text)."""
    columns = feature_columns(f"model {model.name!r}", model.features, rows, what)
    n = len(rows) - rows.null_count
    values = output_text(model, columns) if n else np.zeros(0, dtype=object)
    return _scatter(rows, values, pa.string())


def predict_value(model: Model, rows: pa.StructArray, what: str = "predict_value") -> pa.Array:
    """``predict_value(model, row)``: a regressor's output (``Predictions.Score``)."""
    if not model.is_regression:
        raise CfdbUnsupportedError(
            f"{what}: model {model.name!r} is a classifier; use predict (its label) or "
            "predict_proba (its probability)"
        )
    columns = feature_columns(f"model {model.name!r}", model.features, rows, what)
    n = len(rows) - rows.null_count
    values = model.predict_value(columns) if n else np.zeros(0)
    return _scatter(rows, values, pa.float64())


def predict_proba(
    model: Model, rows: pa.StructArray, labels: Any = None, what: str = "predict_proba"
) -> pa.Array:
    """``predict_proba(model, row [, label])``: the probability of ``label``, or without one
    the probability of the predicted label (``Predictions.Score``).

    Args:
        labels: ``None``, or an Arrow array of labels, one per row (NULL: the predicted one).

    Raises:
        CfdbUnsupportedError: a regressor, or an estimator without probabilities.
        CfdbDataError: a label that is not one of the model's.
    """
    if model.is_regression:
        raise CfdbUnsupportedError(
            f"{what}: model {model.name!r} is a regression model and has no probabilities; "
            "use predict_value"
        )
    columns = feature_columns(f"model {model.name!r}", model.features, rows, what)
    n = len(rows) - rows.null_count
    if not n:
        return _scatter(rows, np.zeros(0), pa.float64())
    proba = model.predict_proba(columns)
    codes = np.argmax(proba, axis=1)
    if labels is not None and labels.null_count < len(labels):
        if isinstance(labels, pa.ChunkedArray):
            labels = labels.combine_chunks()
        if rows.null_count:
            labels = labels.filter(pc.is_valid(rows))
        wanted = [_label_text(v) for v in labels.to_pylist()]
        index = {label: i for i, label in enumerate(model.labels)}
        unknown = sorted({w for w in wanted if w is not None and w not in index})
        if unknown:
            raise CfdbDataError(
                f"{what}: {unknown[0]!r} is not a label of model {model.name!r} "
                f"(labels: {', '.join(model.labels)})"
            )
        codes = np.array(
            [index[w] if w is not None else c for w, c in zip(wanted, codes.tolist(), strict=True)],
            dtype=np.int64,
        )
    return _scatter(rows, proba[np.arange(n), codes], pa.float64())


def _label_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
