"""cfdb inside SQL: the functions a query can call, and installing them on a connection.

``predict(model, row)``, ``predict_proba(model, row [, label])``, ``predict_value(model,
row)`` and ``satisfies(condition, row)`` are Arrow UDFs; ``cf_distance(a, b [, metric])`` is a
SQL macro over ``Features``; ``counterfactuals``, ``whatif_remove`` and ``knn_shapley`` are
table macros over UDFs that run the statements' own code paths (:mod:`cfdb.engine.sql_tables`).
See ``docs/sql_functions.md``.

One :class:`SqlFunctions` serves one DuckDB connection. It loads models through a cursor of
that connection (a UDF must not query the connection it runs in) and keeps the fitted models,
each with a fingerprint of its ``Models`` row that is checked once per batch: a model replaced
or dropped (by cfdb or by plain SQL) is reloaded or reported, never served stale.

:func:`install` puts everything on a connection: a cfdb session's (``cfdb.connect()`` does it
on open) or a user's own (``cfdb.install(con)``, which first creates or migrates cfdb's
tables in that database).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cfdb.engine import sql_tables
from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbError,
    CfdbSyntaxError,
    CfdbUnsupportedError,
)
from cfdb.store import catalog, migrations
from cfdb.store import functions as sqlf
from cfdb.store.connection import Store

if TYPE_CHECKING:
    from cfdb.models import Model

# pyarrow.compute, the models and the handlers load on the first call: a session registers
# these functions when it opens, and `import cfdb` + a plain query must stay light.

_FINGERPRINT = f"SELECT {sqlf.MODEL_VERSION} FROM Models WHERE lower(Name) = lower(?) LIMIT 1"
#: The functions generated from the feature space, refreshed before a statement calling them.
_GENERATED = ("cf_distance", "counterfactuals")


class SqlFunctions:
    """The implementations behind cfdb's SQL functions on one connection.

    Args:
        con: the DuckDB connection the functions are registered on.
        allow_pickle: let the functions load models stored as pickles.
    """

    def __init__(self, con: Any, *, allow_pickle: bool = False) -> None:
        self._con = con
        self.allow_pickle = allow_pickle
        self._lock = threading.RLock()
        self._models: dict[str, tuple[Any, Model]] = {}
        #: Condition text by hash: a canonical hash always names the same text.
        self._conditions: dict[str, str] = {}
        self._features_key: Any = None

    # -- the database, seen from inside a query ----------------------------------------------
    @contextlib.contextmanager
    def cursor(self, *, macros: bool = False) -> Iterator[Store]:
        """A store over a new cursor of the connection (it sees committed data), closed after.

        A fresh cursor each time: a query running on one cursor may call these functions
        again (a table function's statements may call ``predict``), and a cursor cannot
        serve a query from inside its own.

        Args:
            macros: create the model macros on it (temporary macros belong to one connection),
                for statements that may call ``predict`` and friends.
        """
        cursor = self._con.cursor()
        try:
            if macros:
                sqlf.create_macros(cursor, sqlf.model_macros())
            yield sqlf.store_over(cursor)
        finally:
            cursor.close()

    def model(self, name: str, version: Any = None) -> Model:
        """The stored model ``name``, loaded once per version of its ``Models`` row.

        Args:
            version: the row's version as the calling query saw it (``None``: unknown).
                When it matches the cached model's, the database is not queried.

        Raises:
            CfdbCatalogError: no such model.
        """
        from cfdb.engine.handlers.models import load_model

        with self._lock:
            cached = self._models.get(name.lower())
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        with self.cursor() as store:
            rows = store.execute(_FINGERPRINT, [name])
            if not rows:
                with self._lock:
                    self._models.pop(name.lower(), None)
                known = ", ".join(catalog.model_names(store)) or "none"
                raise CfdbCatalogError(f"model {name!r} does not exist (models: {known})")
            if cached is not None and cached[0] == rows[0][0]:
                return cached[1]
            context = SimpleNamespace(store=store, allow_pickle=self.allow_pickle)
            model = load_model(context, name)[1]
        with self._lock:
            self._models[name.lower()] = (rows[0][0], model)
        return model

    # -- scalar functions ---------------------------------------------------------------------
    def predict(self, *args: Any) -> pa.Array:
        """``predict(model, row)``: the predicted label (a regressor's value as text)."""
        from cfdb.models import rows as model_rows

        model_arg, rows, *version = _arity("predict", args, 2, 3)
        return self._per_model("predict", model_arg, rows, version, pa.string(), model_rows.predict)

    def predict_value(self, *args: Any) -> pa.Array:
        """``predict_value(model, row)``: a regression model's output."""
        from cfdb.models import rows as model_rows

        model_arg, rows, *version = _arity("predict_value", args, 2, 3)
        return self._per_model(
            "predict_value", model_arg, rows, version, pa.float64(), model_rows.predict_value
        )

    def predict_proba(self, *args: Any) -> pa.Array:
        """``predict_proba(model, row [, label])``: the probability of ``label``, or of the
        predicted label."""
        from cfdb.models import rows as model_rows

        model_arg, rows, version, *rest = _arity("predict_proba", args, 3, 4)
        labels = rest[0] if rest and not pa.types.is_null(rest[0].type) else None

        def proba(model: Model, part: pa.StructArray, mask: Any, what: str) -> pa.Array:
            part_labels = None
            if labels is not None:
                part_labels = labels if mask is None else labels.filter(mask)
            return model_rows.predict_proba(model, part, part_labels, what)

        return self._per_model(
            "predict_proba", model_arg, rows, [version], pa.float64(), proba, masked=True
        )

    def _per_model(
        self,
        what: str,
        model_arg: Any,
        rows_arg: Any,
        version_arg: list[Any],
        out_type: pa.DataType,
        fn: Any,
        *,
        masked: bool = False,
    ) -> pa.Array:
        import pyarrow.compute as pc

        from cfdb.models import rows as model_rows

        rows = model_rows.as_struct(rows_arg, what)
        names = _flat(model_arg)
        if not (model_rows.is_text(names.type) or pa.types.is_null(names.type)):
            raise CfdbDataError(f"{what} takes a model name (VARCHAR) first")
        versions = _flat(version_arg[0]) if version_arg else None
        distinct = [v for v in pc.unique(names).to_pylist() if v is not None]
        if len(distinct) == 1 and names.null_count == 0:
            version = versions[0].as_py() if versions is not None and len(versions) else None
            model = self.model(distinct[0], version)
            return fn(model, rows, None, what) if masked else fn(model, rows, what)
        out = np.full(len(rows), None, dtype=object)
        for name in distinct:
            mask = pc.equal(names, name)
            part = rows.filter(mask)
            version = None
            if versions is not None:
                version = pc.max(versions.filter(mask)).as_py()
            model = self.model(name, version)
            values = fn(model, part, mask, what) if masked else fn(model, part, what)
            out[np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)] = values.to_pylist()
        return pa.array(out.tolist(), out_type)

    def satisfies(self, *args: Any) -> pa.Array:
        """``satisfies(condition, row)``: whether the row satisfies a stored condition (by its
        ``Conditions.Hash``), evaluated by DuckDB on the condition's own SQL text."""
        import pyarrow.compute as pc

        from cfdb.models import rows as model_rows

        hashes, rows_arg = _arity("satisfies", args, 2, 2)
        rows = model_rows.as_struct(rows_arg, "satisfies")
        keys = _flat(hashes)
        out = np.full(len(rows), None, dtype=object)
        table = pa.Table.from_struct_array(rows).append_column(
            "__cfdb_row", pa.array(np.arange(len(rows)), pa.int64())
        )
        with self.cursor() as store:
            for key in [v for v in pc.unique(keys).to_pylist() if v is not None]:
                if str(key) not in self._conditions:
                    found = store.execute(
                        "SELECT Condition FROM Conditions WHERE Hash = ? LIMIT 1", [str(key)]
                    )
                    if not found:
                        raise CfdbCatalogError(f"satisfies: no condition has the hash {key!r}")
                    self._conditions[str(key)] = found[0][0]
                condition = self._conditions[str(key)]
                part = table.filter(pc.and_(pc.equal(keys, key), pc.is_valid(rows)))
                store.register("__cfdb_rows", part)
                try:
                    result = store.execute(f"SELECT __cfdb_row, ({condition}) FROM __cfdb_rows")
                except CfdbCatalogError as err:
                    raise CfdbDataError(
                        f"satisfies: the row lacks a feature of condition {key!r}: {err.message}"
                    ) from None
                finally:
                    store.unregister("__cfdb_rows")
                for i, value in result:
                    out[i] = value
        return pa.array(out.tolist(), pa.bool_())

    # -- table-valued functions (cfdb.engine.sql_tables) ---------------------------------------
    def _run(self, fn: Any, *extra: Any) -> Any:
        name = fn.__name__.removeprefix("run_")

        def call(*args: Any) -> pa.Array:
            from cfdb.engine.session import Session

            with self.cursor(macros=True) as store:
                session = Session(store=store, allow_pickle=self.allow_pickle)
                try:
                    records = fn(session, args, *extra)
                except CfdbError as err:
                    # Positions point into the statement run here, which the user never
                    # wrote: keep the message, name the function.
                    raise type(err)(f"{name}: {err.message}", hint=err.hint) from None
            return pa.array([records])

        return call

    # -- installing -----------------------------------------------------------------------------
    def register(self) -> None:
        """(Re)register the UDFs and macros on the connection."""
        sqlf.register_udfs(
            self._con,
            {
                "__cfdb_predict": self.predict,
                "__cfdb_predict_proba": self.predict_proba,
                "__cfdb_predict_value": self.predict_value,
                "satisfies": self.satisfies,
            },
            sqlf.SCALAR_FUNCTIONS,
        )
        sqlf.create_macros(self._con, sqlf.model_macros())
        sqlf.register_udfs(
            self._con,
            {
                "__cfdb_whatif_remove": self._run(sql_tables.run_whatif_remove),
                "__cfdb_knn_shapley": self._run(sql_tables.run_knn_shapley),
            },
            {
                "__cfdb_whatif_remove": sql_tables.list_type(sql_tables.WHATIF_COLUMNS),
                "__cfdb_knn_shapley": sql_tables.list_type(sql_tables.VALUES_COLUMNS),
            },
            side_effects=["__cfdb_whatif_remove", "__cfdb_knn_shapley"],
        )
        self._features_key = None
        self.refresh()
        sqlf.create_macros(self._con, sql_tables.macros())

    def refresh(self) -> None:
        """Regenerate what follows the feature space (``cf_distance``, the columns of
        ``counterfactuals``) if ``Features`` or ``CFs`` changed since it was generated."""
        store = sqlf.store_over(self._con)
        features = catalog.read_features(store)
        columns = sql_tables.cf_columns(store)
        key = (tuple((f.name, f.type, f.mad) for f in features), tuple(columns))
        if key == self._features_key:
            return
        sqlf.create_macros(self._con, [sqlf.cf_distance_macro(features)])
        names = [c for c, _ in columns]
        sqlf.register_udfs(
            self._con,
            {"__cfdb_counterfactuals": self._run(sql_tables.run_counterfactuals, names)},
            {"__cfdb_counterfactuals": sql_tables.list_type(columns)},
            side_effects=["__cfdb_counterfactuals"],
        )
        self._features_key = key


def _flat(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _arity(what: str, args: tuple[Any, ...], low: int, high: int) -> tuple[Any, ...]:
    if not low <= len(args) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise CfdbSyntaxError(f"{what} takes {wanted} arguments, got {len(args)}")
    return args


def install(con: Any, *, allow_pickle: bool = False, migrate: bool = True) -> SqlFunctions:
    """Register cfdb's SQL functions on a DuckDB connection.

    Args:
        con: a DuckDB connection (any database the caller opened).
        allow_pickle: let the functions load models stored as pickles.
        migrate: create cfdb's tables in the connection's database, or bring them up to date
            (a read-only database is only checked).

    Returns:
        The :class:`SqlFunctions` serving the connection.
    """
    if migrate:
        store = sqlf.store_over(con)
        if sqlf.is_read_only(con):
            migrations.check_version(store)
        else:
            migrations.migrate(store)
    functions = SqlFunctions(con, allow_pickle=allow_pickle)
    functions.register()
    return functions


def attach(session: Any) -> None:
    """Give a session the functions: installed each time its connection opens, kept in step
    with ``Features`` before each plain SQL statement, which may not store calls to them in
    a view or macro."""

    def on_open(store: Store) -> None:
        if migrations.current_version(store) == 0:
            # A DuckDB file that is not a cfdb database, opened read-only for plain SQL: its
            # own tables may share cfdb's names, so cfdb's functions have nothing to serve.
            session.functions = None
            return
        session.functions = install(store.con, allow_pickle=session.allow_pickle, migrate=False)

    def before(session_: Any, statement: Any) -> None:
        found = sqlf.calls_in_definition(statement.text)
        if found is not None:
            kind, names = found
            raise CfdbUnsupportedError(
                f"a stored {kind.lower()} cannot call {', '.join(names)}: the file would not "
                "open in DuckDB without cfdb",
                hint=f"store the results in a table (CREATE TABLE ... AS SELECT ...), or use "
                f"CREATE TEMP {kind}",
            ).located(statement.script, statement.start, statement.end)
        if not sqlf.calls_in(statement.text, _GENERATED):
            return  # nothing to keep in step: no cost for other statements
        session_.store.open()  # a released file reopens here, installing fresh functions
        functions = getattr(session_, "functions", None)
        if functions is not None:
            functions.refresh()

    session.functions = None
    session.store.on_open(on_open)
    session.before_plain_sql.append(before)
