"""From query results to grid inputs: units, classes, slices and feature specs (pure).

* Units: every training row is a unit identified by its key (or its position when there is
  no key), or ``UNITS BY col`` groups rows by ``col``'s value. Units are ordered by id
  (numerically when every id is a number) so designs are reproducible.
* Classes: the grid's labels are the sorted label strings of the training universe; an
  evaluation label the universe never had gets code -1 (always wrong).
* Positive class: the ``positive`` option, else the "yes-like" label of a binary pair
  (``1``/``true``/``yes``/``y``/``t``), else the second label in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cfdb.errors import CfdbDataError
from cfdb.models import label_string
from cfdb.types import FeatureSpec

_YES = ("1", "true", "yes", "y", "t", "positive", "pos")


@dataclass
class Units:
    """The units of a training universe.

    Attributes:
        ids: unit ids as text, in unit-index order.
        tuple_ids: integer ids (the key when integral, else the unit index).
        rows: for each unit, its row indices in the universe.
    """

    ids: list[str]
    tuple_ids: list[int]
    rows: list[np.ndarray]


def _is_integral(values: np.ndarray) -> bool:
    try:
        as_float = values.astype(float)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(as_float)) and np.all(np.floor(as_float) == as_float))


def make_units(keys: np.ndarray | None, n_rows: int, *, grouped: bool, what: str) -> Units:
    """Units from a key column (rows) or a grouping column (``grouped``); None: row order.

    Raises:
        CfdbDataError: NULL keys, or a repeated key when units are rows.
    """
    if keys is None:
        return Units(
            [str(i) for i in range(n_rows)],
            list(range(n_rows)),
            [np.array([i]) for i in range(n_rows)],
        )
    keys = np.asarray(keys)
    if len(keys) and pd.isna(keys).any():
        raise CfdbDataError(f"{what} is NULL in {int(pd.isna(keys).sum())} training rows")
    integral = len(keys) > 0 and keys.dtype.kind in "biuf" and _is_integral(keys)
    text = np.array([label_string(k) for k in keys.tolist()], dtype=object)
    if integral:
        order_keys = keys.astype(float)
        uniq, first = np.unique(order_keys, return_index=True)
        labels = text[first]
        inverse = np.searchsorted(uniq, order_keys)
    else:
        labels, inverse = np.unique(text, return_inverse=True)
    if not grouped and len(labels) != len(keys):
        counts = np.bincount(inverse)
        dup = labels[int(np.argmax(counts))]
        raise CfdbDataError(
            f"{what} repeats the value {dup!r}; every training row needs its own key"
        )
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(labels) + 1))
    rows = [order[bounds[i] : bounds[i + 1]] for i in range(len(labels))]
    tuple_ids = [int(float(v)) for v in labels] if integral else list(range(len(labels)))
    return Units([str(v) for v in labels], tuple_ids, rows)


def class_codes(
    train_labels: np.ndarray, eval_labels: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(classes, training codes, evaluation codes); unseen evaluation labels get -1.

    Raises:
        CfdbDataError: NULL labels.
    """
    for labels, where in ((train_labels, "training"), (eval_labels, "evaluation")):
        if len(labels) and pd.isna(np.asarray(labels, dtype=object)).any():
            raise CfdbDataError(f"the label is NULL in some {where} rows")
    train_text = np.array([label_string(v) for v in train_labels], dtype=object)
    classes = sorted(set(train_text.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    codes = np.fromiter((index[t] for t in train_text), np.int64, len(train_text))
    eval_codes = np.fromiter(
        (index.get(label_string(v), -1) for v in eval_labels), np.int64, len(eval_labels)
    )
    return classes, codes, eval_codes


def positive_code(classes: Sequence[str], option: Any = None) -> int:
    """The positive class's code (see the module docstring).

    Raises:
        CfdbDataError: ``option`` is not one of the classes.
    """
    if option is not None:
        text = label_string(option)
        if text not in classes:
            raise CfdbDataError(f"positive label {text!r} is not one of the labels {list(classes)}")
        return list(classes).index(text)
    if len(classes) == 2:
        for i, c in enumerate(classes):
            if c.lower() in _YES:
                return i
    return 1 if len(classes) > 1 else 0


def slice_rows(values: np.ndarray | None, n_rows: int) -> list[tuple[str, str | None, np.ndarray]]:
    """``(name, value, rows)`` of slice ``all`` and, with ``values``, one slice per value."""
    out: list[tuple[str, str | None, np.ndarray]] = [("all", None, np.arange(n_rows))]
    if values is None:
        return out
    text = np.array(["NULL" if pd.isna(v) else label_string(v) for v in values], dtype=object)
    for value in sorted(set(text.tolist())):
        out.append((value, value, np.flatnonzero(text == value)))
    return out


def with_domains(
    specs: Sequence[FeatureSpec], *columns: dict[str, np.ndarray]
) -> list[FeatureSpec]:
    """Give categorical specs without a domain the sorted values seen in ``columns``.

    A fixed domain keeps the one-hot encoding identical across every subset of the grid.
    """
    out = []
    for spec in specs:
        if spec.is_categorical and spec.domain is None:
            seen: set[str] = set()
            for cols in columns:
                if spec.name in cols:
                    seen.update(label_string(v) for v in cols[spec.name] if not pd.isna(v))
            spec = FeatureSpec(spec.name, spec.type, tuple(sorted(seen)), mutable=spec.mutable)
        out.append(spec)
    return out
