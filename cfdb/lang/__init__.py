"""The cfdb language: a sqlglot dialect for cfdb statements (the only place importing sqlglot)."""

from __future__ import annotations

from cfdb.lang.nodes import STATEMENT_NODES, CfdbStatement, Param, RawQuery
from cfdb.lang.parse import Statement, is_complete, parse_one, split, statement_keywords

__all__ = [
    "STATEMENT_NODES",
    "CfdbStatement",
    "Param",
    "RawQuery",
    "Statement",
    "is_complete",
    "parse_one",
    "split",
    "statement_keywords",
]

# Statement families defined outside dialect.py register themselves on import
# (see cfdb.lang.dialect.register_statement); import each here.
from cfdb.lang import (
    cfql,  # noqa: F401  (FOREACH, EXPLAIN FOREACH)
    grid_syntax,  # noqa: F401  (CREATE GRID, MATERIALIZE GRID, WHATIF, ...)
    scaling_syntax,  # noqa: F401  (MARGINAL design, FIT/PLOT SCALING LAWS)
    valuate_syntax,  # noqa: F401  (VALUATE)
)
