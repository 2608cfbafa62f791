"""Grid statements: CREATE GRID, MATERIALIZE GRID, DROP GRID and WHATIF (data counterfactuals).

The data-counterfactual grid (Nick Vincent, "Exploring Data Counterfactuals"): rows are
training subsets, columns are evaluation slices, cells are measured model performance.
Grammar::

    CREATE [OR REPLACE] GRID name
        TRAIN ON (query) [UNITS BY column]
        SUBSETS design
        EVALUATE ON (query) [SLICE BY column]
        MODEL kind [WITH (model parameters)]
        METRIC metric [, metric ...]
        [WITH (grid options)]

    design := EXHAUSTIVE
            | LEAVE ONE OUT
            | RANDOM m [SIZES (s, ...)] [PAIRS]
            | PERMUTATIONS m [TRUNCATE tolerance]
            | STRIKES BY column

    MATERIALIZE GRID name [LIMIT n] [WITH (options)]
    DROP GRID [IF EXISTS] name

    WHATIF ( REMOVE (query) | ADD (query) | FLIP LABELS (query) | REWEIGHT (query) BY column )
        MODEL kind [WITH (model parameters)]
        TRAIN ON (query) EVALUATE ON (query) [SLICE BY column]
        METRIC metric [, metric ...] [WITH (options)]

Design clauses are table driven (:data:`DESIGN_CLAUSES`): a new design registers a parser with
:func:`register_design_clause`. :func:`referenced_relations` lists the tables and table
functions a plain SQL statement reads (used to fill grid cells lazily before it runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from cfdb.lang import nodes
from cfdb.lang.dialect import CfdbParser, _span, register_statement


class CreateGrid(nodes.CfdbStatement):
    """``CREATE [OR REPLACE] GRID name TRAIN ON (...) ... SUBSETS ... METRIC ...``."""

    arg_types = nodes._args(
        this=True,
        train=True,
        units_by=False,
        design=True,
        design_args=False,
        evaluate=True,
        slice_by=False,
        kind=True,
        params=False,
        metrics=True,
        options=False,
        replace=False,
    )

    def options(self) -> dict[str, Any]:
        """The trailing ``WITH (...)`` grid options as a dict (lower-case names)."""
        return {p.name: p.value for p in self.args.get("options") or []}

    def option(self, name: str) -> nodes.Param | None:
        for p in self.args.get("options") or []:
            if p.name == name.lower():
                return p
        return None


class MaterializeGrid(nodes.CfdbStatement):
    """``MATERIALIZE GRID name [LIMIT n] [WITH (...)]``: train the missing cells."""

    arg_types = nodes._args(this=True, limit=False, params=False)


class DropGrid(nodes.CfdbStatement):
    """``DROP GRID [IF EXISTS] name``."""

    arg_types = nodes._args(this=True, exists=False)


class WhatIf(nodes.CfdbStatement):
    """``WHATIF REMOVE|ADD|FLIP LABELS|REWEIGHT (...) [BY w] MODEL ... METRIC ...``."""

    arg_types = nodes._args(
        op=True,
        target=True,
        weight=False,
        kind=True,
        params=False,
        train=True,
        evaluate=True,
        slice_by=False,
        metrics=True,
        options=False,
    )

    def options(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.args.get("options") or []}

    def option(self, name: str) -> nodes.Param | None:
        for p in self.args.get("options") or []:
            if p.name == name.lower():
                return p
        return None


for _cls in (CreateGrid, MaterializeGrid, DropGrid, WhatIf):
    nodes.STATEMENT_NODES[_cls.__name__] = _cls


# -- design clauses ---------------------------------------------------------------------------
#: Leading word(s) of a design -> parser returning (design name, design arguments).
DESIGN_CLAUSES: dict[tuple[str, ...], Callable[[CfdbParser], tuple[str, dict[str, Any]]]] = {}


def register_design_clause(
    words: tuple[str, ...], method: Callable[[CfdbParser], tuple[str, dict[str, Any]]]
) -> None:
    """Add a ``SUBSETS`` design clause starting with ``words`` (upper case).

    ``method(parser)`` is called with the words consumed and returns ``(design, args)``: the
    design's registry name (see :data:`cfdb.grid.designs.DESIGNS`) and its JSON arguments.
    """
    DESIGN_CLAUSES[tuple(w.upper() for w in words)] = method


def _integer(parser: CfdbParser, what: str) -> int:
    tok = parser._curr
    if not tok or tok.token_type != TokenType.NUMBER or not tok.text.isdigit():
        return parser._fail_end(what)
    parser._advance()
    return int(tok.text)


def _number(parser: CfdbParser, what: str) -> float:
    tok = parser._curr
    if not tok or tok.token_type != TokenType.NUMBER:
        return parser._fail_end(what)
    parser._advance()
    return float(tok.text)


def _exhaustive(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    return "exhaustive", {}


def _leave_one_out(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    parser._expect_words("ONE", "OUT")
    return "leave_one_out", {}


def _random(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"m": _integer(parser, "the number of subsets after RANDOM")}
    if parser._match_text_seq("SIZES"):
        tok = parser._curr
        sizes = parser._value()
        if not isinstance(sizes, tuple):
            sizes = (sizes,)
        if not sizes or not all(isinstance(s, int) and s >= 0 for s in sizes):
            parser._fail("SIZES takes a list of non-negative integers", tok)
        args["sizes"] = sorted(set(sizes))
    if parser._match_text_seq("PAIRS"):
        args["pairs"] = True
    return "random", args


def _permutations(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"m": _integer(parser, "the number of permutations")}
    if parser._match_text_seq("TRUNCATE"):
        args["truncate"] = _number(parser, "a truncation tolerance after TRUNCATE")
    return "permutations", args


def _strikes(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    parser._expect_words("BY")
    column, _ = parser._name("a column after STRIKES BY")
    return "strikes", {"by": column}


register_design_clause(("EXHAUSTIVE",), _exhaustive)
register_design_clause(("LEAVE",), _leave_one_out)
register_design_clause(("RANDOM",), _random)
register_design_clause(("PERMUTATIONS",), _permutations)
register_design_clause(("STRIKES",), _strikes)


# -- statement parsers ------------------------------------------------------------------------
def _design(parser: CfdbParser) -> tuple[str, dict[str, Any], tuple[int, int]]:
    first = parser._curr
    for words, method in sorted(DESIGN_CLAUSES.items(), key=lambda kv: -len(kv[0])):
        if parser._match_text_seq(*words):
            design, args = method(parser)
            return design, args, _span(first, parser._prev)
    known = ", ".join(" ".join(w) for w in sorted(DESIGN_CLAUSES))
    return parser._fail_end(f"a subset design ({known})")


def _metrics(parser: CfdbParser) -> tuple[list[str], tuple[int, int]]:
    first = parser._curr
    names = [parser._name("a metric name")[0]]
    while parser._match(TokenType.COMMA):
        names.append(parser._name("a metric name")[0])
    return [n.lower() for n in names], _span(first, parser._prev)


def _by_column(parser: CfdbParser, *words: str) -> tuple[str | None, tuple[int, int] | None]:
    if not parser._match_text_seq(*words):
        return None, None
    return parser._name(f"a column after {' '.join(words)}")


def _model(parser: CfdbParser, spans: dict[str, tuple[int, int]]) -> tuple[str, list[Any]]:
    parser._expect_words("MODEL")
    kind, spans["kind"] = parser._name("a model kind")
    return kind, parser._params()


def _parse_create_grid(parser: CfdbParser, replace: bool = False) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    name, spans["name"] = parser._name("a grid name")
    parser._expect_words("TRAIN")
    parser._expect(TokenType.ON, "ON")
    train = parser._raw_query("TRAIN ON")
    spans["train"] = (train.start, train.end)
    units_by, span = _by_column(parser, "UNITS", "BY")
    if span:
        spans["units_by"] = span
    parser._expect_words("SUBSETS")
    design, design_args, spans["design"] = _design(parser)
    parser._expect_words("EVALUATE")
    parser._expect(TokenType.ON, "ON")
    evaluate = parser._raw_query("EVALUATE ON")
    spans["evaluate"] = (evaluate.start, evaluate.end)
    slice_by, span = _by_column(parser, "SLICE", "BY")
    if span:
        spans["slice_by"] = span
    kind, params = _model(parser, spans)
    parser._expect_words("METRIC")
    metrics, spans["metrics"] = _metrics(parser)
    return CreateGrid(
        this=name,
        train=train,
        units_by=units_by,
        design=design,
        design_args=design_args,
        evaluate=evaluate,
        slice_by=slice_by,
        kind=kind,
        params=params,
        metrics=metrics,
        options=parser._params(),
        replace=replace,
        spans=spans,
    )


def _parse_create_or_replace_grid(parser: CfdbParser) -> nodes.CfdbStatement:
    return _parse_create_grid(parser, replace=True)


def _parse_materialize_grid(parser: CfdbParser) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    name, spans["name"] = parser._name("a grid name")
    limit = None
    if parser._match(TokenType.LIMIT):
        first = parser._curr
        limit = _integer(parser, "a number of cells after LIMIT")
        spans["limit"] = _span(first, parser._prev)
    return MaterializeGrid(this=name, limit=limit, params=parser._params(), spans=spans)


def _parse_drop_grid(parser: CfdbParser) -> nodes.CfdbStatement:
    exists = bool(parser._match_text_seq("IF", "EXISTS"))
    name, span = parser._name("a grid name")
    return DropGrid(this=name, exists=exists, spans={"name": span})


_WHATIF_OPS = (("REMOVE",), ("ADD",), ("FLIP", "LABELS"), ("REWEIGHT",))


def _parse_whatif(parser: CfdbParser) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    first = parser._curr
    for words in _WHATIF_OPS:
        if parser._match_text_seq(*words):
            op = "_".join(words).lower()
            break
    else:
        return parser._fail_end("REMOVE, ADD, FLIP LABELS or REWEIGHT")
    spans["op"] = _span(first, parser._prev)
    target = parser._raw_query(f"WHATIF {op.replace('_', ' ').upper()}")
    spans["target"] = (target.start, target.end)
    weight = None
    if op == "reweight":
        parser._expect_words("BY")
        weight, spans["weight"] = parser._name("a weight column after BY")
    kind, params = _model(parser, spans)
    parser._expect_words("TRAIN")
    parser._expect(TokenType.ON, "ON")
    train = parser._raw_query("TRAIN ON")
    spans["train"] = (train.start, train.end)
    parser._expect_words("EVALUATE")
    parser._expect(TokenType.ON, "ON")
    evaluate = parser._raw_query("EVALUATE ON")
    spans["evaluate"] = (evaluate.start, evaluate.end)
    slice_by, span = _by_column(parser, "SLICE", "BY")
    if span:
        spans["slice_by"] = span
    parser._expect_words("METRIC")
    metrics, spans["metrics"] = _metrics(parser)
    return WhatIf(
        op=op,
        target=target,
        weight=weight,
        kind=kind,
        params=params,
        train=train,
        evaluate=evaluate,
        slice_by=slice_by,
        metrics=metrics,
        options=parser._params(),
        spans=spans,
    )


register_statement(("CREATE", "GRID"), _parse_create_grid)
register_statement(("CREATE", "OR", "REPLACE", "GRID"), _parse_create_or_replace_grid)
register_statement(("MATERIALIZE", "GRID"), _parse_materialize_grid)
register_statement(("DROP", "GRID"), _parse_drop_grid)
register_statement(("WHATIF",), _parse_whatif)


# -- what a plain statement reads ---------------------------------------------------------------
@dataclass(frozen=True)
class Relation:
    """A relation a SQL statement reads.

    Attributes:
        name: the table, view or table-function name as written (unquoted).
        schema: the schema qualifier, or "" when none.
        args: for a table function, its literal string arguments in order; else ().
        function: whether this is a table-function call (``FROM shapley('g')``).
    """

    name: str
    schema: str = ""
    args: tuple[str, ...] = ()
    function: bool = False


def referenced_relations(sql: str) -> list[Relation]:
    """The tables, views and table functions that ``sql`` reads in a query, in order.

    Only relations inside a SELECT count (``DROP VIEW g`` or the target of ``INSERT INTO t``
    read nothing); common table expressions are left out (they are not catalog objects). A
    statement sqlglot cannot parse yields ``[]``: DuckDB still runs it and reports its errors.

    Example:
        >>> [r.name for r in referenced_relations("SELECT * FROM g JOIN loo('g') USING (x)")]
        ['g', 'loo']
    """
    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except (SqlglotError, ValueError, RecursionError):
        return []
    out: list[Relation] = []
    for tree in trees:
        if tree is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if table.find_ancestor(exp.Select) is None:
                continue
            this = table.this
            if isinstance(this, exp.Anonymous | exp.Func) and not isinstance(this, exp.Identifier):
                fname = this.name if isinstance(this, exp.Anonymous) else this.sql_name()
                args = tuple(
                    a.this for a in this.expressions if isinstance(a, exp.Literal) and a.is_string
                )
                out.append(Relation(str(fname).lower(), "", args, True))
            elif table.name and table.name.lower() not in ctes:
                out.append(Relation(table.name, table.db or ""))
    return out
