"""LOAD INSTANCES, LOAD DATASET and DERIVE FEATURES: the feature space (CFDB paper, 2.2).

``LOAD INSTANCES FROM ('file' | (query)) WITH (...)`` builds ``Instances`` (``InstanceId``,
the features, ``GroundTruth``, ``split`` and any other user columns), derives ``Features`` and
creates ``CFs`` with the same feature columns. Options:

- ``id``: integer id column (default: row order, numbered from 1 or after the last id);
- ``label``: the label column, stored as text in ``GroundTruth``;
- ``split``: a column stored as ``split`` (e.g. train/test);
- ``features``: the feature columns (default: every other column of a supported type);
- ``numeric``, ``integer``, ``categorical``, ``boolean``: type overrides (column lists);
- ``immutable``: features a counterfactual may not change;
- ``mode``: ``create`` (default; refuses a non-empty Instances), ``append`` or ``replace``.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from cfdb.datasets import DATASETS
from cfdb.engine.handlers import handles
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbError, CfdbSyntaxError
from cfdb.lang import nodes
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.store.catalog import FEATURE_SQL_TYPES, literal, quote

_OPTIONS = {
    "id",
    "label",
    "split",
    "features",
    "numeric",
    "integer",
    "categorical",
    "boolean",
    "immutable",
    "mode",
}
_TEMP = "__cfdb_load"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, tuple | list):
        return [str(v) for v in value]
    return [str(value)]


def _check_path(path: str, script: str, span: tuple[int, int]) -> None:
    """Refuse a missing local file before DuckDB's reader sees it (DuckDB's Python client
    does not answer ``read_csv('')`` or ``read_csv('\\')``); URLs and globs go to DuckDB."""
    if "://" in path or any(c in path for c in "*?[{"):
        return
    problem = None
    if not path.strip():
        problem = "the file path is empty"
    elif os.path.isdir(path):
        problem = f"{path!r} is a directory, not a file"
    elif not os.path.isfile(path):
        problem = f"no such file: {path!r}"
    if problem:
        raise CfdbCatalogError(problem).located(script, *span)


def _file_query(store: Any, path: str, options: dict[str, Any], script: str, node: Any) -> str:
    """``SELECT * FROM`` the file's reader; a CSV's label column is read as the text the user
    wrote (type sniffing would turn ``yes``/``no`` into ``true``/``false``)."""
    sql = f"SELECT * FROM {_reader(path)}"
    label = options.get("label")
    if not isinstance(label, str) or not _reader(path).startswith("read_csv"):
        return sql
    try:
        columns = [c for c, _ in store.relation_columns(sql)]
    except CfdbError as err:
        err.sql, err.start = None, None
        raise err.located(script, *node.span("source")) from None
    match = [c for c in columns if c.lower() == label.lower()]
    if not match:
        return sql  # the label check names the missing column
    return f"SELECT * FROM read_csv({literal(path)}, types = {{{literal(match[0])}: 'VARCHAR'}})"


def _reader(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return f"read_parquet({literal(path)})"
    if lower.endswith((".json", ".jsonl", ".ndjson")):
        return f"read_json_auto({literal(path)})"
    return f"read_csv({literal(path)})"


@handles(nodes.LoadInstances)
def load_instances(session: Any, node: nodes.LoadInstances, stmt: Statement) -> pa.Table:
    source = node.args["source"]
    script = stmt.script
    options = {k.lower(): v for k, v in node.params().items()}
    if isinstance(source, str):
        _check_path(source, script, node.span("source"))
        sql, offset = _file_query(session.store, source, options, script, node), None
    else:
        sql, offset = source.text, source.start
    return _load(session, node, script, sql, offset, options)


@handles(nodes.LoadDataset)
def load_dataset(session: Any, node: nodes.LoadDataset, stmt: Statement) -> pa.Table:
    try:
        dataset = DATASETS.get(str(node.args["this"]))
    except CfdbError as err:
        raise err.located(stmt.script, *node.span("name")) from None
    options = {**dataset.options, **{k.lower(): v for k, v in node.params().items()}}
    return _load(session, node, stmt.script, dataset.source_sql(), None, options)


@handles(nodes.DeriveFeatures)
def derive(session: Any, node: nodes.DeriveFeatures, stmt: Statement) -> Any:
    catalog.key_instances(session.store)
    features = catalog.derive_features(session.store)
    catalog.ensure_cfs_table(session.store, features)
    return session.store.query("SELECT * FROM Features ORDER BY Position")


def _load(
    session: Any,
    node: nodes.CfdbStatement,
    script: str,
    source_sql: str,
    offset: int | None,
    options: dict[str, Any],
) -> pa.Table:
    store = session.store
    for key in options:
        if key not in _OPTIONS:
            span = node.param(key).span if node.param(key) else node.span("name")
            raise CfdbSyntaxError(
                f"unknown LOAD option {key!r}; known: {', '.join(sorted(_OPTIONS))}",
                sql=script,
                start=span[0],
                end=span[1],
            )

    def at(option: str) -> tuple[int, int]:
        p = node.param(option)
        return p.span if p else (node.start, node.end)

    # Bind the user's query first so its errors point into it, then materialize it once:
    # insertion order gives stable default ids.
    try:
        if offset is not None:
            store.run_script_text(source_sql, script, offset)
        store.execute(f"CREATE OR REPLACE TEMP TABLE {_TEMP} AS {source_sql}")
    except CfdbError as err:
        if offset is None:
            err.sql = None
            err.start = None
            err.located(script, *node.span("source"))
        raise
    try:
        return _load_from_temp(store, options, at, script)
    finally:
        store.execute(f"DROP TABLE IF EXISTS {_TEMP}")


def _load_from_temp(store: Any, options: dict[str, Any], at: Any, script: str) -> pa.Table:
    cols = store.columns(_TEMP)
    by_lower = {c.lower(): (c, t) for c, t in cols}

    def column(option: str, name: str) -> str:
        if name.lower() not in by_lower:
            raise CfdbCatalogError(
                f"column {name!r} (option {option}) is not in the source; it has: "
                f"{', '.join(c for c, _ in cols)}"
            ).located(script, *at(option))
        return by_lower[name.lower()][0]

    id_col = column("id", str(options["id"])) if options.get("id") else None
    label_col = column("label", str(options["label"])) if options.get("label") else None
    split_col = column("split", str(options["split"])) if options.get("split") else None
    # A source column already named like one of cfdb's own columns is that column: a user's
    # `split` is kept as the split, never dropped because the option was not given.
    if split_col is None and "split" in by_lower:
        split_col = by_lower["split"][0]
    if label_col is None and "groundtruth" in by_lower:
        label_col = by_lower["groundtruth"][0]
    if id_col is None and "instanceid" in by_lower:
        if catalog.feature_type_of(by_lower["instanceid"][1]) != "integer":
            raise CfdbDataError(
                f"column {by_lower['instanceid'][0]!r} must hold integer ids, or be renamed"
            ).located(script, *at("id"))
        id_col = by_lower["instanceid"][0]
    special = {c.lower() for c in (id_col, label_col, split_col) if c}
    if options.get("features"):
        feature_cols = [column("features", f) for f in _as_list(options["features"])]
    else:
        feature_cols = [
            c
            for c, t in cols
            if c.lower() not in special
            and not catalog.is_reserved(c)
            and catalog.feature_type_of(t) is not None
        ]
    overrides: dict[str, str] = {}
    for ftype in ("numeric", "integer", "categorical", "boolean"):
        for name in _as_list(options.get(ftype)):
            overrides[column(ftype, name).lower()] = ftype
    immutable = [column("immutable", n) for n in _as_list(options.get("immutable"))]
    for name in immutable:
        if name.lower() not in {f.lower() for f in feature_cols}:
            raise CfdbDataError(f"immutable column {name!r} is not a feature").located(
                script, *at("immutable")
            )

    # Type overrides must hold for every value: name the first value that does not convert.
    for col_lower, ftype in overrides.items():
        name = by_lower[col_lower][0]
        sql_type = FEATURE_SQL_TYPES[ftype]
        bad = store.execute(
            f"SELECT CAST({quote(name)} AS VARCHAR) FROM {_TEMP} WHERE {quote(name)} IS NOT NULL "
            f"AND TRY_CAST({quote(name)} AS {sql_type}) IS NULL LIMIT 1"
        )
        if bad:
            raise CfdbDataError(
                f"column {name!r} is declared {ftype} but holds {bad[0][0]!r}"
            ).located(script, *at(ftype))

    mode = str(options.get("mode") or "create").lower()
    if mode not in ("create", "append", "replace"):
        raise CfdbSyntaxError(f"mode must be create, append or replace, not {mode!r}").located(
            script, *at("mode")
        )
    exists = store.table_exists(catalog.INSTANCES)
    existing_rows = store.execute("SELECT count(*) FROM Instances")[0][0] if exists else 0
    if exists and mode == "create" and existing_rows:
        raise CfdbCatalogError(
            f"Instances already holds {existing_rows} rows",
            hint="use WITH (mode = 'append') to add rows, or (mode = 'replace')",
        )
    if exists and mode == "replace":
        used = store.execute(
            "SELECT (SELECT count(*) FROM Predictions) + (SELECT count(*) FROM Prediction_CFs)"
        )[0][0]
        if used:
            raise CfdbCatalogError(
                "cannot replace Instances: predictions or counterfactuals refer to them",
                hint="drop the models first (DROP MODEL name)",
            )
        store.execute("DROP TABLE Instances")
        store.execute("DELETE FROM Features")
        if store.table_exists(catalog.CFS) and not store.execute("SELECT count(*) FROM CFs")[0][0]:
            store.execute("DROP TABLE CFs")
        exists = False

    first_id = catalog.next_id(store, catalog.INSTANCES, "InstanceId") if exists else 1
    if id_col:
        non_int = catalog.feature_type_of(by_lower[id_col.lower()][1]) != "integer"
        if non_int:
            raise CfdbDataError(f"id column {id_col!r} must hold integers").located(
                script, *at("id")
            )
        dup = store.execute(
            f"SELECT {quote(id_col)} FROM {_TEMP} GROUP BY 1 HAVING count(*) > 1 "
            f"OR {quote(id_col)} IS NULL LIMIT 1"
        )
        if dup:
            raise CfdbDataError(f"id column {id_col!r} is NULL or repeats the value {dup[0][0]}")
        id_expr = f"CAST({quote(id_col)} AS BIGINT)"
    else:
        id_expr = f"CAST(row_number() OVER (ORDER BY rowid) AS BIGINT) + {first_id - 1}"
    select = [f"{id_expr} AS InstanceId"]
    for name in feature_cols:
        ftype = overrides.get(name.lower())
        expr = quote(name)
        if ftype:
            expr = f"CAST({expr} AS {FEATURE_SQL_TYPES[ftype]})"
        select.append(f"{expr} AS {quote(name)}")
    if label_col:
        select.append(f"CAST({quote(label_col)} AS VARCHAR) AS GroundTruth")
    elif not exists:
        select.append("CAST(NULL AS VARCHAR) AS GroundTruth")
    if split_col:
        select.append(f"CAST({quote(split_col)} AS VARCHAR) AS split")
    used_cols = {c.lower() for c in feature_cols} | special
    select += [
        quote(c) for c, _ in cols if c.lower() not in used_cols and not catalog.is_reserved(c)
    ]
    body = f"SELECT {', '.join(select)} FROM {_TEMP}"
    if exists:
        _refuse_null_categoricals(store, feature_cols, id_col, script, at)
        if id_col:
            clash = store.execute(
                f"SELECT InstanceId FROM ({body}) WHERE InstanceId IN (SELECT InstanceId FROM Instances) LIMIT 1"
            )
            if clash:
                raise CfdbDataError(f"InstanceId {clash[0][0]} is already in Instances")
        store.execute(f"INSERT INTO Instances BY NAME {body}")
    else:
        store.execute(f"CREATE TABLE Instances AS {body} ORDER BY InstanceId")
        catalog.key_instances(store)
    loaded = store.execute(f"SELECT count(*) FROM {_TEMP}")[0][0]
    features = catalog.derive_features(
        store, types=overrides, immutable=immutable, only=feature_cols
    )
    catalog.ensure_cfs_table(store, features)
    total = store.execute("SELECT count(*) FROM Instances")[0][0]
    return pa.table(
        {
            "loaded": [int(loaded)],
            "instances": [int(total)],
            "features": [len(features)],
            "labelled": [bool(label_col)],
        }
    )


def _refuse_null_categoricals(
    store: Any, feature_cols: list[str], id_col: str | None, script: str, at: Any
) -> None:
    """Appended rows may not hold NULL in a categorical feature (a model could not predict
    them later): name the first such row."""
    categorical = {f.name.lower() for f in catalog.read_features(store) if f.is_categorical}
    for name in feature_cols:
        if name.lower() not in categorical:
            continue
        row_expr = quote(id_col) if id_col else "rowid + 1"
        bad = store.execute(f"SELECT {row_expr} FROM {_TEMP} WHERE {quote(name)} IS NULL LIMIT 1")
        if bad:
            where = f"id {bad[0][0]}" if id_col else f"row {bad[0][0]}"
            raise CfdbDataError(
                f"categorical feature {name!r} is NULL in the appended {where}"
            ).located(script, *at("mode"))
