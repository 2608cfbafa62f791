"""cfdb: what-if analysis of machine-learning models, in SQL, on DuckDB.

Public names only: :func:`connect`, :class:`Database` and the error classes.
"""

from __future__ import annotations

from cfdb.api import Database, connect
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
]
