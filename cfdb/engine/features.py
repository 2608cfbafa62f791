"""Which columns of a query are features: one decision for every statement.

``CREATE GRID``, ``WHATIF`` and ``VALUATE`` (and ``LOAD INSTANCES``, which writes ``Features``
for ``CREATE MODEL``) call :func:`default_features`, so the same training rows give the same
feature set everywhere, and a column that is not a feature is named with the reason. cfdb's
own columns of ``Instances`` (``InstanceId``, ``GroundTruth``, ``split``) are never features,
nor are the label, the unit key, or a column whose type no model can use. A grid's ``UNITS BY``
column stays a feature, as it is for ``WHATIF`` over the same rows: the grid's full-set cell
and a ``WHATIF``'s baseline are then the same model on the same features (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: cfdb's own columns of ``Instances``: an id, the label and the split, never features.
CFDB_COLUMNS = {"instanceid": "cfdb id", "groundtruth": "cfdb label", "split": "cfdb split"}


@dataclass(frozen=True)
class FeatureChoice:
    """The chosen feature columns, and every other column with why it is not a feature."""

    features: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """``"column (reason)"`` per column that is not a feature, for a statement's result."""
        return [f"{column} ({why})" for column, why in self.dropped]


def default_features(
    columns: Sequence[tuple[str, str | None]],
    *,
    label: str | None,
    keys: Iterable[str] = (),
    units: str | None = None,
    excluded: Mapping[str, str] | None = None,
    declared: Sequence[str] | None = None,
    available: Iterable[str] | None = None,
) -> FeatureChoice:
    """The default features among ``columns`` (name, feature type or ``None``), in order.

    Args:
        label: the label column.
        keys: key columns (the unit key, a base table's primary key).
        units: a grid's ``UNITS BY`` column (kept as a feature; accepted so callers need not
            know the rule).
        excluded: other columns to leave out, with the reason (e.g. a ``STRIKES BY`` column).
        declared: the feature space of ``Features``; when given, other columns are left out.
        available: the evaluation query's columns; a column it lacks cannot be a feature
            (e.g. a ``UNITS BY`` provider column the evaluation data does not have).
    """
    label_low = label.lower() if label else None
    key_set = {k.lower() for k in keys}
    other = {k.lower(): v for k, v in (excluded or {}).items()}
    declared_set = None if declared is None else {d.lower() for d in declared}
    available_set = None if available is None else {a.lower() for a in available}
    features: list[str] = []
    dropped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, ftype in columns:
        low = name.lower()
        if low in seen:
            continue
        seen.add(low)
        if low == label_low:
            why = "label"
        elif low in CFDB_COLUMNS:
            why = CFDB_COLUMNS[low]
        elif low in key_set:
            why = "key"
        elif low in other:
            why = other[low]
        elif declared_set is not None and low not in declared_set:
            why = "not in Features"
        elif available_set is not None and low not in available_set:
            why = "not in the evaluation query"
        elif ftype is None:
            why = "type cannot be a feature"
        else:
            features.append(name)
            continue
        dropped.append((name, why))
    return FeatureChoice(features, dropped)
