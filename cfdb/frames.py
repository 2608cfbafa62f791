"""Replacement scans for the Python API: ``db.sql("SELECT * FROM df")`` sees the caller's ``df``.

DuckDB's own Python client finds a pandas DataFrame, an Arrow table or a polars DataFrame named
in a query among the *calling* frame's variables. cfdb runs statements from its own frames, so
:func:`caller_frames` does the lookup the same way and registers the objects for one call;
the result is materialized before they are unregistered (a lazy relation would otherwise
outlive them). A table or view of the database with the same name wins, as in DuckDB.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: (module prefix, class name) of the objects DuckDB scans by name.
_SCANNABLE = {
    ("pandas", "DataFrame"),
    ("pyarrow", "Table"),
    ("pyarrow", "RecordBatchReader"),
    ("pyarrow", "Dataset"),
    ("polars", "DataFrame"),
    ("polars", "LazyFrame"),
    ("duckdb", "DuckDBPyRelation"),
}
_counter = itertools.count(1)


def is_scannable(value: Any) -> bool:
    """Whether DuckDB can scan ``value`` as a table (checked by type name: no imports)."""
    for klass in type(value).__mro__:
        root = klass.__module__.split(".")[0]
        if (root, klass.__name__) in _SCANNABLE:
            return True
    return False


def caller_objects(text: str, depth: int = 2) -> dict[str, Any]:
    """The scannable objects named in ``text`` among the locals and globals of the frame
    ``depth`` levels above this call (locals first, as in DuckDB)."""
    frame = sys._getframe(depth)
    words = set(_WORD.findall(text))
    found: dict[str, Any] = {}
    for name in words:
        for scope in (frame.f_locals, frame.f_globals):
            if name in scope:
                if is_scannable(scope[name]):
                    found[name] = scope[name]
                break
    return found


@contextmanager
def registered(store: Any, objects: dict[str, Any]) -> Iterator[list[str]]:
    """Register ``objects`` under their names for the block (names that are tables or views
    of the database are skipped); yields the names registered."""
    names = []
    try:
        for name, value in objects.items():
            if store.table_exists(name):
                continue
            store.register(name, value)
            names.append(name)
        yield names
    finally:
        for name in names:
            store.unregister(name)
