"""The Python facade: ``cfdb.connect`` and :class:`Database`.

Every helper builds one cfdb statement and runs it (``Database.last_sql`` shows it), so what
Python can do, the REPL can do too.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from cfdb import frames
from cfdb.engine.session import Result, Session
from cfdb.errors import CfdbDataError
from cfdb.store.catalog import literal, quote
from cfdb.store.connection import Relation

_counter = itertools.count(1)


def _value_sql(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_value_sql(v) for v in value) + ")"
    return literal(value)


def with_clause(options: dict[str, Any]) -> str:
    """`` WITH (a = 1, b = ('x', 'y'))`` for the options that are not None ('' if none)."""
    items = [f"{k} = {_value_sql(v)}" for k, v in options.items() if v is not None]
    return f" WITH ({', '.join(items)})" if items else ""


class Database:
    """A cfdb database. Use :func:`connect`.

    Args:
        path: database file (created if missing), or ``None`` / ``":memory:"``.
        read_only: open the file read-only.
        allow_pickle: permit storing and loading models as pickles (runs code from the file).
        executor: default executor of grid cells, ``local`` (default) or ``ray``.
        address: the Ray cluster to join (``ray.init(address)``), for ``executor="ray"``.
        n_jobs: default number of parallel workers for grid cells (``-1``: all cores).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        allow_pickle: bool = False,
        executor: str | None = None,
        address: str | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.session = Session(
            None if path is None else os.fspath(path),
            read_only=read_only,
            allow_pickle=allow_pickle,
            executor=executor,
            address=address,
            n_jobs=n_jobs,
        )

    # -- statements -------------------------------------------------------------------------
    def sql(self, text: str, params: Any = None, *, _depth: int = 2) -> Relation | None:
        """Run SQL or cfdb statements; returns the last statement's DuckDB relation
        (``.df()``, ``.arrow()``, ``.pl()`` with polars, ``.fetchall()``).

        ``params`` binds the ``?`` placeholders of a single plain SQL statement. As in DuckDB,
        a pandas/polars DataFrame or Arrow table named in the SQL is found among the caller's
        variables (a table of the database with that name wins).
        """
        objects = frames.caller_objects(text, _depth)
        if not objects:
            return self.session.sql(text, params)
        with frames.registered(self.session.store, objects) as names:
            relation = self.session.sql(text, params)
            if names and relation is not None:
                # The objects are unregistered on return: read the rows while they exist.
                relation = self.session.store.from_arrow(relation.to_arrow_table())
            return relation

    def execute(self, text: str) -> list[Result]:
        """Run a script; one :class:`Result` per statement (caller's DataFrames seen as in
        :meth:`sql`)."""
        with frames.registered(self.session.store, frames.caller_objects(text)):
            return self.session.execute(text)

    @property
    def last_sql(self) -> str | None:
        """The text of the last script run (what a helper generated)."""
        return self.session.last_sql

    # -- helpers, one statement each --------------------------------------------------------
    def load_instances(
        self,
        data: Any,
        *,
        id: str | None = None,
        label: str | None = None,
        split: str | None = None,
        features: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        integer: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        boolean: Sequence[str] | None = None,
        immutable: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> Relation | None:
        """``LOAD INSTANCES``: from a pandas DataFrame, a pyarrow Table, or a file path.

        A DataFrame/Arrow table is registered under a temporary name for the statement.
        """
        options = {
            "id": id,
            "label": label,
            "split": split,
            "features": _tuple(features),
            "numeric": _tuple(numeric),
            "integer": _tuple(integer),
            "categorical": _tuple(categorical),
            "boolean": _tuple(boolean),
            "immutable": _tuple(immutable),
            "mode": mode,
        }
        if isinstance(data, str | os.PathLike):
            return self.sql(f"LOAD INSTANCES FROM {literal(os.fspath(data))}{with_clause(options)}")
        name = f"__cfdb_input_{next(_counter)}"
        self.session.store.register(name, data)
        try:
            return self.sql(
                f"LOAD INSTANCES FROM (SELECT * FROM {quote(name)}){with_clause(options)}"
            )
        finally:
            self.session.store.unregister(name)

    def load_dataset(self, name: str, **options: Any) -> Relation | None:
        """``LOAD DATASET name``: a dataset bundled with cfdb (``adult``)."""
        return self.sql(f"LOAD DATASET {name}{with_clause(options)}")

    def derive_features(self) -> Relation | None:
        """``DERIVE FEATURES``."""
        return self.sql("DERIVE FEATURES")

    def create_model(
        self, name: str, kind: str, train: str, *, replace: bool = False, **params: Any
    ) -> Relation | None:
        """``CREATE [OR REPLACE] MODEL name AS kind WITH (params) TRAIN ON (train)``."""
        head = "CREATE OR REPLACE MODEL" if replace else "CREATE MODEL"
        return self.sql(f"{head} {quote(name)} AS {kind}{with_clause(params)} TRAIN ON ({train})")

    def predict(self, model: str, on: str = "SELECT * FROM Instances") -> Relation | None:
        """``PREDICT model ON (query)``."""
        return self.sql(f"PREDICT {quote(model)} ON ({on})")

    def register_model(
        self,
        name: str,
        estimator: Any,
        *,
        features: Sequence[str] | None = None,
        replace: bool = False,
    ) -> Relation | None:
        """``IMPORT MODEL``: store an already fitted scikit-learn or XGBoost estimator.

        The estimator receives a pandas DataFrame of the raw feature columns (in ``features``
        order, default all features), e.g. a Pipeline with its own encoders. It is written to a
        temporary file in a safe format (XGBoost UBJ, or skops), then imported.
        """
        from cfdb import models

        fmt, blob = models.write_estimator(estimator, allow_pickle=self.session.allow_pickle)
        suffix = {"xgboost-ubj": ".ubj", "skops": ".skops", "pickle": ".pkl"}[fmt]
        fd, path = tempfile.mkstemp(suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            options: dict[str, Any] = {"format": fmt, "features": _tuple(features)}
            if fmt == "pickle":
                options["allow_pickle"] = True
            head = "IMPORT OR REPLACE MODEL" if replace else "IMPORT MODEL"
            return self.sql(f"{head} {quote(name)} FROM {literal(path)}{with_clause(options)}")
        finally:
            os.unlink(path)

    def drop_model(self, name: str, *, if_exists: bool = False) -> Relation | None:
        """``DROP MODEL [IF EXISTS] name``."""
        return self.sql(f"DROP MODEL {'IF EXISTS ' if if_exists else ''}{quote(name)}")

    # -- counterfactuals of an input (docs/cfql.md), one statement each ---------------------
    def foreach(
        self,
        predictions: str,
        generate: str,
        *,
        using: str | None = None,
        explain: bool = False,
        **options: Any,
    ) -> Relation | None:
        """``[EXPLAIN] FOREACH pred IN (predictions) GENERATE (generate) [USING g] [WITH (...)]``.

        ``predictions`` is Q_pred (one ``PredictionId`` column), ``generate`` is Q_CF;
        ``options`` are the statement's and the generator's ``WITH`` options.
        """
        head = "EXPLAIN FOREACH" if explain else "FOREACH"
        tail = f" USING {using}" if using else ""
        return self.sql(
            f"{head} pred IN ({predictions}) GENERATE ({generate}){tail}{with_clause(options)}",
            _depth=3,
        )

    def batch(self, queries: Sequence[str], *, explain: bool = False, **options: Any) -> Any:
        """``[EXPLAIN] BEGIN BATCH [WITH (...)]; FOREACH ...; ...; END BATCH``: CFQL queries
        (``FOREACH`` statements as text) optimized together; one result per statement."""
        head = "EXPLAIN BEGIN BATCH" if explain else "BEGIN BATCH"
        body = "".join(f"{q.strip().rstrip(';')};\n" for q in queries)
        return self.execute(f"{head}{with_clause(options)};\n{body}END BATCH;")

    def counterfactuals(self, predictions: str | None = None) -> Relation:
        """The ``Counterfactuals`` view (each prediction, its instance, its CFs and what
        changed), for the predictions of the query ``predictions`` (default: all)."""
        where = f" WHERE PredictionId IN ({predictions})" if predictions else ""
        rel = self.sql(f"SELECT * FROM Counterfactuals{where}", _depth=3)
        assert rel is not None
        return rel

    def table(self, name: str) -> Relation:
        """``SELECT * FROM name`` as a relation."""
        rel = self.sql(f"SELECT * FROM {quote(name)}")
        assert rel is not None
        return rel

    # -- lifecycle --------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the query that is running (from another thread, e.g. a Ctrl-C handler)."""
        self.session.interrupt()

    def release(self) -> None:
        """Release the file lock until the next statement (other processes may open it)."""
        self.session.release()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- data counterfactuals (docs/grid.md), one statement each ---------------------------
    def create_grid(
        self,
        name: str,
        *,
        train: str,
        subsets: str,
        evaluate: str,
        model: str,
        metrics: Sequence[str] | str = "accuracy",
        units_by: str | None = None,
        slice_by: str | None = None,
        params: dict[str, Any] | None = None,
        replace: bool = False,
        **options: Any,
    ) -> Relation | None:
        """``CREATE GRID name TRAIN ON (train) [UNITS BY] SUBSETS subsets EVALUATE ON (...)
        [SLICE BY] MODEL model [WITH (params)] METRIC metrics [WITH (options)]``.

        ``subsets`` is the design clause as written in SQL (``"EXHAUSTIVE"``,
        ``"PERMUTATIONS 50 TRUNCATE 0.01"``...).
        """
        head = "CREATE OR REPLACE GRID" if replace else "CREATE GRID"
        units = f" UNITS BY {quote(units_by)}" if units_by else ""
        slices = f" SLICE BY {quote(slice_by)}" if slice_by else ""
        metric_list = [metrics] if isinstance(metrics, str) else list(metrics)
        return self.sql(
            f"{head} {quote(name)} TRAIN ON ({train}){units} SUBSETS {subsets} "
            f"EVALUATE ON ({evaluate}){slices} MODEL {model}{with_clause(params or {})} "
            f"METRIC {', '.join(metric_list)}{with_clause(options)}"
        )

    def materialize_grid(
        self, name: str, *, limit: int | None = None, **options: Any
    ) -> Relation | None:
        """``MATERIALIZE GRID name [LIMIT n] [WITH (n_jobs, executor, address, progress)]``."""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return self.sql(f"MATERIALIZE GRID {quote(name)}{tail}{with_clause(options)}")

    def drop_grid(self, name: str, *, if_exists: bool = False) -> Relation | None:
        """``DROP GRID [IF EXISTS] name``."""
        return self.sql(f"DROP GRID {'IF EXISTS ' if if_exists else ''}{quote(name)}")

    def whatif(
        self,
        op: str,
        rows: str,
        *,
        train: str,
        evaluate: str,
        model: str,
        metrics: Sequence[str] | str = "accuracy",
        by: str | None = None,
        slice_by: str | None = None,
        params: dict[str, Any] | None = None,
        **options: Any,
    ) -> Relation | None:
        """``WHATIF REMOVE|ADD|FLIP LABELS|REWEIGHT (rows) [BY w] MODEL ... METRIC ...``.

        ``op`` is ``remove``, ``add``, ``flip_labels`` or ``reweight`` (with ``by``).
        """
        words = {
            "remove": "REMOVE",
            "add": "ADD",
            "flip_labels": "FLIP LABELS",
            "reweight": "REWEIGHT",
        }
        if op.lower() not in words:
            raise CfdbDataError(f"unknown what-if {op!r}; use one of {', '.join(words)}")
        weight = f" BY {quote(by)}" if by else ""
        slices = f" SLICE BY {quote(slice_by)}" if slice_by else ""
        metric_list = [metrics] if isinstance(metrics, str) else list(metrics)
        return self.sql(
            f"WHATIF {words[op.lower()]} ({rows}){weight} MODEL {model}{with_clause(params or {})} "
            f"TRAIN ON ({train}) EVALUATE ON ({evaluate}){slices} "
            f"METRIC {', '.join(metric_list)}{with_clause(options)}"
        )

    def valuate(
        self,
        train: str,
        evaluate: str,
        *,
        method: str = "knn_shapley",
        utility: str = "accuracy",
        features: Sequence[str] | None = None,
        transformer: Any = None,
        **options: Any,
    ) -> Relation | None:
        """``VALUATE (train) EVALUATE ON (evaluate) USING method WITH (...) UTILITY utility``.

        ``options`` are the statement's ``WITH`` options (``k``, ``knn_utility``, ``label``,
        ``positive``, ``sensitive``, ``players`` — a relation name or a list of them, the
        only relations whose tuples are players — and, for ``method="knn_shapley_sampled"``,
        ``samples`` and ``seed``, ...). ``transformer`` is ``'default'``, ``'none'``, or a
        scikit-learn transformer object, registered for this one statement and fitted on the
        whole training set.
        """
        from cfdb.engine.handlers.valuate import register_transformer, unregister_transformer

        registered = None
        if transformer is not None and not isinstance(transformer, str):
            registered = transformer = register_transformer(transformer)
        params = {**options, "features": _tuple(features), "transformer": transformer}
        try:
            return self.sql(
                f"VALUATE ({train}) EVALUATE ON ({evaluate}) USING {method}"
                f"{with_clause(params)} UTILITY {utility}"
            )
        finally:
            if registered:
                unregister_transformer(registered)

    # -- individualized scaling laws (docs/scaling_laws.md), one statement each -------------
    def fit_scaling_laws(
        self, grid: str, *, method: str | Sequence[str] | None = None, **options: Any
    ) -> Relation | None:
        """``FIT SCALING LAWS FOR GRID grid [METHOD mle|ols] [WITH (slice, metric)]``."""
        methods = [method] if isinstance(method, str) else list(method or [])
        head = f" METHOD {', '.join(methods)}" if methods else ""
        return self.sql(f"FIT SCALING LAWS FOR GRID {quote(grid)}{head}{with_clause(options)}")

    def plot_scaling_laws(
        self, grid: str, path: str | os.PathLike[str], *, figure: str = "curves", **options: Any
    ) -> Relation | None:
        """``PLOT SCALING LAWS FOR GRID grid CURVES|ALPHA|R2 TO 'path' [WITH (...)]``.

        ``options``: ``method``, ``slice``, ``metric``, ``units`` (a number or a list of unit
        ids, for ``curves``), ``min_r2`` (for ``alpha``).
        """
        units = options.get("units")
        if isinstance(units, list):
            options["units"] = tuple(units)
        return self.sql(
            f"PLOT SCALING LAWS FOR GRID {quote(grid)} {figure.upper()} "
            f"TO {literal(os.fspath(path))}{with_clause(options)}"
        )


def _tuple(values: Iterable[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise CfdbDataError(f"expected a list of column names, got the string {values!r}")
    return tuple(values)


def install(con: Any, *, allow_pickle: bool = False) -> None:
    """Register cfdb's SQL functions (``predict``, ``predict_proba``, ``cf_distance``,
    ``counterfactuals``...; docs/sql_functions.md) on a DuckDB connection you opened, creating
    or updating cfdb's tables in its database. ``cfdb.connect()`` sessions have them already.
    """
    from cfdb.engine.functions import install as install_functions

    install_functions(con, allow_pickle=allow_pickle)


def connect(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    allow_pickle: bool = False,
    executor: str | None = None,
    address: str | None = None,
    n_jobs: int | None = None,
) -> Database:
    """Open (or create) a cfdb database; ``None`` or ``":memory:"`` for in-memory.

    Example:
        >>> import cfdb
        >>> db = cfdb.connect()
        >>> db.sql("SELECT 42 AS answer").fetchall()
        [(42,)]
    """
    return Database(
        path,
        read_only=read_only,
        allow_pickle=allow_pickle,
        executor=executor,
        address=address,
        n_jobs=n_jobs,
    )
