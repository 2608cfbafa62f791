"""cfdb models: a featurizer cfdb owns plus an estimator, trained, adopted and stored.

This layer is pure: in-memory columns in, arrays out; it never touches a database.

* :mod:`cfdb.models.featurizer`: raw feature columns -> float matrix (one-hot / target
  encoding, scaling) with inspectable per-feature blocks.
* :mod:`cfdb.models.kinds`: the registry of trainable classifier kinds.
* :mod:`cfdb.models.regressors`: the registry of trainable regressor kinds.
* :mod:`cfdb.models.model`: the fitted :class:`Model` (a classifier or a regressor, its
  ``task``), :func:`train` and :func:`from_estimator`.
* :mod:`cfdb.models.serialize`: :func:`dump`/:func:`load` to bytes that load without
  executing code.
"""

from __future__ import annotations

from cfdb.models.featurizer import ENCODINGS, FeatureBlock, Featurizer
from cfdb.models.kinds import MODEL_KINDS, ModelKind, decision_estimator
from cfdb.models.model import (
    TASKS,
    Model,
    encode_labels,
    from_estimator,
    label_string,
    resolve_kind,
    train,
)
from cfdb.models.regressors import REGRESSION_KINDS, regression_targets
from cfdb.models.serialize import (
    StoredModel,
    dump,
    format_for_path,
    load,
    read_estimator,
    refused_types,
    write_estimator,
)

__all__ = [
    "ENCODINGS",
    "MODEL_KINDS",
    "REGRESSION_KINDS",
    "TASKS",
    "FeatureBlock",
    "Featurizer",
    "Model",
    "ModelKind",
    "StoredModel",
    "decision_estimator",
    "dump",
    "encode_labels",
    "format_for_path",
    "from_estimator",
    "label_string",
    "load",
    "read_estimator",
    "refused_types",
    "regression_targets",
    "resolve_kind",
    "train",
    "write_estimator",
]
