"""The VALUATE statement: data values of base tuples for a training query.

Grammar::

    VALUATE (training query)
        EVALUATE ON (validation query)
        USING method [WITH (name = value, ...)]
        [UTILITY utility]

The ``WITH`` list and the ``UTILITY`` clause may come in either order; ``UTILITY`` defaults
to ``accuracy``. The training query is rewritten to carry provenance
(:mod:`cfdb.lang.provenance`); the validation query runs as written.
"""

from __future__ import annotations

from sqlglot.tokens import TokenType

from cfdb.lang import nodes
from cfdb.lang.dialect import CfdbParser, register_statement


class Valuate(nodes.CfdbStatement):
    """``VALUATE (query) EVALUATE ON (query) USING method [WITH (...)] [UTILITY name]``."""

    arg_types = nodes._args(train=True, evaluate=True, method=True, params=False, utility=False)


nodes.STATEMENT_NODES[Valuate.__name__] = Valuate


def _parse_valuate(parser: CfdbParser) -> nodes.CfdbStatement:
    spans: dict[str, tuple[int, int]] = {}
    train = parser._raw_query("VALUATE")
    spans["train"] = (train.start, train.end)
    parser._expect_words("EVALUATE")
    parser._expect(TokenType.ON, "ON")
    evaluate = parser._raw_query("EVALUATE ON")
    spans["evaluate"] = (evaluate.start, evaluate.end)
    parser._expect(TokenType.USING, "USING <method>")
    method, spans["method"] = parser._name("a valuation method")
    params: list[nodes.Param] = []
    utility = None
    for _ in range(2):
        if not params and parser._curr and parser._curr.token_type == TokenType.WITH:
            params = parser._params()
        elif utility is None and parser._match_text_seq("UTILITY"):
            utility, spans["utility"] = parser._name("a utility name")
    return Valuate(
        train=train,
        evaluate=evaluate,
        method=method,
        params=params,
        utility=utility,
        spans=spans,
    )


register_statement(("VALUATE",), _parse_valuate)
