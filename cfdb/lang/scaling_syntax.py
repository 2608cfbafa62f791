"""Individualized data scaling laws: the ``MARGINAL`` subset design, ``FIT SCALING LAWS`` and
``PLOT SCALING LAWS`` (Covert, Ji, Hashimoto & Zou, ICML 2024). Grammar::

    -- a SUBSETS clause of CREATE GRID (cfdb.lang.grid_syntax.register_design_clause)
    MARGINAL m SIZES ( BETWEEN a AND b [GEOMETRIC s] | (k, ...) )
        [FOR (units query)] [BALANCED | STRATIFIED] [SHARED]   -- modifiers in any order

    FIT SCALING LAWS FOR GRID name [METHOD mle | ols | amortized [, ...]] [WITH (options)]
    PLOT SCALING LAWS FOR GRID name [CURVES | ALPHA | R2] TO 'file.png' [WITH (options)]
"""

from __future__ import annotations

from typing import Any

from sqlglot.tokens import TokenType

from cfdb.lang import nodes
from cfdb.lang.dialect import CfdbParser, _span, register_statement
from cfdb.lang.grid_syntax import _integer, register_design_clause

#: Estimation methods of FIT SCALING LAWS.
FIT_METHODS = ("mle", "ols", "amortized")
#: Figures of PLOT SCALING LAWS.
PLOT_KINDS = ("curves", "alpha", "r2")


class FitScalingLaws(nodes.CfdbStatement):
    """``FIT SCALING LAWS FOR GRID name [METHOD m, ...] [WITH (...)]``."""

    arg_types = nodes._args(this=True, methods=False, params=False)


class PlotScalingLaws(nodes.CfdbStatement):
    """``PLOT SCALING LAWS FOR GRID name [CURVES|ALPHA|R2] TO 'file' [WITH (...)]``."""

    arg_types = nodes._args(this=True, kind=True, path=True, params=False)


for _cls in (FitScalingLaws, PlotScalingLaws):
    nodes.STATEMENT_NODES[_cls.__name__] = _cls


def _at(parser: CfdbParser, *words: str) -> bool:
    """Consume ``words`` if they come next (safe at the end of the statement)."""
    return bool(parser._curr) and bool(parser._match_text_seq(*words))


# -- the design clause --------------------------------------------------------------------------
def _marginal(parser: CfdbParser) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"m": _integer(parser, "the number of draws per unit after MARGINAL")}
    if args["m"] < 1:
        parser._fail("MARGINAL needs at least one draw per unit", parser._prev)
    parser._expect_words("SIZES")
    if parser._curr and parser._curr.token_type == TokenType.L_PAREN:
        tok = parser._curr
        sizes = parser._value()
        if not isinstance(sizes, tuple):
            sizes = (sizes,)
        if not sizes or not all(isinstance(s, int) and s >= 0 for s in sizes):
            parser._fail("SIZES takes a list of non-negative integers", tok)
        args["sizes"] = sorted(set(sizes))
    else:
        parser._expect_words("BETWEEN")
        first = parser._curr
        args["low"] = _integer(parser, "the smallest size after BETWEEN")
        parser._expect_words("AND")
        args["high"] = _integer(parser, "the largest size after AND")
        if args["high"] < args["low"]:
            parser._fail(f"SIZES BETWEEN {args['low']} AND {args['high']} is an empty range", first)
    seen: set[str] = set()
    while parser._curr:
        tok = parser._curr
        word = tok.text.upper()
        if word in seen and word in ("GEOMETRIC", "FOR", "BALANCED", "STRATIFIED", "SHARED"):
            parser._fail(f"{word} given twice", tok)
        if word in ("BALANCED", "STRATIFIED") and ({"BALANCED", "STRATIFIED"} - {word}) & seen:
            parser._fail("BALANCED and STRATIFIED exclude each other", tok)
        if _at(parser, "GEOMETRIC"):
            if "low" not in args:
                parser._fail("GEOMETRIC needs SIZES BETWEEN a AND b", tok)
            args["geometric"] = _integer(parser, "the number of sizes after GEOMETRIC")
            if args["geometric"] < 2:
                parser._fail("GEOMETRIC needs at least two sizes", parser._prev)
        elif parser._match(TokenType.FOR):
            args["for"] = parser._raw_query("FOR").text
        elif _at(parser, "BALANCED"):
            args["balanced"] = True
        elif _at(parser, "STRATIFIED"):
            args["stratified"] = True
        elif _at(parser, "SHARED"):
            args["shared"] = True
        else:
            break
        seen.add(word)
    return "marginal", args


register_design_clause(("MARGINAL",), _marginal)


# -- statements ---------------------------------------------------------------------------------
def _grid_name(parser: CfdbParser, spans: dict[str, tuple[int, int]]) -> str:
    parser._expect(TokenType.FOR, "FOR GRID")
    parser._expect_words("GRID")
    name, spans["name"] = parser._name("a grid name")
    return name


def _parse_fit(parser: CfdbParser) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    name = _grid_name(parser, spans)
    methods: list[str] = []
    if _at(parser, "METHOD"):
        first = parser._curr
        while True:
            tok = parser._curr
            method, _ = parser._name(f"an estimation method ({', '.join(FIT_METHODS)})")
            if method.lower() not in FIT_METHODS:
                parser._fail(
                    f"unknown estimation method {method!r}; known: {', '.join(FIT_METHODS)}", tok
                )
            if method.lower() not in methods:
                methods.append(method.lower())
            if not parser._match(TokenType.COMMA):
                break
        spans["methods"] = _span(first, parser._prev)
    return FitScalingLaws(this=name, methods=methods, params=parser._params(), spans=spans)


def _parse_plot(parser: CfdbParser) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    name = _grid_name(parser, spans)
    kind = "curves"
    tok = parser._curr
    if tok and tok.text.lower() in PLOT_KINDS:
        kind = tok.text.lower()
        parser._advance()
        spans["kind"] = _span(tok, tok)
    elif tok and tok.token_type != TokenType.L_PAREN and tok.text.upper() != "TO":
        parser._fail(f"expected a figure ({', '.join(k.upper() for k in PLOT_KINDS)}) or TO", tok)
    parser._expect_words("TO")
    path, spans["path"] = parser._string("a PNG file path in quotes after TO")
    return PlotScalingLaws(this=name, kind=kind, path=path, params=parser._params(), spans=spans)


register_statement(("FIT", "SCALING", "LAWS"), _parse_fit)
register_statement(("PLOT", "SCALING", "LAWS"), _parse_plot)
