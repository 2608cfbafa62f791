"""cfdb: what-if analysis of machine-learning models, in SQL, on DuckDB.

Public names only: :func:`connect`, :func:`install`, :class:`Database` and the error classes.
``connect``, ``install`` and ``Database`` are imported on first use (PEP 562), so ``import cfdb`` loads neither DuckDB nor
sqlglot, scikit-learn or pandas; ``tests/test_import.py`` guards that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbError,
    CfdbExecutionError,
    CfdbLockError,
    CfdbNotFittedError,
    CfdbOptionError,
    CfdbPluginError,
    CfdbSchemaError,
    CfdbSecurityError,
    CfdbSolverError,
    CfdbSyntaxError,
    CfdbUnsupportedError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cfdb.api import Database, connect, install


def __getattr__(name: str) -> Any:
    if name in ("Database", "connect", "install"):
        from cfdb import api

        return getattr(api, name)
    raise AttributeError(f"module 'cfdb' has no attribute {name!r}")


__all__ = [
    "CfdbCatalogError",
    "CfdbDataError",
    "CfdbError",
    "CfdbExecutionError",
    "CfdbLockError",
    "CfdbNotFittedError",
    "CfdbOptionError",
    "CfdbPluginError",
    "CfdbSchemaError",
    "CfdbSecurityError",
    "CfdbSolverError",
    "CfdbSyntaxError",
    "CfdbUnsupportedError",
    "Database",
    "__version__",
    "connect",
    "install",
]
