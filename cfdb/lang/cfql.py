"""CFQL: ``FOREACH pred IN (Q_pred) GENERATE (Q_CF) [USING g] [WITH (...)]`` (CFDB paper, 3.1).

This module parses the statement and analyses Q_CF against the paper's restrictions, producing
a :class:`CfqlPlan`: everything the c-table evaluation needs, with no sqlglot in it.

- Q_pred is kept as text (DuckDB runs it); it may not mention ``CFs`` or ``Prediction_CFs``.
- Q_CF is parsed with sqlglot. It selects from ``CFs`` exactly once (no self-joins), optionally
  ``Prediction_CFs`` (only to link CFs to ``pred``), and other relations; it projects only CF
  attributes; its WHERE (with the ON conditions of inner joins) is a boolean combination of
  comparisons, ``BETWEEN``, ``IN (list)``, ``IN (subquery)`` and comparisons with scalar
  subqueries. Subqueries may not mention ``CFs``/``Prediction_CFs``.

The plan splits Q_CF's condition in three (paper, section 3.2):

- top-level conjuncts that mention no CF attribute become the WHERE of one *base query* over
  ``pred`` and the other relations, run by DuckDB once for all predictions;
- every value a CF atom is compared with (``I.Income``, ``pred.Score * 2``, a scalar or
  ``IN`` subquery) and every non-CF atom nested inside the CF part becomes a *slot*: a column
  of the base query;
- the rest is a *template* (:class:`TAnd`, :class:`TCmp`, ...) over CF variables and slots,
  instantiated per base-query row into a condition (:mod:`cfdb.ctable.instantiate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

from cfdb.errors import CfdbSyntaxError, CfdbUnsupportedError
from cfdb.lang import nodes
from cfdb.lang.dialect import CfdbParser, register_statement

# ---------------------------------------------------------------------------------------------
# Template: Q_CF's condition with slots for the values DuckDB computes per row
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TAnd:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class TOr:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class TNot:
    item: Any


@dataclass(frozen=True)
class TConst:
    value: bool


@dataclass(frozen=True)
class TBool:
    """A non-CF predicate, computed per row in slot ``slot``."""

    slot: int


@dataclass(frozen=True)
class TCmp:
    """``y_var op <slot value>``."""

    var: str
    op: str
    slot: int


@dataclass(frozen=True)
class TVarCmp:
    """``y_left op y_right``."""

    left: str
    op: str
    right: str


@dataclass(frozen=True)
class TIn:
    """``y_var IN (<slot>, ...)``: a list of values."""

    var: str
    slots: tuple[int, ...]


@dataclass(frozen=True)
class TInList:
    """``y_var IN (subquery)``: the slot holds the subquery's values as a list."""

    var: str
    slot: int


@dataclass
class CfqlPlan:
    """What c-table evaluation needs from a Q_CF (see the module docstring).

    Attributes:
        cf_alias: the alias of ``CFs`` in Q_CF.
        pc_alias: the alias of ``Prediction_CFs``, if Q_CF uses it.
        pred_name: the loop variable (``pred``).
        from_items: SQL of the other FROM items (with their aliases).
        join_where: top-level conjuncts without CF attributes (SQL).
        template: the CF part of the condition.
        slots: SQL of each slot expression.
        projection: the CF columns Q_CF projects (``*`` for all).
        select: Q_CF's AST, to run it over the filled tables afterwards.
        score: bounds on the CF's model output (``C.Score``, the paper's "result"
            attribute, section 4.4), as ``(op, slot)`` with op ``<``, ``<=``, ``>``, ``>=``;
            all must hold (they come from top-level AND terms).
    """

    cf_alias: str
    pc_alias: str | None
    pred_name: str
    from_items: list[str]
    join_where: list[str]
    template: Any
    slots: list[str]
    projection: list[str]
    select: exp.Select = field(repr=False)
    score: list[tuple[str, int]] = field(default_factory=list)

    def result_sql(self, query_id: int) -> str:
        """Q_CF over the filled tables, restricted to this query's links (the rows a user
        sees after generation), with the prediction's ``PredictionId`` appended when Q_CF does
        not project it: every CF says which prediction it belongs to."""
        select = self.select.copy()
        if "predictionid" not in {n.lower() for n in select.named_selects}:
            select = select.select(
                exp.column("PredictionId", table=self.pred_name).as_("PredictionId"), copy=False
            )
        pred = exp.Subquery(
            this=exp.maybe_parse(
                "SELECT * FROM Predictions WHERE PredictionId IN "
                f"(SELECT PredictionId FROM Prediction_CFs WHERE QueryId = {int(query_id)})",
                dialect="duckdb",
            ),
            alias=exp.TableAlias(this=exp.to_identifier(self.pred_name)),
        )
        select = select.join(pred)
        cf = self.cf_alias
        if self.pc_alias:
            link = f"{self.pc_alias}.QueryId = {int(query_id)}"
        else:
            select = select.join(
                exp.Table(
                    this=exp.to_identifier("Prediction_CFs"),
                    alias=exp.TableAlias(this=exp.to_identifier("__cfdb_pc")),
                )
            )
            link = (
                f"__cfdb_pc.CfId = {cf}.CfId AND __cfdb_pc.PredictionId = "
                f"{self.pred_name}.PredictionId AND __cfdb_pc.QueryId = {int(query_id)}"
            )
        return select.where(link, dialect="duckdb").sql(dialect="duckdb")


class Foreach(nodes.CfdbStatement):
    """``[EXPLAIN [PLAN]] FOREACH var IN (Q_pred) GENERATE (Q_CF) [USING g] [WITH (...)]``."""

    arg_types = {
        **nodes.CfdbStatement.arg_types,
        "var": True,
        "pred": True,
        "generate": True,
        "select": True,
        "using": False,
        "params": False,
        "explain": False,
        "plan": False,
    }


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_FORBIDDEN = {"cfs", "prediction_cfs"}


def _parse_foreach(
    self: CfdbParser, explain: bool = False, plan: bool = False
) -> nodes.CfdbStatement:
    var, var_span = self._name("the loop variable (e.g. pred)")
    self._expect(TokenType.IN, "IN")
    pred, pred_tokens = self._raw_query_tokens("Q_pred")
    for tok in pred_tokens:
        if (
            tok.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
            and tok.text.lower() in _FORBIDDEN
        ):
            raise CfdbSyntaxError(
                f"Q_pred may not use {tok.text} (CFQL: predictions are chosen before any CF "
                "exists)",
                sql=self.sql,
                start=tok.start,
                end=tok.end + 1,
            )
    self._expect_words("GENERATE")
    generate, gen_tokens = self._raw_query_tokens("Q_CF")
    select = _parse_select_tokens(gen_tokens, self.sql, generate)
    using, using_span = (None, None)
    if self._match(TokenType.USING):
        using, using_span = self._name("a generator name")
    params = self._params()
    spans = {
        "var": var_span,
        "pred": (pred.start, pred.end),
        "generate": (generate.start, generate.end),
    }
    if using_span:
        spans["using"] = using_span
    return Foreach(
        var=var,
        pred=pred,
        generate=generate,
        select=select,
        using=using,
        params=params,
        explain=explain,
        plan=plan,
        spans=spans,
    )


def _parse_explain_foreach(self: CfdbParser) -> nodes.CfdbStatement:
    return _parse_foreach(self, explain=True)


def _parse_explain_plan_foreach(self: CfdbParser) -> nodes.CfdbStatement:
    return _parse_foreach(self, explain=True, plan=True)


def _parse_select_tokens(tokens: list[Token], sql: str, raw: nodes.RawQuery) -> exp.Select:
    from cfdb.lang.parse import _DIALECT, _from_parse_error

    try:
        trees = _DIALECT.parser(error_level=_immediate()).parse(tokens, sql)
    except ParseError as exc:
        raise _from_parse_error(exc, sql) from exc
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        raise CfdbSyntaxError(
            "Q_CF must be a single SELECT over CFs", sql=sql, start=raw.start, end=raw.end
        )
    return trees[0]


def _immediate() -> Any:
    from sqlglot.errors import ErrorLevel

    return ErrorLevel.IMMEDIATE


register_statement(("FOREACH",), _parse_foreach)
register_statement(("EXPLAIN", "FOREACH"), _parse_explain_foreach)
register_statement(("EXPLAIN", "PLAN", "FOREACH"), _parse_explain_plan_foreach)


# ---------------------------------------------------------------------------------------------
# Analysis of Q_CF
# ---------------------------------------------------------------------------------------------

_COMPARISONS: dict[type, str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def node_span(node: exp.Expression, default: tuple[int, int]) -> tuple[int, int]:
    """The character span of a sqlglot node, from its identifiers' positions."""
    starts, ends = [], []
    for sub in node.walk():
        meta = getattr(sub, "_meta", None) or {}
        if "start" in meta:
            starts.append(int(meta["start"]))
            ends.append(int(meta["end"]) + 1)
    return (min(starts), max(ends)) if starts else default


class Analyzer:
    """Checks Q_CF against CFQL's rules and builds the :class:`CfqlPlan`.

    Args:
        node: the parsed statement.
        script: the whole script (for error positions).
        cf_columns: the columns of the ``CFs`` table.
        features: the CF feature names (the variables).
        columns_of: the columns of a base table by name (``None`` if unknown).
        prediction_columns: the columns of ``Predictions``.
    """

    def __init__(
        self,
        node: Foreach,
        script: str,
        cf_columns: Sequence[str],
        features: Sequence[str],
        columns_of: Callable[[str], list[str] | None],
        prediction_columns: Sequence[str],
    ) -> None:
        self.node = node
        self.script = script
        self.select: exp.Select = node.args["select"]
        self.cf_columns = {c.lower(): c for c in cf_columns}
        self.features = {f.lower(): f for f in features}
        self.columns_of = columns_of
        self.prediction_columns = {c.lower() for c in prediction_columns}
        self.pred = str(node.args["var"]).lower()
        self.cf_alias: str | None = None
        self.pc_alias: str | None = None
        self.other: dict[str, set[str] | None] = {}  # alias -> known columns
        self.slots: list[str] = []

    # -- errors -----------------------------------------------------------------------------
    def fail(
        self, message: str, where: exp.Expression | None = None, unsupported: bool = False
    ) -> Any:
        default = self.node.span("generate")
        start, end = node_span(where, default) if where is not None else default
        cls = CfdbUnsupportedError if unsupported else CfdbSyntaxError
        raise cls(message, sql=self.script, start=start, end=end)

    # -- entry ------------------------------------------------------------------------------
    def plan(self) -> CfqlPlan:
        sel = self.select
        for key in ("group", "having", "limit", "offset", "qualify", "with_", "windows"):
            if sel.args.get(key):
                self.fail(
                    f"Q_CF may not use {key.rstrip('_').upper()} (CFQL: a select-"
                    "project-join query over CFs)",
                    sel.args[key],
                )
        from_items, conjuncts = self._from()
        if self.cf_alias is None:
            self.fail("Q_CF must select from CFs")
        projection = self._projection()
        where = sel.args.get("where")
        if where is not None:
            conjuncts.extend(_conjuncts(where.this))
        join_where: list[str] = []
        template_items: list[Any] = []
        score: list[tuple[str, int]] = []
        for c in conjuncts:
            self._check_subqueries(c)
            if self._is_link(c):
                continue
            bounds = self._score_bounds(c)
            if bounds is not None:
                score.extend(bounds)
                continue
            if not self._mentions(c, cf=True, pc=True):
                join_where.append(c.sql(dialect="duckdb"))
            else:
                template_items.append(self._build(c))
        template = TAnd(tuple(template_items)) if template_items else TConst(True)
        assert self.cf_alias is not None
        return CfqlPlan(
            cf_alias=self.cf_alias,
            pc_alias=self.pc_alias,
            pred_name=str(self.node.args["var"]),
            from_items=from_items,
            join_where=join_where,
            template=template,
            slots=self.slots,
            projection=projection,
            select=sel,
            score=score,
        )

    # -- FROM -------------------------------------------------------------------------------
    def _from(self) -> tuple[list[str], list[exp.Expression]]:
        sel = self.select
        items: list[exp.Expression] = []
        if sel.args.get("from_") is not None:
            items.append(sel.args["from_"].this)
        conjuncts: list[exp.Expression] = []
        for join in sel.args.get("joins") or []:
            side, kind = join.args.get("side"), (join.args.get("kind") or "").upper()
            if side or kind not in ("", "INNER", "CROSS"):
                self.fail(
                    "Q_CF may only use inner joins (an outer join has no c-table condition per CF)",
                    join,
                    unsupported=True,
                )
            if join.args.get("using"):
                self.fail("write JOIN ... ON instead of USING in Q_CF", join, unsupported=True)
            items.append(join.this)
            if join.args.get("on") is not None:
                conjuncts.extend(_conjuncts(join.args["on"]))
        from_sql = []
        for item in items:
            alias = item.alias_or_name
            if isinstance(item, exp.Table) and item.name.lower() == "cfs":
                if self.cf_alias is not None:
                    self.fail("Q_CF joins CFs with itself (CFQL allows no self-joins of CFs)", item)
                self.cf_alias = alias
                continue
            if isinstance(item, exp.Table) and item.name.lower() == "prediction_cfs":
                if self.pc_alias is not None:
                    self.fail("Q_CF uses Prediction_CFs twice", item)
                self.pc_alias = alias
                continue
            if alias.lower() == self.pred:
                self.fail(f"{alias!r} is the loop variable; give this relation another alias", item)
            self._check_subqueries(item, allow_self=isinstance(item, exp.Table))
            known = None
            if isinstance(item, exp.Table) and not item.args.get("db"):
                cols = self.columns_of(item.name)
                known = {c.lower() for c in cols} if cols is not None else None
            self.other[alias.lower()] = known
            from_sql.append(item.sql(dialect="duckdb"))
        return from_sql, conjuncts

    def _check_subqueries(self, node: exp.Expression, allow_self: bool = False) -> None:
        for table in node.find_all(exp.Table):
            if allow_self and table is node:
                continue
            if table.name.lower() in _FORBIDDEN:
                self.fail(f"a subquery of Q_CF may not use {table.name} (CFQL rule)", table)

    # -- columns ----------------------------------------------------------------------------
    def _owner(self, col: exp.Column) -> str:
        """'cf', 'pc', 'pred' or 'other' for a column reference."""
        table = col.table.lower() if col.table else ""
        if table:
            if self.cf_alias and table == self.cf_alias.lower():
                return "cf"
            if self.pc_alias and table == self.pc_alias.lower():
                return "pc"
            if table == self.pred:
                if col.name.lower() not in self.prediction_columns:
                    self.fail(
                        f"{self.node.args['var']} has no column {col.name!r} (it is a "
                        "row of Predictions)",
                        col,
                    )
                return "pred"
            return "other"
        name = col.name.lower()
        if name in self.cf_columns and not any(
            cols is not None and name in cols for cols in self.other.values()
        ):
            return "cf"
        return "other"

    def _columns(self, node: exp.Expression) -> list[exp.Column]:
        # Columns of this query level: subqueries are non-CF by rule (checked separately).
        out = []
        for col in node.find_all(exp.Column):
            if col.find_ancestor(exp.Subquery, exp.Select) not in (None, self.select):
                continue
            out.append(col)
        return out

    def _mentions(self, node: exp.Expression, cf: bool = False, pc: bool = False) -> bool:
        for col in self._columns(node):
            owner = self._owner(col)
            if (cf and owner == "cf") or (pc and owner == "pc"):
                return True
        return False

    def _is_score(self, node: exp.Expression) -> bool:
        """Whether ``node`` is ``C.Score``: the model's output on the CF (unless a feature is
        named so)."""
        return (
            isinstance(node, exp.Column)
            and node.name.lower() == "score"
            and "score" not in self.features
            and self._owner(node) == "cf"
        )

    def _score_bounds(self, node: exp.Expression) -> list[tuple[str, int]] | None:
        """``C.Score op value`` or ``C.Score BETWEEN a AND b`` (a top-level AND term) as
        ``(op, slot)`` bounds; None if ``node`` does not bound ``C.Score``."""
        node = node.this if isinstance(node, exp.Paren) else node
        op = _COMPARISONS.get(type(node))
        if op is not None:
            left, right = node.left, node.right
            if self._is_score(right) and not self._is_score(left):
                left, right, op = right, left, _FLIP[op]
            if not self._is_score(left):
                return None
            if self._mentions(right, cf=True, pc=True):
                self.fail("C.Score may only be compared with non-CF values", node, True)
            if op in ("=", "<>"):
                self.fail(
                    "C.Score (the model's output on the CF) takes bounds: use <, <=, >, >= "
                    "or BETWEEN",
                    node,
                    unsupported=True,
                )
            return [(op, self.slot(right))]
        if isinstance(node, exp.Between) and self._is_score(node.this):
            low, high = node.args["low"], node.args["high"]
            if self._mentions(low, cf=True, pc=True) or self._mentions(high, cf=True, pc=True):
                self.fail("C.Score may only be compared with non-CF values", node, True)
            return [(">=", self.slot(low)), ("<=", self.slot(high))]
        return None

    def _cf_var(self, node: exp.Expression) -> str | None:
        """The feature a bare CF column reference names, or None if ``node`` is not one."""
        if not isinstance(node, exp.Column) or self._owner(node) != "cf":
            return None
        name = node.name.lower()
        if self._is_score(node):
            self.fail(
                "C.Score (the model's output on the CF) may only be bounded in a top-level "
                "AND term of Q_CF (e.g. AND C.Score >= 0.7), not under OR or NOT",
                node,
                unsupported=True,
            )
        if name not in self.features:
            if name in self.cf_columns:
                self.fail(
                    f"CFs.{self.cf_columns[name]} is not a feature; conditions may only "
                    "constrain feature columns",
                    node,
                )
            self.fail(f"CFs has no column {node.name!r}", node)
        return self.features[name]

    def _projection(self) -> list[str]:
        out = []
        for item in self.select.expressions:
            target = item.this if isinstance(item, exp.Alias) else item
            if isinstance(target, exp.Star):
                if self.other or self.pc_alias:
                    self.fail(f"write {self.cf_alias}.* (Q_CF projects only CF attributes)", item)
                out.append("*")
            elif isinstance(target, exp.Column) and isinstance(target.this, exp.Star):
                if (target.table or "").lower() != (self.cf_alias or "").lower():
                    self.fail("Q_CF projects only CF attributes", item)
                out.append("*")
            elif isinstance(target, exp.Column) and self._owner(target) == "cf":
                if target.name.lower() not in self.cf_columns:
                    self.fail(f"CFs has no column {target.name!r}", target)
                out.append(self.cf_columns[target.name.lower()])
            else:
                self.fail("Q_CF projects only CF attributes (CFQL rule)", item)
        return out

    # -- the condition ----------------------------------------------------------------------
    def _is_link(self, node: exp.Expression) -> bool:
        """``C.CfId = PC.CfId`` or ``PC.PredictionId = pred.PredictionId``: true by
        construction (each prediction gets its own CF tuple)."""
        if not isinstance(node, exp.EQ):
            return False
        sides = [node.left, node.right]
        if not all(isinstance(s, exp.Column) for s in sides):
            return False
        owners = sorted((self._owner(s), s.name.lower()) for s in sides)
        return owners in (
            [("cf", "cfid"), ("pc", "cfid")],
            [("pc", "predictionid"), ("pred", "predictionid")],
        )

    def slot(self, node: exp.Expression) -> int:
        text = node.sql(dialect="duckdb")
        if text not in self.slots:
            self.slots.append(text)
        return self.slots.index(text)

    def _build(self, node: exp.Expression) -> Any:
        if isinstance(node, exp.Paren):
            return self._build(node.this)
        if isinstance(node, exp.And):
            return TAnd(tuple(self._build(c) for c in _conjuncts(node)))
        if isinstance(node, exp.Or):
            return TOr(tuple(self._build(c) for c in _disjuncts(node)))
        if isinstance(node, exp.Not):
            return TNot(self._build(node.this))
        if isinstance(node, exp.Boolean):
            return TConst(bool(node.this))
        if self._mentions(node, pc=True):
            if self._is_link(node):
                self.fail(
                    "a link between CFs, Prediction_CFs and pred must be a top-level "
                    "AND term of Q_CF",
                    node,
                )
            self.fail("Prediction_CFs may only link CFs to pred in Q_CF", node)
        if not self._mentions(node, cf=True):
            return TBool(self.slot(node))
        return self._atom(node)

    def _atom(self, node: exp.Expression) -> Any:
        op = _COMPARISONS.get(type(node))
        if op is not None:
            left, right = node.left, node.right
            lvar, rvar = self._cf_var(left), self._cf_var(right)
            if lvar and rvar:
                return TVarCmp(lvar, op, rvar)
            if lvar and not self._mentions(right, cf=True):
                return TCmp(lvar, op, self.slot(right))
            if rvar and not self._mentions(left, cf=True):
                return TCmp(rvar, _FLIP[op], self.slot(left))
            return self.fail(
                "a comparison in Q_CF must have a bare CF attribute on one side "
                "(e.g. C.Income > I.Income); expressions over CF attributes are "
                "not supported",
                node,
                unsupported=True,
            )
        if isinstance(node, exp.Between):
            var = self._cf_var(node.this)
            low, high = node.args["low"], node.args["high"]
            if var is None or self._mentions(low, cf=True) or self._mentions(high, cf=True):
                return self.fail(
                    "BETWEEN in Q_CF needs a CF attribute between two non-CF values",
                    node,
                    unsupported=True,
                )
            return TAnd((TCmp(var, ">=", self.slot(low)), TCmp(var, "<=", self.slot(high))))
        if isinstance(node, exp.In):
            var = self._cf_var(node.this)
            if var is None:
                return self.fail(
                    "IN in Q_CF needs a single CF attribute on its left (tuples are not supported)",
                    node,
                    unsupported=True,
                )
            if node.args.get("query") is not None:
                query = node.args["query"]
                inner = query.this if isinstance(query, exp.Subquery) else query
                return TInList(var, self.slot(exp.func("ARRAY", exp.Subquery(this=inner))))
            values = node.expressions
            if any(self._mentions(v, cf=True) for v in values):
                return self.fail("IN (...) values may not be CF attributes", node, unsupported=True)
            return TIn(var, tuple(self.slot(v) for v in values))
        return self.fail(
            f"CFQL conditions are comparisons, BETWEEN and IN; {node.key.upper()} over CF "
            "attributes is not supported",
            node,
            unsupported=True,
        )


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.And):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _disjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.Or):
        return _disjuncts(node.this)
    if isinstance(node, exp.Or):
        return _disjuncts(node.left) + _disjuncts(node.right)
    return [node]


# ---------------------------------------------------------------------------------------------
# Batches (paper, section 4): several FOREACH statements optimized together
# ---------------------------------------------------------------------------------------------


class BeginBatch(nodes.CfdbStatement):
    """``[EXPLAIN [PLAN]] BEGIN BATCH [WITH (reuse_threshold = …, construction = …, …)]``."""

    arg_types = {**nodes.CfdbStatement.arg_types, "params": False, "explain": False, "plan": False}


class EndBatch(nodes.CfdbStatement):
    """``END BATCH``: optimize and run (or explain) the FOREACH statements since BEGIN BATCH."""

    arg_types = dict(nodes.CfdbStatement.arg_types)


def _parse_begin_batch(
    self: CfdbParser, explain: bool = False, plan: bool = False
) -> nodes.CfdbStatement:
    return BeginBatch(params=self._params(), explain=explain, plan=plan)


def _parse_explain_begin_batch(self: CfdbParser) -> nodes.CfdbStatement:
    return _parse_begin_batch(self, explain=True)


def _parse_explain_plan_begin_batch(self: CfdbParser) -> nodes.CfdbStatement:
    return _parse_begin_batch(self, explain=True, plan=True)


def _parse_end_batch(self: CfdbParser) -> nodes.CfdbStatement:
    return EndBatch()


register_statement(("BEGIN", "BATCH"), _parse_begin_batch)
register_statement(("EXPLAIN", "BEGIN", "BATCH"), _parse_explain_begin_batch)
register_statement(("EXPLAIN", "PLAN", "BEGIN", "BATCH"), _parse_explain_plan_begin_batch)
register_statement(("END", "BATCH"), _parse_end_batch)
