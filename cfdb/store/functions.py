"""cfdb's SQL functions on a DuckDB connection: registration, SQL macros and the view lint.

The engine supplies the implementations (:mod:`cfdb.engine.functions`); this module owns how
they meet DuckDB:

* scalar functions over rows are Arrow UDFs (``create_function(..., type='arrow')``): DuckDB
  hands them 2,048-row batches as Arrow arrays. They are registered without a parameter list,
  which makes them variadic over any type, so a row can be any STRUCT. Their NULL handling is
  ``special`` so an unknown model fails even when a row is NULL; a NULL row gives NULL.
  ``satisfies`` is such a UDF; ``predict``, ``predict_proba`` (with an overload taking a
  label) and ``predict_value`` are TEMP macros over ``__cfdb_*`` UDFs that add the model's
  version (a scalar subquery DuckDB runs once per query), so a batch needs no catalog query.
* ``cf_distance`` is a SQL macro generated from ``Features`` (plain SQL runs at DuckDB's speed).
* table-valued access (``counterfactuals``, ``whatif_remove``, ``knn_shapley``) are table
  macros over UDFs that return a ``LIST<STRUCT>``, unnested (DuckDB's Python client has no
  table functions).

Every macro is ``TEMP``: nothing cfdb registers is stored in the file, so the stock DuckDB CLI
opens it. A view (or a stored macro) calling one of these functions would be saved but fail in
any reader without them: :func:`calls_in_definition` finds such calls so the engine refuses
them, and :func:`stored_calls` lists any that exist.

A UDF raising :class:`~cfdb.errors.CfdbError` surfaces in DuckDB's error message as
``Python exception occurred while executing the UDF: CfdbDataError: <message>``;
:func:`cfdb.store.connection.wrap_duckdb_error` maps it back to the class.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb

from cfdb.errors import CfdbError, CfdbExecutionError
from cfdb.store.catalog import literal, quote
from cfdb.store.connection import Store
from cfdb.types import FeatureSpec

#: Scalar UDFs and their SQL return types. The model functions are called through macros
#: (:func:`model_macros`) that add the version of the model's ``Models`` row.
SCALAR_FUNCTIONS: dict[str, str] = {
    "__cfdb_predict": "VARCHAR",
    "__cfdb_predict_proba": "DOUBLE",
    "__cfdb_predict_value": "DOUBLE",
    "satisfies": "BOOLEAN",
}
#: Every name cfdb defines on a connection (UDFs and macros users call).
PUBLIC_FUNCTIONS = (
    "predict",
    "predict_proba",
    "predict_value",
    "satisfies",
    "cf_distance",
    "counterfactuals",
    "whatif_remove",
    "knn_shapley",
)


def store_over(con: duckdb.DuckDBPyConnection) -> Store:
    """A :class:`Store` over a connection opened elsewhere (a user's, or a UDF's cursor)."""
    store = Store(None)
    store._con = con
    return store


def is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's current database was opened read-only."""
    rows = con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return bool(rows and rows[0][0])


#: One batch of Python at a time: DuckDB calls UDFs from all its threads, and batches that
#: run together only contend for Python's lock (measured: slower than one after the other).
_BATCH_LOCK = threading.Lock()


def _guarded(name: str, fn: Callable[..., Any], serial: bool) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            with _BATCH_LOCK if serial else contextlib.nullcontext(), warnings.catch_warnings():
                # scikit-learn warns on every call made from a thread other than the one that
                # configured it (DuckDB runs UDFs on its worker threads); the config is the
                # default one, so the warning says nothing here.
                warnings.filterwarnings("ignore", message=r".*sklearn\.utils\.parallel\.delayed")
                return fn(*args)
        except CfdbError:
            raise
        except Exception as exc:  # a bug or a library error: still a CfdbError
            raise CfdbExecutionError(f"{name}: {type(exc).__name__}: {exc}") from exc

    call.__name__ = name
    return call


def register_udfs(
    con: duckdb.DuckDBPyConnection,
    implementations: Mapping[str, Callable[..., Any]],
    return_types: Mapping[str, str],
    *,
    side_effects: Sequence[str] = (),
) -> None:
    """(Re)register Arrow UDFs on ``con``, variadic over any type.

    Args:
        implementations: name -> callable taking Arrow arrays, returning one.
        return_types: name -> SQL type of the result.
        side_effects: names of functions that write (never folded or deduplicated). They run
            statements that may call the other functions, so they do not take the batch lock.
    """
    try:
        for name, fn in implementations.items():
            with contextlib.suppress(duckdb.Error):  # not registered yet
                con.remove_function(name)
            con.create_function(
                name,
                _guarded(name, fn, serial=name not in side_effects),
                None,
                duckdb.sqltype(return_types[name]),
                type="arrow",
                null_handling="special",
                side_effects=name in side_effects,
            )
    except duckdb.Error as exc:
        raise _registration_error(exc) from exc


def _registration_error(exc: duckdb.Error) -> CfdbExecutionError:
    return CfdbExecutionError(
        f"cannot register cfdb's SQL functions: {exc}",
        hint="read or close the connection's pending result first (fetchall()), then retry",
    )


def create_macros(con: duckdb.DuckDBPyConnection, statements: Sequence[str]) -> None:
    """Run ``CREATE OR REPLACE TEMP MACRO`` statements on ``con``."""
    try:
        for sql in statements:
            con.execute(sql).fetchall()
    except duckdb.Error as exc:
        raise _registration_error(exc) from exc


# -- the model functions: the model's version computed once per query -----------------------
#: The version of a model's ``Models`` row; equal versions mean the same fitted model.
MODEL_VERSION = "hash(ModelId, CreatedAt, octet_length(Artifact), Featurizer, Meta)"


def model_version_sql(name_sql: str) -> str:
    """A scalar subquery giving the version of the model named by ``name_sql``."""
    return f"(SELECT {MODEL_VERSION} FROM Models WHERE lower(Name) = lower({name_sql}))"


def model_macros() -> list[str]:
    """``predict``, ``predict_proba`` and ``predict_value`` as TEMP macros over the UDFs.

    The macro hands the UDF the model's version as a scalar subquery, which DuckDB evaluates
    once per query for a constant model name; the UDF then checks its cache against it
    without querying the database on every batch.
    """
    version = model_version_sql("model_name")
    return [
        "CREATE OR REPLACE TEMP MACRO predict(model_name, features_row) AS "
        f"__cfdb_predict(model_name, features_row, {version})",
        "CREATE OR REPLACE TEMP MACRO predict_value(model_name, features_row) AS "
        f"__cfdb_predict_value(model_name, features_row, {version})",
        "CREATE OR REPLACE TEMP MACRO predict_proba(model_name, features_row) AS "
        f"__cfdb_predict_proba(model_name, features_row, {version}), "
        "(model_name, features_row, label) AS "
        f"__cfdb_predict_proba(model_name, features_row, {version}, label)",
    ]


# -- cf_distance as SQL ----------------------------------------------------------------------
def cf_distance_macro(features: Sequence[FeatureSpec]) -> str:
    """``cf_distance(a, b, metric := 'tabular')`` as a TEMP macro over the feature space.

    The formulas of :func:`cfdb.generators.distance.pairwise`: ``l0`` counts differing
    features; ``l1`` adds ``|a−b|/MAD`` over numeric features and differing categoricals;
    ``tabular`` weighs the categorical and numeric sums by their shares of the features. A NULL
    feature raises an error naming it; a missing one is DuckDB's "could not find key" error.
    """
    cat: list[str] = []
    num_l0: list[str] = []
    num_l1: list[str] = []
    for f in features:
        a, b = f"a.{quote(f.name)}", f"b.{quote(f.name)}"
        null = f"error({literal(f'cf_distance: feature {f.name!r} is NULL')})"
        if f.is_categorical:
            cat.append(f"coalesce(CAST({a} <> {b} AS DOUBLE), {null})")
        else:
            mad = float(f.mad) if f.mad else 1.0
            num_l0.append(f"coalesce(CAST({a} <> {b} AS DOUBLE), {null})")
            num_l1.append(f"coalesce(abs(CAST({a} AS DOUBLE) - {b}) / {mad!r}, {null})")
    total = max(1, len(features))

    def add(terms: list[str]) -> str:
        return "(" + " + ".join(terms) + ")" if terms else "0.0"

    l0 = f"{add(cat)} + {add(num_l0)}"
    l1 = f"{add(cat)} + {add(num_l1)}"
    tabular = f"{len(cat) / total!r} * {add(cat)} + {len(num_l1) / total!r} * {add(num_l1)}"
    bad = "error('cf_distance: unknown metric ' || metric || '; known: l0, l1, tabular')"
    return (
        "CREATE OR REPLACE TEMP MACRO cf_distance(a, b, metric := 'tabular') AS "
        f"CASE lower(metric) WHEN 'tabular' THEN {tabular} WHEN 'l1' THEN {l1} "
        f"WHEN 'l0' THEN {l0} ELSE {bad} END"
    )


# -- keeping UDF calls out of stored definitions ---------------------------------------------
_STRING_RE = re.compile(r"'(?:[^']|'')*'")
_CREATE_RE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?P<temp>(?:TEMP|TEMPORARY)\s+)?"
    r"(?P<kind>VIEW|MACRO|FUNCTION)\b",
    re.IGNORECASE,
)


def calls_in(sql: str, names: Sequence[str] = PUBLIC_FUNCTIONS) -> list[str]:
    """The cfdb functions that ``sql`` calls (outside string literals), in order of ``names``."""
    text = _STRING_RE.sub("''", sql)
    return [n for n in names if re.search(rf"(?<![\w.\"]){n}\s*\(", text, re.IGNORECASE)]


def calls_in_definition(sql: str) -> tuple[str, list[str]] | None:
    """For a ``CREATE VIEW`` / ``CREATE MACRO`` that would be stored in the file: its kind and
    the cfdb functions it calls (``None`` when it calls none, or is TEMP)."""
    m = _CREATE_RE.match(_strip_comments(sql))
    if not m or m.group("temp"):
        return None
    found = calls_in(sql)
    return (m.group("kind").upper(), found) if found else None


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL)


def stored_calls(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str]]]:
    """Views and macros stored in the database whose definition calls a cfdb function."""
    rows = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT temporary AND NOT internal "
        "AND database_name = current_database() "
        "UNION ALL SELECT function_name, macro_definition FROM duckdb_functions() "
        "WHERE function_type IN ('macro', 'table_macro') AND NOT internal "
        "AND database_name = current_database()"
    ).fetchall()
    return [(name, found) for name, sql in rows if sql and (found := calls_in(sql))]
