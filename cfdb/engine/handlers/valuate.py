"""VALUATE: data values of the base tuples behind a training query (DataScope in SQL).

``VALUATE (train) EVALUATE ON (validation) USING knn_shapley WITH (...) UTILITY u`` runs in
one transaction:

1. the training query is rewritten to carry provenance (:mod:`cfdb.lang.provenance`; views
   are inlined, refused queries say why) and run;
2. training and validation rows are featurized: a scikit-learn transformer, or cfdb's
   :class:`~cfdb.models.Featurizer` (one-hot categoricals, standardized numbers) by default,
   is fitted once on the whole training set and applied row by row (DataScope eq. 9);
3. the additive utility becomes a gain matrix and :class:`~cfdb.valuation.KnnShapley`
   computes the exact values of the base-tuple variables;
4. a ``ValuationRuns`` row, the training rows' ``Provenance`` and one ``DataValues`` row per
   base tuple of every relation read (0 for tuples that reach no training row) are written.

Options (``WITH``): ``k`` (5), ``knn_utility`` (``soft`` | ``vote``), ``label``
(``GroundTruth``), ``features`` (default: every column of the training query except the label
and the base tables' primary keys), ``transformer`` (``default`` | ``none`` | a name the
Python API registered), ``positive`` (the positive label of rate utilities), ``sensitive``
(the validation column of ``equalized_odds``), ``n_jobs``, ``max_nodes``, ``executor`` and
``address`` (:mod:`cfdb.exec`: ``local`` runs the validation parts in this process, the map
path's on ``n_jobs`` threads; ``process`` and ``ray`` run the parts of map, fork and join
pipelines on workers; the values are the same bit for bit).

``players`` (a comma-separated list of relation names, or a list) makes only the tuples of
those relations players; every other relation read is exogenous, always present, and gets no
``DataValues`` rows. ``USING knn_shapley_sampled`` takes ``samples`` (64) and ``seed`` (0) and
writes each estimate's standard error in ``DataValues.StdError`` (NULL for exact methods).
"""

from __future__ import annotations

import inspect
import itertools
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cfdb.engine.features import default_features
from cfdb.engine.handlers import handles
from cfdb.errors import CfdbDataError, CfdbError, CfdbOptionError, CfdbUnsupportedError
from cfdb.exec import located_exec_options
from cfdb.lang import provenance
from cfdb.lang.parse import Statement
from cfdb.lang.valuate_syntax import Valuate
from cfdb.models import Featurizer
from cfdb.store import valuation as vstore
from cfdb.types import FeatureSpec
from cfdb.valuation import (
    UTILITIES,
    VALUATIONS,
    Lineage,
    Problem,
    encode_labels,
    positive_class,
    proxy_predictions,
)

_OPTIONS = (
    "k",
    "knn_utility",
    "label",
    "features",
    "transformer",
    "positive",
    "sensitive",
    "n_jobs",
    "max_nodes",
    "executor",
    "address",
    "players",
    "samples",
    "seed",
)

#: Options only some methods take (the method's constructor names them).
_METHOD_OPTIONS = ("samples", "seed")

#: Python transformer objects the API registered for one statement, by name.
TRANSFORMERS: dict[str, Any] = {}
_names = itertools.count(1)


def register_transformer(transformer: Any) -> str:
    """Make a scikit-learn transformer available to one statement; returns its name."""
    name = f"__cfdb_transformer_{next(_names)}"
    TRANSFORMERS[name] = transformer
    return name


def unregister_transformer(name: str) -> None:
    TRANSFORMERS.pop(name, None)


def _locate(err: CfdbError, stmt: Statement, span: tuple[int, int]) -> CfdbError:
    return err.located(stmt.script, *span)


def _lookup(table: pa.Table, name: str) -> str | None:
    for column in table.column_names:
        if column.lower() == name.lower():
            return column
    return None


def _feature_type(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    return None


def _columns(table: pa.Table, names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        column = table.column(_lookup(table, name) or name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        out[name] = column.to_numpy(zero_copy_only=False)
    return out


def _featurize(
    train: pa.Table, val: pa.Table, features: list[str], transformer: str, labels: np.ndarray
) -> tuple[Any, Any, str]:
    """Featurized training and validation matrices, and a description of the featurizer."""
    if transformer == "default":
        specs = []
        for name in features:
            ftype = _feature_type(train.column(_lookup(train, name) or name).type)
            if ftype is None:
                raise CfdbDataError(
                    f"feature {name!r} has type {train.column(name).type}, which the default "
                    "featurizer cannot encode; list the features, or pass a transformer"
                )
            specs.append(FeatureSpec(name, ftype))
        featurizer = Featurizer(specs, encoding="onehot", scale=True)
        x_train = featurizer.fit_transform(_columns(train, features))
        return x_train, featurizer.transform(_columns(val, features)), "cfdb Featurizer"
    if transformer == "none":
        mats = []
        for table in (train, val):
            cols = _columns(table, features)
            mat = np.empty((table.num_rows, len(features)))
            try:
                for j, f in enumerate(features):
                    mat[:, j] = cols[f]
            except (TypeError, ValueError):
                raise CfdbDataError(
                    "transformer = 'none' needs numeric features; use the default featurizer "
                    "or a transformer"
                ) from None
            if np.isnan(mat).any():
                raise CfdbDataError("the features hold NULLs; models need complete rows")
            mats.append(mat)
        return mats[0], mats[1], "none"
    if transformer not in TRANSFORMERS:
        known = ", ".join(["default", "none"])
        raise CfdbDataError(f"unknown transformer {transformer!r}; known: {known}")
    from sklearn.base import clone

    estimator = clone(TRANSFORMERS[transformer])
    frame_train = pd.DataFrame(_columns(train, features))
    frame_val = pd.DataFrame(_columns(val, features))
    try:
        x_train = estimator.fit(frame_train, labels).transform(frame_train)
        x_val = estimator.transform(frame_val)
    except Exception as exc:  # the user's transformer: report its failure as data error
        raise CfdbDataError(f"the transformer failed: {exc}") from exc
    return x_train, x_val, type(estimator).__name__


def _lineage(
    table: pa.Table, captured: provenance.CapturedQuery
) -> tuple[Lineage, dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    """Variables of the training rows, per-relation variable ids, and provenance factors."""
    m = table.num_rows
    n_rel = len(captured.relations)
    if captured.monomials:
        per_row = table.column(captured.monomials).to_pylist()
        polys = []
        for monos in per_row:
            distinct = {
                tuple(sorted((f["r"], f["i"]) for f in mono if f["r"] is not None))
                for mono in monos
            }
            polys.append(sorted(distinct))
    else:
        codes = [
            pc.fill_null(table.column(r), -1).to_numpy().astype(np.int64) for r, _ in captured.pairs
        ]
        ids = [
            pc.fill_null(table.column(i), 0).to_numpy().astype(np.int64) for _, i in captured.pairs
        ]
        polys = None
    # factors (row, monomial, code, id)
    if polys is not None:
        f_rows, f_monos, f_codes, f_ids = [], [], [], []
        for row, monos in enumerate(polys):
            for mono_index, mono in enumerate(monos):
                for code, ident in mono:
                    f_rows.append(row)
                    f_monos.append(mono_index)
                    f_codes.append(code)
                    f_ids.append(ident)
        factors = tuple(np.asarray(x, dtype=np.int64) for x in (f_rows, f_monos, f_codes, f_ids))
    else:
        valid = [c >= 0 for c in codes]
        factors = (
            np.concatenate([np.nonzero(v)[0] for v in valid]) if valid else np.zeros(0, int),
            np.zeros(int(sum(v.sum() for v in valid)), dtype=np.int64),
            np.concatenate([c[v] for c, v in zip(codes, valid)]) if valid else np.zeros(0, int),
            np.concatenate([i[v] for i, v in zip(ids, valid)]) if valid else np.zeros(0, int),
        )
    f_rows, f_monos, f_codes, f_ids = factors
    var_ids: dict[str, np.ndarray] = {}
    offsets = np.zeros(n_rel + 1, dtype=np.int64)
    for code in range(n_rel):
        var_ids[captured.relations[code]] = np.unique(f_ids[f_codes == code])
        offsets[code + 1] = offsets[code] + len(var_ids[captured.relations[code]])
    var_relation = np.repeat(np.arange(n_rel), np.diff(offsets))
    factor_var = np.zeros(len(f_ids), dtype=np.int64)
    for code in range(n_rel):
        sel = f_codes == code
        factor_var[sel] = offsets[code] + np.searchsorted(
            var_ids[captured.relations[code]], f_ids[sel]
        )
    sums: list[int] = []
    if polys is not None:
        width = max([len(p[0]) for p in polys if len(p) == 1] + [1])
        row_vars = np.full((m, width), -1, dtype=np.int64)
        sums = [r for r, p in enumerate(polys) if len(p) > 1]
        first = f_monos == 0
        for row, var in zip(f_rows[first], factor_var[first]):
            slot = np.argmax(row_vars[row] < 0)
            row_vars[row, slot] = var
    else:
        row_vars = np.full((m, max(len(captured.pairs), 1)), -1, dtype=np.int64)
        start = 0
        for j, v in enumerate(valid):
            count = int(v.sum())
            row_vars[np.nonzero(v)[0], j] = factor_var[start : start + count]
            start += count
    lineage = Lineage(int(offsets[-1]), var_relation, row_vars, tuple(sums))
    return lineage, var_ids, factors


def _option(node: Valuate, options: dict[str, Any], name: str) -> tuple[int, int]:
    p = node.param(name)
    return p.span if p else node.span("method")


def _players(
    stmt: Statement, node: Valuate, value: Any, relations: tuple[str, ...]
) -> tuple[int, ...]:
    """Relation codes of the ``players`` option's relation names (case-insensitive)."""
    span = node.param("players").span
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    names = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    read = ", ".join(relations)
    if not names:
        raise CfdbOptionError(
            f"players lists no relation; give some of the relations the training query reads: {read}"
        ).located(stmt.script, *span)
    codes = []
    for name in names:
        lowered = name.lower()
        found = [
            i
            for i, r in enumerate(relations)
            if r.lower() == lowered or r.lower().split(".")[-1] == lowered
        ]
        if not found:
            raise CfdbOptionError(
                f"players names {name!r}, which the training query does not read; it reads: {read}"
            ).located(stmt.script, *span)
        codes.extend(found)
    return tuple(sorted(set(codes)))


def _method_options(
    stmt: Statement, node: Valuate, method_cls: type, method_name: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The options only some methods take (``samples``, ``seed``), checked."""
    accepted = inspect.signature(method_cls).parameters
    out: dict[str, Any] = {}
    for name in _METHOD_OPTIONS:
        if name not in options:
            continue
        span = node.param(name).span
        if name not in accepted:
            raise CfdbOptionError(
                f"option {name!r} does not apply to {method_name}; it is an option of "
                "knn_shapley_sampled"
            ).located(stmt.script, *span)
        value = options[name]
        low = 2 if name == "samples" else 0
        high = (
            getattr(inspect.getmodule(method_cls), "MAX_SAMPLES", None)
            if name == "samples"
            else None
        )
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"from {low} to {high:,}" if high is not None else f"of at least {low}"
            raise CfdbOptionError(f"{name} must be an integer {bound}, got {value!r}").located(
                stmt.script, *span
            )
        out[name] = value
    return out


@handles(Valuate)
def valuate(session: Any, node: Valuate, stmt: Statement) -> pa.Table:
    started = time.perf_counter()
    store, script = session.store, stmt.script
    method_name = str(node.args["method"]).lower()
    try:
        method_cls = VALUATIONS.get(method_name)
    except CfdbError as err:
        raise _locate(err, stmt, node.span("method")) from None
    utility_name = str(node.args.get("utility") or "accuracy").lower()
    try:
        utility = UTILITIES.get(utility_name)
    except CfdbError as err:
        raise _locate(err, stmt, node.span("utility")) from None
    options = {k.lower(): v for k, v in node.params().items()}
    for name in options:
        if name not in _OPTIONS:
            raise CfdbDataError(
                f"unknown option {name!r} for VALUATE; known: {', '.join(_OPTIONS)}"
            ).located(script, *node.param(name).span)
    where = located_exec_options(
        script,
        lambda name: node.param(name).span,
        options,
        default_n_jobs=min(4, os.cpu_count() or 1),
    )
    executor = where.make() if where.executor != "local" else None
    if executor is not None:
        try:
            executor.connect()  # an unreachable cluster fails before anything is written
        except CfdbError as err:
            raise _locate(err, stmt, _option(node, options, "executor")) from None
    k = options.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise CfdbDataError(f"k must be a positive integer, got {k!r}").located(
            script, *_option(node, options, "k")
        )
    knn_utility = str(options.get("knn_utility", "soft")).lower()
    if knn_utility not in ("soft", "vote"):
        raise CfdbDataError(f"unknown knn_utility {knn_utility!r}; known: soft, vote").located(
            script, *_option(node, options, "knn_utility")
        )
    method_options = _method_options(stmt, node, method_cls, method_name, options)

    train_q, eval_q = node.args["train"], node.args["evaluate"]
    train_span, eval_span = node.span("train"), node.span("evaluate")
    # Bind the user's queries first: DuckDB's errors then point into the user's text.
    store.run_script_text(train_q.text, script, train_q.start)
    val_table = store.run_script_text(eval_q.text, script, eval_q.start).to_arrow_table()

    def resolve(name: str) -> provenance.BaseRelation | provenance.ViewText:
        info = vstore.relation_info(store, name)
        if info.kind == "view":
            return provenance.ViewText(info.name, info.sql or "")
        return provenance.BaseRelation(info.name, info.key)

    try:
        captured = provenance.capture(train_q.text, resolve)
    except CfdbError as err:
        if err.start is not None and err.sql == train_q.text:
            raise err.shifted(script, train_q.start) from None
        raise _locate(err, stmt, train_span) from None
    players = (
        _players(stmt, node, options["players"], tuple(captured.relations))
        if "players" in options
        else None
    )
    train_table = store.arrow(captured.sql)
    hidden = set(captured.extra_columns)
    user_columns = [c for c in train_table.column_names if c not in hidden]
    if train_table.num_rows == 0:
        raise CfdbDataError("the training query returns no rows").located(script, *train_span)
    if val_table.num_rows == 0:
        raise CfdbDataError("the validation query returns no rows").located(script, *eval_span)

    label = str(options.get("label", "GroundTruth"))
    label_span = _option(node, options, "label") if "label" in options else train_span
    train_label, val_label = _lookup(train_table, label), _lookup(val_table, label)
    if train_label is None or train_label in hidden:
        raise CfdbDataError(f"the training query returns no label column {label!r}").located(
            script, *label_span
        )
    if val_label is None:
        raise CfdbDataError(f"the validation query returns no label column {label!r}").located(
            script, *(label_span if "label" in options else eval_span)
        )

    keys = vstore.key_columns(store, list(captured.relations))
    if "features" in options:
        requested = options["features"]
        features = [requested] if isinstance(requested, str) else [str(f) for f in requested]
        not_features: list[str] = []
        span = node.param("features").span
        for name in features:
            if _lookup(train_table, name) is None or name.lower() in {h.lower() for h in hidden}:
                raise CfdbDataError(
                    f"feature {name!r} is not a column of the training query"
                ).located(script, *span)
            if _lookup(val_table, name) is None:
                raise CfdbDataError(
                    f"feature {name!r} is not a column of the validation query"
                ).located(script, *span)
    else:
        # One rule for every statement (cfdb.engine.features): not the label, not a key, not
        # cfdb's own id/label/split columns, not a type the featurizer cannot encode (e.g. a
        # DATE or LIST column), and only columns the validation query returns too.
        choice = default_features(
            [
                (
                    name,
                    "ok"
                    if _feature_type(train_table.column(name).type) is not None
                    and _lookup(val_table, name) is not None
                    else None,
                )
                for name in user_columns
            ],
            label=label,
            keys=keys,
        )
        features, not_features = choice.features, choice.notes()
        if not features:
            raise CfdbDataError(
                "no feature columns: the training query returns only the label and keys"
            ).located(script, *train_span)

    train_labels = train_table.column(train_label).to_numpy(zero_copy_only=False)
    val_labels = val_table.column(val_label).to_numpy(zero_copy_only=False)
    try:
        classes, y_train, y_val = encode_labels(train_labels, val_labels, column=label)
    except CfdbError as err:
        raise _locate(err, stmt, label_span) from None

    transformer = str(options.get("transformer", "default"))
    try:
        x_train, x_val, featurizer_name = _featurize(
            train_table, val_table, features, transformer, train_labels
        )
    except CfdbError as err:
        span = _option(node, options, "transformer") if "transformer" in options else train_span
        raise _locate(err, stmt, span) from None

    build_options: dict[str, Any] = {"positive": options.get("positive")}
    if utility.needs_sensitive:
        sensitive = options.get("sensitive")
        if sensitive is None:
            raise CfdbDataError(
                f"utility {utility.name} needs sensitive = '<column>' in WITH"
            ).located(script, *node.span("utility"))
        column = _lookup(val_table, str(sensitive))
        if column is None:
            raise CfdbDataError(
                f"the validation query returns no sensitive column {sensitive!r}"
            ).located(script, *node.param("sensitive").span)
        build_options["sensitive"] = val_table.column(column).to_numpy(zero_copy_only=False)
        try:
            pos = positive_class(classes, options.get("positive"))
        except CfdbError as err:
            raise _locate(err, stmt, node.span("utility")) from None
        predictions = proxy_predictions(x_train, y_train, x_val, k, len(classes), knn_utility)
        build_options["predicted_positive"] = predictions[:, pos]
    try:
        gain = utility.build(y_val, classes, build_options)
    except CfdbError as err:
        span = _option(node, options, "positive") if "positive" in options else node.span("utility")
        raise _locate(err, stmt, span) from None

    lineage, var_ids, factors = _lineage(train_table, captured)
    method = method_cls(
        k=k,
        knn_utility=knn_utility,
        n_jobs=where.n_jobs if where.n_jobs > 0 else os.cpu_count() or 1,
        max_nodes=int(options.get("max_nodes", 2048)),
        executor=executor,
        **method_options,
    )
    problem = Problem(
        train=x_train,
        labels=y_train,
        lineage=lineage,
        val=x_val,
        gain=gain.matrix,
        players=players,
    )
    try:
        result = method.fit(problem).result()
    except CfdbUnsupportedError as err:
        raise _locate(err, stmt, train_span) from None
    except CfdbError as err:
        raise _locate(err, stmt, node.span("method")) from None

    run_id = vstore.next_run_id(store)
    written = 0
    offset = 0
    for code, relation in enumerate(captured.relations):
        mine = var_ids[relation]
        chunk = slice(offset, offset + len(mine))
        offset += len(mine)
        if players is not None and code not in players:
            continue  # an exogenous relation: its tuples are not players
        info = vstore.relation_info(store, relation)
        ids, text_keys = vstore.tuple_ids(store, info)
        values = np.zeros(len(ids))
        where = np.searchsorted(ids, mine)
        values[where] = result.values[chunk]
        std_errors = None
        if result.std_errors is not None:
            std_errors = np.zeros(len(ids))  # a tuple of no training row: exactly 0
            std_errors[where] = result.std_errors[chunk]
        written += vstore.insert_values(
            store, run_id, method_name, relation, ids, values, text_keys, std_errors
        )
    f_rows, f_monos, f_codes, f_ids = factors
    vstore.insert_provenance(
        store, run_id, f_rows, f_monos, list(captured.relations), f_codes, f_ids
    )
    seconds = time.perf_counter() - started
    params = {
        "k": k,
        "knn_utility": knn_utility,
        "label": label,
        "features": features,
        "not_features": not_features,
        "transformer": featurizer_name,
        "classes": [str(c) for c in classes],
        "utility": gain.info,
        **({"players": [captured.relations[c] for c in players]} if players is not None else {}),
        **{key: v for key, v in result.info.items() if key not in ("pipeline",)},
    }
    vstore.insert_run(
        store,
        {
            "RunId": run_id,
            "Method": method_name,
            "Utility": utility.name,
            "HigherIsBetter": gain.higher_is_better,
            "Pipeline": result.pipeline.kind,
            "Params": params,
            "TrainQuery": train_q.text,
            "EvalQuery": eval_q.text,
            "TrainRows": int(train_table.num_rows),
            "EvalRows": int(val_table.num_rows),
            "UtilityAll": result.utility_all,
            "Statement": stmt.text,
            "Seconds": seconds,
            "FeatureColumns": list(features),
            "KeyColumns": [c for c in user_columns if c.lower() in keys],
        },
    )
    return pa.table(
        {
            "RunId": [run_id],
            "Method": [method_name],
            "Utility": [utility.name],
            "Pipeline": [result.pipeline.kind],
            "TrainRows": [int(train_table.num_rows)],
            "EvalRows": [int(val_table.num_rows)],
            "Tuples": [written],
            "UtilityAll": [result.utility_all],
            "Seconds": [round(seconds, 3)],
        }
    )
