"""The inputs of the amortized scaling-law estimator: one feature row per unit of a grid.

Covert et al. (ICML 2024, section 5.2) map a data point ``(x, y)`` to its law. A grid's unit
is a training row (or a group of rows, ``UNITS BY``), so its input is the mean of its rows'
encoded features (one-hot categories, standardized numbers: the grid's own featurizer) beside
its label: the share of its rows in each class for a classifier, the mean target for a
regressor. Every unit of the grid gets a row, sampled or not, so the estimator predicts all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfdb.engine.handlers.grid_data import _prepare
from cfdb.models import Featurizer


@dataclass
class UnitFeatures:
    """Features of every unit of a grid, by unit index.

    Attributes:
        x: (units, columns) matrix.
        ids: the UnitId of each row.
        names: column names.
    """

    x: np.ndarray
    ids: list[str]
    names: list[str]


def unit_features(session: Any, row: dict[str, Any]) -> UnitFeatures:
    """Encode the grid's training universe and average it per unit."""
    prepared = _prepare(session, row)
    data = prepared.data
    featurizer = Featurizer(data.features, encoding="onehot", scale=True).fit(data.train)
    rows_x = featurizer.transform(data.train)
    names = list(featurizer.output_names_)
    if data.task == "classification":
        labels = np.zeros((len(data.train_y), len(data.classes)))
        labels[np.arange(len(data.train_y)), data.train_y] = 1.0
        names += [f"label={c}" for c in data.classes]
    else:
        y = np.asarray(data.train_y, dtype=float)
        sd = float(y.std()) or 1.0
        labels = ((y - y.mean()) / sd)[:, None]
        names.append("label")
    both = np.hstack([rows_x, labels])
    units = prepared.units
    if all(len(r) == 1 for r in units.rows):
        x = both[np.array([int(r[0]) for r in units.rows], dtype=np.int64)]
    else:
        x = np.vstack([both[r].mean(axis=0) for r in units.rows])
    return UnitFeatures(x, list(units.ids), names)
