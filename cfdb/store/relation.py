"""A DuckDB relation whose errors are CfdbErrors, for the relations cfdb hands to users.

DuckDB relations are lazy: ``db.sql("SELECT 'a'::INT")`` binds without error and fails only
when its rows are fetched (``.fetchall()``, ``.df()``, printing it). :class:`UserRelation`
forwards every attribute to the wrapped relation and turns a DuckDB error raised by any call
into a :class:`~cfdb.errors.CfdbError` located at the statement that produced the relation;
relations returned by its methods (``.filter()``, ``.limit()``, ...) are wrapped the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from cfdb.store.connection import wrap_duckdb_error


class UserRelation:
    """A ``duckdb.DuckDBPyRelation`` whose DuckDB errors become CfdbErrors.

    Args:
        relation: the relation to wrap.
        text: the statement that produced it.
        offset: where ``text`` starts in ``script``.
        script: the whole script.
    """

    __slots__ = ("_relation", "_where")

    def __init__(self, relation: Any, text: str, offset: int, script: str) -> None:
        object.__setattr__(self, "_relation", relation)
        object.__setattr__(self, "_where", (text, offset, script))

    @property
    def relation(self) -> Any:
        """The wrapped DuckDB relation."""
        return self._relation

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                out = fn(*args, **kwargs)
            except duckdb.Error as exc:
                raise wrap_duckdb_error(exc, *self._where) from exc
            if isinstance(out, duckdb.DuckDBPyRelation):
                return UserRelation(out, *self._where)
            return out

        return call

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._relation, name)
        return self._wrap(value) if callable(value) else value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._relation, name, value)

    def __dir__(self) -> list[str]:
        return dir(self._relation)

    def __len__(self) -> int:
        return int(self._wrap(self._relation.__len__)())

    def __getitem__(self, key: Any) -> Any:
        return self._wrap(self._relation.__getitem__)(key)

    def __repr__(self) -> str:
        return str(self._wrap(self._relation.__repr__)())

    def __str__(self) -> str:
        return str(self._wrap(self._relation.__str__)())
