"""Storing models as bytes that load without executing code found in them.

A :class:`StoredModel` is what the catalog keeps for a model: the featurizer as plain JSON,
the fitted estimator as a blob, and metadata as JSON. :func:`write_estimator` and
:func:`read_estimator` do the same for one estimator (a file a user imports). Estimator blobs
come in these formats:

* ``skops``: scikit-learn estimators (and raw-mode pipelines), written by ``skops.io.dumps``.
  Loading first lists the blob's untrusted types with ``skops.io.get_untrusted_types`` and
  accepts them only if each is allowlisted (:func:`refused_types`): classes defined under
  ``sklearn.``, ``numpy.`` or ``scipy.``; functions defined under ``sklearn.`` outside a few
  modules with side effects (datasets, testing); and a few inert builtin types. Function
  references under ``numpy.``/``scipy.`` are refused (they include file and shared-library
  loaders). Anything else raises :class:`~cfdb.errors.CfdbSecurityError` unless the caller
  opts in with ``allow_pickle=True``.
* ``xgboost-ubj``: an ``XGBClassifier``'s or ``XGBRegressor``'s booster as UBJSON bytes
  (trained ``xgboost``/``xgboost_regressor`` models and adopted raw-mode XGBoost models; the
  stored objective says which wrapper to rebuild); files may also be ``xgboost-json``. Other
  formats a plugin kind names are read by its ``load_estimator`` hook.
* ``pickle``: only for estimators skops cannot store with allowlisted types, and
  only with ``allow_pickle=True`` on both :func:`dump` and :func:`load`.

Note: scikit-learn tree structures (``sklearn.tree._tree.Tree``, histogram-boosting
``TreePredictor``) are trusted here although skops flags them: they hold node indices that
scikit-learn does not bounds-check, so a hand-crafted blob could crash the process, but it
cannot run code. cfdb only loads blobs from its own database.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from cfdb.errors import CfdbDataError, CfdbError, CfdbSchemaError, CfdbSecurityError
from cfdb.models.featurizer import Featurizer
from cfdb.models.kinds import MODEL_KINDS, xgboost_from_bytes, xgboost_to_ubj
from cfdb.models.model import TASKS, Model
from cfdb.models.regressors import REGRESSION_KINDS
from cfdb.types import FeatureSpec

FORMATS = ("skops", "xgboost-ubj", "xgboost-json", "pickle")
_META_VERSION = 1
_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
_SAFE_BUILTINS = frozenset(
    "builtins." + t
    for t in ("slice", "complex", "frozenset", "bytes", "bytearray", "range", "NoneType")
)
_DENIED_FUNCTION_MODULES = (
    "sklearn.datasets",
    "sklearn.utils._testing",
    "sklearn.externals",
    "sklearn._build_utils",
    "sklearn.conftest",
)
_PICKLE_HINT = (
    "store and load it with allow_pickle=True only if you trust everyone who can write "
    "to the database: unpickling runs arbitrary code"
)


@dataclass(frozen=True)
class StoredModel:
    """A model as stored: every field is a plain value for a database column.

    Attributes:
        format: how ``blob`` is encoded (``skops``, ``xgboost-ubj`` or ``pickle``).
        featurizer_json: the featurizer's state as JSON (``"null"`` in raw mode).
        blob: the fitted estimator.
        meta_json: name, kind, task, params, labels, mode, seed, features and library
            versions (a missing task reads as ``classification``).
    """

    format: str
    featurizer_json: str
    blob: bytes
    meta_json: str

    @property
    def meta(self) -> dict[str, Any]:
        """The decoded metadata."""
        return json.loads(self.meta_json)


# --------------------------------------------------------------------------------------------
# Trust checks
# --------------------------------------------------------------------------------------------


def _resolve(name: str) -> Any:
    """The object a dotted name refers to, looked up in already imported modules only.

    Importing a module named by a blob could itself run code (``__main__`` modules, test
    hooks), so names in modules nobody imported yet resolve to None and are refused.
    """
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


#: Modules whose classes may appear in a stored estimator besides the estimators themselves:
#: the fitted state of trees, neighbour indexes, losses, optimizers and calibrators.
_ALLOWED_CLASS_MODULES = frozenset(
    {
        "sklearn.tree._tree",
        "sklearn.neighbors._kd_tree",
        "sklearn.neighbors._ball_tree",
        "sklearn.metrics._dist_metrics",
        "sklearn.ensemble._hist_gradient_boosting.predictor",
        "sklearn.ensemble._hist_gradient_boosting.binning",
        "sklearn.neural_network._stochastic_optimizers",
        "sklearn.calibration",
        "sklearn._loss.loss",
        "sklearn._loss.link",
        "sklearn.utils._bunch",
        "numpy",
        "numpy.dtypes",
        "numpy.random.mtrand",
        "numpy.random._generator",
        "numpy.random._pcg64",
        "numpy.random._mt19937",
        "numpy.random._philox",
        "numpy.random._sfc64",
        "numpy.random.bit_generator",
    }
)


def _is_allowed_class(obj: type) -> bool:
    """An allow-list, not a deny-list: scikit-learn estimators, and the classes of the
    modules in :data:`_ALLOWED_CLASS_MODULES` (scipy: sparse matrices only)."""
    module = getattr(obj, "__module__", "") or ""
    if module in _ALLOWED_CLASS_MODULES:
        return True
    if module.startswith("scipy.sparse."):
        import scipy.sparse

        return issubclass(obj, scipy.sparse.spmatrix | scipy.sparse.sparray)
    if module.startswith("sklearn.") and not module.startswith(_DENIED_FUNCTION_MODULES):
        from sklearn.base import BaseEstimator

        return issubclass(obj, BaseEstimator)
    return False


def _is_allowed(name: str) -> bool:
    if name in _SAFE_BUILTINS:
        return True
    if not name.startswith(_ALLOWED_PREFIXES):
        return False
    obj = _resolve(name)
    if obj is None:
        return False
    if isinstance(obj, type):
        return _is_allowed_class(obj)
    module = getattr(obj, "__module__", None) or ""
    return (
        callable(obj)
        and name.startswith("sklearn.")
        and module.startswith("sklearn.")
        and not module.startswith(_DENIED_FUNCTION_MODULES)
    )


def refused_types(types: list[str]) -> list[str]:
    """The names among skops' untrusted ``types`` that cfdb does not allowlist."""
    return sorted(t for t in types if not _is_allowed(t))


def _untrusted_types(blob: bytes, what: str) -> list[str]:
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(data=blob))
    except Exception as exc:
        raise CfdbSchemaError(f"{what} is not a readable skops blob: {exc}") from None


def skops_dumps(estimator: Any, *, what: str, allow_pickle: bool = False) -> tuple[str, bytes]:
    """``(format, blob)`` of an estimator: skops if it loads with allowlisted types only.

    Otherwise pickle when ``allow_pickle`` is true, else :class:`CfdbSecurityError`.
    """
    import skops.io

    try:
        blob = skops.io.dumps(estimator)
        refused = refused_types(_untrusted_types(blob, what))
        problem = f"it holds types outside cfdb's allowlist: {', '.join(refused)}"
    except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        refused = ["<unsupported>"]
        problem = f"skops cannot store it ({exc})"
    if not refused:
        return "skops", blob
    if allow_pickle:
        return "pickle", pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    raise CfdbSecurityError(f"{what} cannot be stored safely: {problem}", hint=_PICKLE_HINT)


def skops_loads(blob: bytes, *, what: str, allow_pickle: bool = False) -> Any:
    """Load a skops blob after checking its types against the allowlist."""
    import skops.io

    untrusted = _untrusted_types(blob, what)
    refused = refused_types(untrusted)
    if refused and not allow_pickle:
        raise CfdbSecurityError(
            f"{what} holds types outside cfdb's allowlist: {', '.join(refused)}",
            hint=_PICKLE_HINT,
        )
    try:
        return skops.io.loads(blob, trusted=untrusted)
    except Exception as exc:
        raise CfdbSchemaError(f"{what} cannot be loaded: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Single estimators (files a user imports)
# --------------------------------------------------------------------------------------------

_SUFFIX_FORMATS = {
    ".skops": "skops",
    ".ubj": "xgboost-ubj",
    ".json": "xgboost-json",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "pickle",
}


def _is_xgboost_model(estimator: Any) -> bool:
    xgboost = sys.modules.get("xgboost")
    return xgboost is not None and isinstance(
        estimator, xgboost.XGBClassifier | xgboost.XGBRegressor
    )


def format_for_path(path: str) -> str:
    """The estimator format a file name's suffix implies (``model.skops`` -> ``skops``).

    Raises:
        CfdbDataError: the suffix names no known format.
    """
    lower = str(path).lower()
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    known = ", ".join(_SUFFIX_FORMATS)
    raise CfdbDataError(
        f"cannot tell the model format of {str(path)!r} from its suffix (known: {known}); "
        "give the format explicitly"
    )


def write_estimator(
    estimator: Any, *, allow_pickle: bool = False, what: str = "estimator"
) -> tuple[str, bytes]:
    """``(format, blob)`` of one fitted estimator, in the safest format that holds it.

    An ``XGBClassifier`` or ``XGBRegressor`` becomes ``xgboost-ubj``; anything else ``skops`` when its types are
    allowlisted, else ``pickle`` if ``allow_pickle`` (otherwise :class:`CfdbSecurityError`).
    """
    if _is_xgboost_model(estimator):
        return "xgboost-ubj", xgboost_to_ubj(estimator)
    return skops_dumps(estimator, what=what, allow_pickle=allow_pickle)


def read_estimator(
    blob: bytes,
    fmt: str,
    *,
    allow_pickle: bool = False,
    n_classes: int | None = None,
    task: str | None = None,
    what: str = "estimator",
) -> Any:
    """Inverse of :func:`write_estimator` (also reads ``xgboost-json``).

    ``n_classes`` and ``task`` are checked for XGBoost boosters when given.

    Raises:
        CfdbSecurityError: pickle, or skops types outside the allowlist, without
            ``allow_pickle``.
        CfdbSchemaError: unreadable bytes or an unknown format.
    """
    if fmt == "skops":
        return skops_loads(blob, what=what, allow_pickle=allow_pickle)
    if fmt in ("xgboost-ubj", "xgboost-json"):
        return xgboost_from_bytes(bytes(blob), n_classes, task=task)
    if fmt == "pickle":
        if not allow_pickle:
            raise CfdbSecurityError(
                f"{what} is a pickle; loading it could run code", hint=_PICKLE_HINT
            )
        return pickle.loads(blob)  # explicit opt-in above
    raise CfdbSchemaError(f"{what} has unknown format {fmt!r}; known: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------
# dump / load
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    out = {}
    for module in ("numpy", "sklearn", "xgboost", "skops", "pandas"):
        with contextlib.suppress(ImportError):
            out[module] = str(importlib.import_module(module).__version__)
    return out


def dump(model: Model, *, allow_pickle: bool = False) -> StoredModel:
    """The stored form of a model.

    Args:
        model: the model.
        allow_pickle: allow the ``pickle`` format for a raw-mode estimator that skops cannot
            store with allowlisted types.

    Raises:
        CfdbSecurityError: the estimator would need pickle and ``allow_pickle`` is false.
        CfdbDataError: the parameters are not JSON values.
    """
    what = f"model {model.name!r}"
    fmt: str
    if model.mode == "featurized":
        kind = (REGRESSION_KINDS if model.is_regression else MODEL_KINDS).get(model.kind)
        if kind.storage != "skops" and kind.dump_estimator is not None:
            fmt, blob = kind.storage, kind.dump_estimator(model.estimator)
        else:
            fmt, blob = skops_dumps(model.estimator, what=what, allow_pickle=allow_pickle)
        featurizer_json = json.dumps(model.featurizer.to_dict() if model.featurizer else None)
    else:
        fmt, blob = write_estimator(model.estimator, allow_pickle=allow_pickle, what=what)
        featurizer_json = "null"
    meta = {
        "version": _META_VERSION,
        "name": model.name,
        "kind": model.kind,
        "task": model.task,
        "mode": model.mode,
        "params": model.params,
        "labels": list(model.labels),
        "seed": model.seed,
        "features": [f.to_dict() for f in model.features],
        "versions": _versions(),
    }
    try:
        meta_json = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise CfdbDataError(f"parameters of {what} are not plain values: {exc}") from None
    return StoredModel(fmt, featurizer_json, bytes(blob), meta_json)


def load(stored: StoredModel, *, allow_pickle: bool = False) -> Model:
    """Rebuild a model from its stored form (see :func:`_load`); a damaged metadata record
    (a missing field, a value of the wrong type) is a :class:`CfdbSchemaError`."""
    try:
        return _load(stored, allow_pickle=allow_pickle)
    except CfdbError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"field {exc} is missing" if isinstance(exc, KeyError) else str(exc)
        raise CfdbSchemaError(f"stored model metadata is damaged: {detail}") from None


def _load(stored: StoredModel, *, allow_pickle: bool = False) -> Model:
    """Rebuild a model from its stored form without executing code found in it.

    Args:
        stored: what :func:`dump` produced.
        allow_pickle: accept the ``pickle`` format and skops blobs with types outside the
            allowlist. Only for databases whose every writer is trusted.

    Raises:
        CfdbSecurityError: the blob needs pickle or untrusted types and ``allow_pickle`` is
            false.
        CfdbSchemaError: the stored form is unreadable or of an unknown format.
    """
    try:
        meta = json.loads(stored.meta_json)
        featurizer_state = json.loads(stored.featurizer_json)
    except (TypeError, ValueError) as exc:
        raise CfdbSchemaError(f"stored model metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CfdbSchemaError("stored model metadata is not a JSON object")
    if meta.get("version") != _META_VERSION:
        raise CfdbSchemaError(f"stored model metadata has unknown version {meta.get('version')!r}")
    name = str(meta["name"])
    what = f"stored model {name!r}"
    labels = [str(v) for v in meta["labels"]]
    task = str(meta.get("task") or "classification")
    if task not in TASKS:
        raise CfdbSchemaError(f"{what} has unknown task {task!r}")
    n_classes = len(labels) if task == "classification" else None
    kind = None
    if meta["mode"] == "featurized" and stored.format not in FORMATS:
        registry = REGRESSION_KINDS if task == "regression" else MODEL_KINDS
        kind = registry.get(str(meta["kind"]))
    if kind is not None and kind.storage == stored.format and kind.load_estimator is not None:
        estimator = kind.load_estimator(bytes(stored.blob), n_classes or 0)
    else:
        estimator = read_estimator(
            stored.blob,
            stored.format,
            allow_pickle=allow_pickle,
            n_classes=n_classes,
            task=task,
            what=what,
        )
    featurizer = Featurizer.from_dict(featurizer_state) if featurizer_state is not None else None
    return Model(
        name=name,
        kind=str(meta["kind"]),
        params=dict(meta["params"]),
        features=[FeatureSpec.from_dict(f) for f in meta["features"]],
        labels=labels,
        featurizer=featurizer,
        estimator=estimator,
        mode=str(meta["mode"]),
        seed=meta.get("seed"),
        task=task,
    )
