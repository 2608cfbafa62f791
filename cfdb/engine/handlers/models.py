"""CREATE MODEL, PREDICT, IMPORT MODEL, DROP MODEL: models and predictions as tables.

A model is stored in ``Models`` as its featurizer (JSON) and its estimator in a format that
loads without running code from the file (skops with allow-listed types, XGBoost UBJ); a
pickle is stored or loaded only with the ``allow_pickle`` opt-in. ``PREDICT`` appends one
``Predictions`` row per instance not yet predicted by the model (so re-running it is a no-op).

``CREATE MODEL`` options that are cfdb's, not the estimator's: ``label`` (default
``GroundTruth``), ``features`` (default: every feature), ``encoding`` (``onehot`` default, or
``target``: the CFDB paper's smoothed target encoding), ``seed``.

Regression models (CFDB paper, section 4.4): a kind of
:data:`~cfdb.models.regressors.REGRESSION_KINDS` (``ridge``, ``random_forest_regressor``...)
trains a regressor on a numeric label (text holding numbers is read as numbers; anything else
is a :class:`~cfdb.errors.CfdbDataError` naming the column), stored with ``Task =
'regression'`` and ``Labels`` NULL; ``IMPORT MODEL`` adopts a fitted regressor the same way
(detected with scikit-learn's ``is_regressor``, or ``WITH (task = 'regression')``). ``PREDICT``
with a regressor writes ``Label`` NULL and ``Score`` = the predicted value, and reports MSE and
MAE against ``GroundTruth`` (cast to a number) instead of accuracy.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb import models
from cfdb.engine.handlers import handles
from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbError,
    CfdbSyntaxError,
    CfdbUnsupportedError,
)
from cfdb.lang import nodes
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.types import FeatureSpec

_CFDB_OPTIONS = ("label", "features", "encoding", "seed")


def columns_of(table: pa.Table) -> dict[str, np.ndarray]:
    """A pyarrow table as name -> numpy array (case-preserving names).

    Raises:
        CfdbDataError: the query returns two columns of the same name (``SELECT *, x``).
    """
    seen: set[str] = set()
    for name in table.column_names:
        if name.lower() in seen:
            raise CfdbDataError(f"the query returns more than one column named {name!r}")
        seen.add(name.lower())
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _lookup(columns: dict[str, np.ndarray], name: str) -> np.ndarray:
    for key, values in columns.items():
        if key.lower() == name.lower():
            return values
    raise KeyError(name)


def _feature_columns(
    data: pa.Table, features: list[FeatureSpec], what: str, script: str, span: tuple[int, int]
) -> dict[str, np.ndarray]:
    cols = columns_of(data)
    out = {}
    for f in features:
        try:
            out[f.name] = _lookup(cols, f.name)
        except KeyError:
            raise CfdbDataError(
                f"{what} needs feature {f.name!r}, which the query does not return"
            ).located(script, *span) from None
    return out


def model_features(store: Any, names: Any = None) -> list[FeatureSpec]:
    """The feature space (derived from Instances first if Features is empty)."""
    features = catalog.read_features(store)
    if not features and store.table_exists(catalog.INSTANCES):
        features = catalog.derive_features(store)
        catalog.ensure_cfs_table(store, features)
    if not features:
        raise CfdbCatalogError(
            "there are no features", hint="load instances first (LOAD INSTANCES or LOAD DATASET)"
        )
    if names is None:
        return features
    wanted = [names] if isinstance(names, str) else list(names)
    by_lower = {f.name.lower(): f for f in features}
    missing = [n for n in wanted if str(n).lower() not in by_lower]
    if missing:
        raise CfdbCatalogError(f"unknown feature {missing[0]!r}")
    return [by_lower[str(n).lower()] for n in wanted]


def load_model(session: Any, name: str) -> tuple[int, models.Model]:
    """The stored model called ``name`` as a callable :class:`models.Model`."""
    row = catalog.model_row(session.store, name)
    if row is None:
        known = ", ".join(catalog.model_names(session.store)) or "none"
        raise CfdbCatalogError(f"model {name!r} does not exist (models: {known})")
    if row["Artifact"] is None:
        raise CfdbUnsupportedError(
            f"model {name!r} has no stored estimator (it was entered by hand), so cfdb cannot run it"
        )
    stored = models.StoredModel(
        format=row["Format"],
        featurizer_json=row["Featurizer"] or "null",
        blob=bytes(row["Artifact"]),
        meta_json=row["Meta"] or "{}",
    )
    return int(row["ModelId"]), models.load(stored, allow_pickle=session.allow_pickle)


def _store_model(
    session: Any,
    model: models.Model,
    *,
    kind: str,
    params: dict[str, Any],
    train_query: str | None,
    train_rows: int | None,
    metrics: dict[str, Any] | None,
    encoding: str | None,
    label_column: str | None = None,
) -> int:
    stored = models.dump(model, allow_pickle=session.allow_pickle)
    return catalog.insert_model(
        session.store,
        {
            "Name": model.name,
            "Kind": kind,
            "Params": params,
            "Task": model.task,
            "FeatureNames": [f.name for f in model.features],
            "Labels": None if model.is_regression else list(model.labels),
            "LabelColumn": label_column,
            "Encoding": encoding,
            "Featurizer": stored.featurizer_json,
            "Format": stored.format,
            "Artifact": stored.blob,
            "Meta": stored.meta_json,
            "TrainQuery": train_query,
            "TrainRows": train_rows,
            "Metrics": metrics,
        },
    )


def _replace_or_refuse(
    session: Any, name: str, replace: bool, script: str, span: tuple[int, int]
) -> None:
    row = catalog.model_row(session.store, name)
    if row is None:
        return
    if not replace:
        raise CfdbCatalogError(
            f"model {name!r} already exists", hint="use CREATE OR REPLACE MODEL, or DROP MODEL"
        ).located(script, *span)
    catalog.delete_model(session.store, int(row["ModelId"]))


@handles(nodes.CreateModel)
def create_model(session: Any, node: nodes.CreateModel, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    name, kind = str(node.args["this"]), str(node.args["kind"])
    try:
        task = models.resolve_kind(kind)[0]
    except CfdbError as err:
        raise err.located(script, *node.span("kind")) from None
    _replace_or_refuse(session, name, bool(node.args.get("replace")), script, node.span("name"))
    params = node.params()
    options = {k.lower(): params.pop(k) for k in list(params) if k.lower() in _CFDB_OPTIONS}
    try:
        features = model_features(store, options.get("features"))
    except CfdbError as err:
        p = node.param("features")
        raise err.located(script, *(p.span if p else node.span("name"))) from None
    train = node.args["train"]
    data = store.run_script_arrow(train.text, script, train.start)
    train_span = node.span("train")
    label_name = str(options.get("label") or "GroundTruth")
    columns = _feature_columns(data, features, f"model {name!r}", script, train_span)
    try:
        labels = _lookup(columns_of(data), label_name)
    except KeyError:
        raise CfdbDataError(f"the training query returns no label column {label_name!r}").located(
            script, *train_span
        ) from None
    if data.num_rows == 0:
        raise CfdbDataError("the training query returns no rows").located(script, *train_span)
    encoding = str(options.get("encoding") or "onehot")
    started = time.perf_counter()
    try:
        model = models.train(
            kind,
            params,
            features,
            columns,
            labels,
            name=name,
            encoding=encoding,
            seed=int(options.get("seed", session.seed)),
            label_name=label_name,
        )
    except CfdbError as err:
        raise err.located(script, *_span_for_message(node, str(err), train_span)) from None
    seconds = time.perf_counter() - started
    if task == "regression":
        errors = model.predict_value(columns) - models.regression_targets(labels)
        mse, mae = float(np.mean(errors**2)), float(np.mean(np.abs(errors)))
        metrics = {"train_mse": mse, "train_mae": mae, "train_seconds": seconds}
        quality = {"TrainMSE": [mse], "TrainMAE": [mae]}
    else:
        predicted = model.predict(columns)
        accuracy = float(np.mean(predicted.astype(str) == labels.astype(str)))
        metrics = {"train_accuracy": accuracy, "train_seconds": seconds}
        quality = {"TrainAccuracy": [accuracy]}
    model_id = _store_model(
        session,
        model,
        kind=kind.lower(),
        params=params,
        train_query=train.text,
        train_rows=int(data.num_rows),
        metrics=metrics,
        encoding=encoding,
        label_column=label_name,
    )
    return pa.table(
        {
            "ModelId": [model_id],
            "Name": [name],
            "Kind": [kind.lower()],
            "TrainRows": [int(data.num_rows)],
            **quality,
            "Seconds": [round(seconds, 3)],
        }
    )


def _span_for_message(
    node: nodes.CfdbStatement, message: str, default: tuple[int, int]
) -> tuple[int, int]:
    # Point at the WITH parameter the error names, if any (e.g. an unknown estimator option).
    for p in node.args.get("params") or []:
        if repr(p.name) in message or f"'{p.args['this']}'" in message:
            return p.span
    return default


@handles(nodes.Predict)
def predict(session: Any, node: nodes.Predict, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    name = str(node.args["this"])
    try:
        model_id, model = load_model(session, name)
        truth_name = (catalog.model_row(store, name) or {}).get("LabelColumn") or "GroundTruth"
    except CfdbError as err:
        raise err.located(script, *node.span("name")) from None
    source = node.args["source"]
    span = node.span("source")
    rel = store.run_script_text(source.text, script, source.start)
    if "instanceid" not in {c.lower() for c in rel.columns}:
        raise CfdbDataError("PREDICT needs an InstanceId column in its query").located(
            script, *span
        )
    data = store.arrow(
        f"SELECT * FROM ({source.text}) AS src WHERE src.InstanceId NOT IN "
        f"(SELECT InstanceId FROM Predictions WHERE ModelId = ?)",
        [model_id],
    )
    total = store.execute(f"SELECT count(*) FROM ({source.text})")[0][0]
    columns = _feature_columns(data, model.features, f"model {name!r}", script, span)
    ids = _lookup(columns_of(data), "InstanceId")
    if data.num_rows and any(v is None for v in ids.tolist()):
        raise CfdbDataError("InstanceId is NULL in some rows").located(script, *span)
    if model.is_regression:
        try:
            return _predict_values(
                store, name, model_id, model, data, columns, ids, total, truth_name
            )
        except CfdbError as err:
            raise err.located(script, *span) from None
    if data.num_rows:
        try:
            proba = model.predict_proba(columns)
        except CfdbError as err:
            raise err.located(script, *span) from None
        codes = np.argmax(proba, axis=1)
        labels = np.asarray(model.labels, dtype=object)[codes]
        first = catalog.next_id(store, catalog.PREDICTIONS, "PredictionId")
        catalog.insert_arrow(
            store,
            catalog.PREDICTIONS,
            pa.table(
                {
                    "PredictionId": pa.array(np.arange(first, first + data.num_rows), pa.int64()),
                    "ModelId": pa.array(np.full(data.num_rows, model_id), pa.int32()),
                    "InstanceId": pa.array(ids.astype(np.int64), pa.int64()),
                    "Label": pa.array(labels.tolist(), pa.string()),
                    "Score": pa.array(proba[np.arange(data.num_rows), codes], pa.float64()),
                }
            ),
        )
    accuracy = None
    if truth_name.lower() in {c.lower() for c in data.column_names} and data.num_rows:
        truth = _lookup(columns_of(data), truth_name)
        known = np.array([t is not None for t in truth])
        if known.any():
            accuracy = float(np.mean(labels[known].astype(str) == truth[known].astype(str)))
    return pa.table(
        {
            "Model": [name],
            "Predicted": [int(data.num_rows)],
            "AlreadyPredicted": [int(total - data.num_rows)],
            "Accuracy": pa.array([accuracy], pa.float64()),
        }
    )


def _predict_values(
    store: Any,
    name: str,
    model_id: int,
    model: models.Model,
    data: pa.Table,
    columns: dict[str, np.ndarray],
    ids: np.ndarray,
    total: int,
    truth_name: str = "GroundTruth",
) -> pa.Table:
    """PREDICT with a regressor: ``Label`` NULL, ``Score`` the output; MSE and MAE against
    the model's label column (cast to a number) when the query returns it."""
    n = data.num_rows
    values = np.zeros(0)
    if n:
        values = model.predict_value(columns)
        first = catalog.next_id(store, catalog.PREDICTIONS, "PredictionId")
        catalog.insert_arrow(
            store,
            catalog.PREDICTIONS,
            pa.table(
                {
                    "PredictionId": pa.array(np.arange(first, first + n), pa.int64()),
                    "ModelId": pa.array(np.full(n, model_id), pa.int32()),
                    "InstanceId": pa.array(ids.astype(np.int64), pa.int64()),
                    "Label": pa.nulls(n, pa.string()),
                    "Score": pa.array(values, pa.float64()),
                }
            ),
        )
    mse = mae = None
    if truth_name.lower() in {c.lower() for c in data.column_names} and n:
        known, truth = numeric_truth(_lookup(columns_of(data), truth_name))
        if known.any():
            errors = values[known] - truth[known]
            mse, mae = float(np.mean(errors**2)), float(np.mean(np.abs(errors)))
    return pa.table(
        {
            "Model": [name],
            "Predicted": [int(n)],
            "AlreadyPredicted": [int(total - n)],
            "MSE": pa.array([mse], pa.float64()),
            "MAE": pa.array([mae], pa.float64()),
        }
    )


def numeric_truth(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``GroundTruth`` values as numbers: ``(known, values)``, NULLs unknown.

    Ground truth is stored as text, so a regressor's is cast to DOUBLE.

    Raises:
        CfdbDataError: a value that is not a number, naming it.
    """
    known = np.zeros(len(truth), dtype=bool)
    values = np.zeros(len(truth))
    for i, t in enumerate(truth.tolist()):
        if t is None or (isinstance(t, float) and t != t):
            continue
        try:
            if isinstance(t, bool):
                raise ValueError(t)
            values[i] = float(t)
        except (TypeError, ValueError):
            raise CfdbDataError(
                f"GroundTruth holds a non-numeric value {t!r}; a regression model's ground "
                "truth must be a number",
                hint="leave it out (SELECT * EXCLUDE (GroundTruth) ...) or give the model's "
                "label as GroundTruth (SELECT * REPLACE (<label> AS GroundTruth) ...)",
            ) from None
        known[i] = True
    return known, values


@handles(nodes.ImportModel)
def import_model(session: Any, node: nodes.ImportModel, stmt: Statement) -> pa.Table:
    script = stmt.script
    name, path = str(node.args["this"]), str(node.args["path"])
    _replace_or_refuse(session, name, bool(node.args.get("replace")), script, node.span("name"))
    params = {k.lower(): v for k, v in node.params().items()}
    if not os.path.exists(path):
        raise CfdbCatalogError(f"no such file: {path!r}").located(script, *node.span("path"))
    fmt = str(params.get("format") or models.format_for_path(path))
    allow = bool(params.get("allow_pickle", False)) and session.allow_pickle
    if params.get("allow_pickle") and not session.allow_pickle:
        raise CfdbUnsupportedError(
            "allow_pickle needs the session's opt-in too (connect(..., allow_pickle=True) or "
            "cfdb shell --allow-pickle)"
        ).located(script, *node.param("allow_pickle").span)
    try:
        features = model_features(session.store, params.get("features"))
        task = params.get("task")
        if task is not None and str(task).lower() not in models.TASKS:
            raise CfdbSyntaxError(
                f"task must be one of {', '.join(models.TASKS)}, not {task!r}"
            ).located(script, *node.param("task").span)
        task = str(task).lower() if task is not None else None
        with open(path, "rb") as f:
            estimator = models.read_estimator(f.read(), fmt, allow_pickle=allow, task=task)
        model = models.from_estimator(estimator, features, name=name, task=task)
    except CfdbError as err:
        raise err.located(script, *node.span("path")) from None
    model_id = _store_model(
        session,
        model,
        kind=model.kind,
        params={},
        train_query=None,
        train_rows=None,
        metrics=None,
        encoding=None,
    )
    return pa.table(
        {
            "ModelId": [model_id],
            "Name": [name],
            "Kind": [model.kind],
            "Task": [model.task],
            "Labels": pa.array(
                [None if model.is_regression else list(model.labels)], pa.list_(pa.string())
            ),
        }
    )


@handles(nodes.DropModel)
def drop_model(session: Any, node: nodes.DropModel, stmt: Statement) -> pa.Table | None:
    name = str(node.args["this"])
    row = catalog.model_row(session.store, name)
    if row is None:
        if node.args.get("exists"):
            return None
        raise CfdbCatalogError(f"model {name!r} does not exist").located(
            stmt.script, *node.span("name")
        )
    catalog.delete_model(session.store, int(row["ModelId"]))
    return pa.table({"Dropped": [name]})
