"""Provenance capture: rewrite an SPJU training query so every row carries its base tuples.

DataScope (Karlaš et al., "Data Debugging with Shapley Importance over End-to-End Machine
Learning Pipelines") annotates every training row with a provenance polynomial over Boolean
variables, one per base tuple (section 2.1): a join multiplies (``a_i·a_j``), a union of
duplicates adds (``a_i + a_j``). This module computes those polynomials *in DuckDB* by
rewriting the query with sqlglot: each ``SELECT`` gets extra output columns, one pair per
table reference in its ``FROM`` clause, holding a relation code and the tuple id (the
table's integer primary key, else its ``rowid``). Derived tables, CTEs and views forward
the pairs of their own sources; ``UNION ALL`` pads both sides to the same pairs; a top-level
``UNION`` (without ``ALL``) groups identical rows and collects their monomials, which is the
sum.

Only the positive relational algebra (select, project, join, union) has such polynomials.
Everything else is refused with a :class:`~cfdb.errors.CfdbUnsupportedError` that says why:
aggregation, window functions, ``DISTINCT``, ``EXCEPT``/``INTERSECT``, outer, semi and anti
joins, subqueries in ``WHERE``/``SELECT``/``ON``, ``LIMIT``/``OFFSET``/``QUALIFY``/sampling,
recursive CTEs and table functions.

The rewritten query orders its rows deterministically: by the user's ``ORDER BY`` if any,
then by the provenance columns. That order is the *training row order* (``RowId``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from cfdb.errors import CfdbError, CfdbSyntaxError, CfdbUnsupportedError

#: Every column the rewrite adds starts with this prefix.
PREFIX = "__cfdb_"
#: Name of the monomial-list column of a top-level ``UNION`` (a sum of monomials per row).
MONOMIALS = f"{PREFIX}monomials"

_DIALECT = "duckdb"


@dataclass(frozen=True)
class BaseRelation:
    """A base table as the catalog describes it (the engine resolves names to these).

    Attributes:
        name: the name recorded in ``Provenance.Relation`` and ``DataValues.Relation``.
        key: the single-column integer primary key, or ``None`` to use ``rowid``.
    """

    name: str
    key: str | None = None


@dataclass(frozen=True)
class ViewText:
    """A view: its defining query, inlined where the view is referenced."""

    name: str
    sql: str


#: ``resolve(name)`` -> a base table, a view to inline, or raises a CfdbError.
Resolver = Callable[[str], "BaseRelation | ViewText"]


@dataclass(frozen=True)
class CapturedQuery:
    """A training query rewritten to carry provenance.

    Attributes:
        sql: the rewritten query: the user's columns, then the provenance columns.
        relations: relation names by code (the values of the code columns).
        pairs: ``(code column, tuple-id column)`` per factor slot; a row's monomial is the
            product of the slots whose code is not NULL.
        order_columns: extra columns that only make the row order total (union branches).
        monomials: for a top-level ``UNION``: the column holding each row's list of
            monomials (each a list of ``{'r': code, 'i': tuple id}``); ``None`` otherwise.
    """

    sql: str
    relations: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    order_columns: tuple[str, ...] = ()
    monomials: str | None = None

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Every column the rewrite added (to drop from the user's columns)."""
        cols = [c for pair in self.pairs for c in pair] + list(self.order_columns)
        return (self.monomials,) if self.monomials else tuple(cols)


@dataclass
class _Extras:
    """The provenance columns a (sub)query outputs."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c for p in self.pairs for c in p] + self.branches


def _span(node: exp.Expression | None, default: tuple[int, int]) -> tuple[int, int]:
    """The character span of ``node`` from its (or its descendants') position metadata."""
    if node is None:
        return default
    starts, ends = [], []
    for sub in node.walk():
        meta = getattr(sub, "_meta", None) or {}
        if "start" in meta and "end" in meta:
            starts.append(int(meta["start"]))
            ends.append(int(meta["end"]) + 1)
    return (min(starts), max(ends)) if starts else default


def parse_query(sql: str) -> exp.Expression:
    """Parse one query with the DuckDB dialect; a syntax error is a CfdbSyntaxError."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECT) if s is not None]
    except ParseError as exc:
        info = exc.errors[0] if exc.errors else {}
        message = str(info.get("description") or exc).split("\n")[0]
        raise CfdbSyntaxError(f"cannot parse the query: {message}", sql=sql, start=0) from exc
    if len(statements) != 1:
        raise CfdbSyntaxError(
            f"expected one query, found {len(statements)} statements", sql=sql, start=0
        )
    node = statements[0]
    if isinstance(node, exp.Create) and isinstance(node.expression, exp.Query):
        return node.expression  # a view definition: CREATE VIEW v AS <query>
    return node


def referenced_tables(sql: str) -> list[str]:
    """Names of the tables and views ``sql`` reads (CTE names excluded), in order."""
    node = parse_query(sql)
    cte_names = {cte.alias_or_name.lower() for cte in node.find_all(exp.CTE)}
    names: list[str] = []
    for table in node.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue
        name = _table_name(table)
        if name.lower() not in cte_names and name not in names:
            names.append(name)
    return names


def _table_name(table: exp.Table) -> str:
    parts = [p for p in (table.args.get("catalog"), table.args.get("db")) if p is not None]
    return ".".join([*(p.name for p in parts), table.name])


class _Rewriter:
    def __init__(self, sql: str, resolve: Resolver) -> None:
        self.sql = sql
        self.resolve = resolve
        self.relations: list[str] = []
        self._ids = itertools.count()
        self._whole = (0, len(sql))

    # -- helpers ----------------------------------------------------------------------------
    def refuse(self, message: str, node: exp.Expression | None, hint: str | None = None) -> None:
        start, end = _span(node, self._whole)
        raise CfdbUnsupportedError(message, sql=self.sql, start=start, end=end, hint=hint)

    def refuse_at(
        self, word: str, clause: exp.Expression, message: str, hint: str | None = None
    ) -> None:
        """Refuse, pointing at keyword ``word`` (e.g. ``GROUP BY``): its last occurrence
        before the text of ``clause`` (the clause's first expression)."""
        start, _ = _span(clause, self._whole)
        pattern = r"\b" + r"\s+".join(word.split()) + r"\b"
        found = list(re.finditer(pattern, self.sql[:start], flags=re.IGNORECASE))
        if not found:
            self.refuse(message, clause, hint)
        raise CfdbUnsupportedError(
            message, sql=self.sql, start=found[-1].start(), end=found[-1].end(), hint=hint
        )

    def code(self, relation: str) -> int:
        if relation not in self.relations:
            self.relations.append(relation)
        return self.relations.index(relation)

    def fresh(self) -> int:
        return next(self._ids)

    # -- queries ----------------------------------------------------------------------------
    def query(self, node: exp.Expression, ctes: dict[str, list[str] | _Extras]) -> _Extras:
        """Rewrite ``node`` in place; returns the provenance columns it now outputs."""
        if isinstance(node, exp.Subquery):
            return self.query(node.this, ctes)
        ctes = self.with_clause(node, ctes)
        if isinstance(node, exp.Select):
            return self.select(node, ctes)
        if isinstance(node, exp.Union):
            if node.args.get("distinct"):
                self.refuse(
                    "UNION (without ALL) is supported only as the outermost operation of the "
                    "training query",
                    node,
                    hint="write UNION ALL, or move the UNION to the top level",
                )
            return self.union_all(node, ctes)
        if isinstance(node, exp.Except):
            self.refuse(
                "EXCEPT is a difference: a row would exist because a tuple is absent, which "
                "a provenance polynomial cannot express",
                node,
            )
        if isinstance(node, exp.Intersect):
            self.refuse("INTERSECT is not supported; write it as an inner JOIN", node)
        self.refuse(f"the training query must be a SELECT, not {node.key.upper()}", node)
        raise AssertionError  # unreachable

    def with_clause(
        self, node: exp.Expression, ctes: dict[str, list[str] | _Extras]
    ) -> dict[str, list[str] | _Extras]:
        with_ = node.args.get("with_")
        if not with_:
            return ctes
        if with_.args.get("recursive"):
            self.refuse("recursive CTEs are not supported", with_)
        ctes = dict(ctes)
        for cte in with_.expressions:
            ctes[cte.alias_or_name.lower()] = self.query(cte.this, ctes)
        return ctes

    def select(self, sel: exp.Select, ctes: dict[str, list[str] | _Extras]) -> _Extras:
        self.check_select(sel)
        from_ = sel.args.get("from_")
        joins = list(sel.args.get("joins") or [])
        for join in joins:
            self.check_join(join)
        sources = ([from_.this] if from_ else []) + [j.this for j in joins]
        extras = _Extras()
        derived: dict[str, list[str]] = {}
        for source in sources:
            self.source(source, ctes, extras, derived)
        self.exclude_from_stars(sel, derived)
        me = self.fresh()
        out = _Extras()
        new_columns: list[exp.Expression] = []
        for j, (code_expr, id_expr) in enumerate(extras.pairs):
            rname, iname = f"{PREFIX}{me}_r{j}", f"{PREFIX}{me}_i{j}"
            new_columns += [
                exp.alias_(_as_expr(code_expr), rname),
                exp.alias_(_as_expr(id_expr), iname),
            ]
            out.pairs.append((rname, iname))
        for k, branch in enumerate(extras.branches):
            bname = f"{PREFIX}{me}_b{k}"
            new_columns.append(exp.alias_(exp.column(branch), bname))
            out.branches.append(bname)
        sel.set("expressions", [*sel.expressions, *new_columns])
        return out

    def check_select(self, sel: exp.Select) -> None:
        if sel.args.get("distinct"):
            first = sel.expressions[0] if sel.expressions else sel
            self.refuse_at(
                "DISTINCT",
                first,
                "DISTINCT merges duplicate rows, so a row would stand for any of several "
                "tuple combinations; valuation needs one monomial per row",
                hint="drop DISTINCT (or use a top-level UNION, which cfdb records as a sum)",
            )
        for key, word, what in (
            ("group", "GROUP BY", "GROUP BY aggregates rows: an output row depends on a group"),
            ("having", "HAVING", "HAVING filters aggregated groups"),
            ("qualify", "QUALIFY", "QUALIFY filters on window functions over other rows"),
            ("limit", "LIMIT", "LIMIT picks rows by position: removing a tuple lets another in"),
            ("offset", "OFFSET", "OFFSET picks rows by position: removing a tuple shifts others"),
            ("sample", "SAMPLE", "sampling makes the training set random"),
        ):
            clause = sel.args.get(key)
            if clause:
                self.refuse_at(
                    word,
                    clause,
                    f"{what}; the training query must be select-project-join-union",
                )
        for part in [*sel.expressions, sel.args.get("where")]:
            if part is None:
                continue
            self.check_expression(part)

    def check_expression(self, node: exp.Expression) -> None:
        for sub in node.walk():
            if isinstance(sub, exp.Window):
                self.refuse(
                    "window functions compute over other rows; an output row would depend on "
                    "tuples outside its provenance",
                    sub,
                )
            if isinstance(sub, exp.AggFunc):
                self.refuse(
                    f"aggregate {sub.key.upper()}(...): an output row would depend on a whole "
                    "group of tuples",
                    sub,
                )
            if isinstance(sub, exp.Subquery | exp.Exists) or (
                isinstance(sub, exp.In) and sub.args.get("query") is not None
            ):
                self.refuse(
                    "a subquery outside FROM makes a row depend on the existence (or absence) "
                    "of other tuples",
                    sub,
                    hint="write it as an inner JOIN in FROM",
                )

    def check_join(self, join: exp.Join) -> None:
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        method = (join.args.get("method") or "").upper()
        if side in ("LEFT", "RIGHT", "FULL") or kind == "OUTER":
            self.refuse_at(
                side or kind,
                join.this,
                f"{side or kind} OUTER JOIN keeps unmatched rows, which exist because a tuple "
                "is absent; provenance polynomials (positive algebra) cannot express that",
                hint="use an inner JOIN",
            )
        if kind in ("SEMI", "ANTI"):
            self.refuse_at(
                kind,
                join.this,
                f"{kind} JOIN makes a row depend on the existence or absence of other tuples",
                hint="use an inner JOIN",
            )
        if method in ("ASOF", "POSITIONAL") or kind in ("ASOF", "POSITIONAL"):
            self.refuse(f"{method or kind} JOIN is not supported; use an inner JOIN", join)
        if join.args.get("on") is not None:
            self.check_expression(join.args["on"])

    def source(
        self,
        source: exp.Expression,
        ctes: dict[str, list[str] | _Extras],
        extras: _Extras,
        derived: dict[str, list[str]],
    ) -> None:
        if isinstance(source, exp.Table) and source.args.get("pivots"):
            self.refuse("PIVOT/UNPIVOT aggregates rows", source)
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            name = _table_name(source)
            alias = source.alias_or_name
            if name.lower() in ctes and "." not in name:
                inner = ctes[name.lower()]
                assert isinstance(inner, _Extras)
                self.forward(inner, alias, extras, derived)
                return
            try:
                resolved = self.resolve(name)
            except CfdbError as err:
                start, end = _span(source.this, self._whole)
                raise err.located(self.sql, start, end) from None
            if isinstance(resolved, ViewText):
                inner = self.inline_view(source, resolved, ctes)
                self.forward(inner, alias, extras, derived)
                return
            table_ref = alias
            key = resolved.key
            id_expr = (
                exp.column(key, table=table_ref, quoted=True)
                if key
                else exp.column("rowid", table=table_ref)
            )
            code = exp.cast(exp.Literal.number(self.code(resolved.name)), "SMALLINT")
            extras.pairs.append((code, id_expr))  # type: ignore[arg-type]
            return
        if isinstance(source, exp.Subquery):
            inner = self.query(source.this, ctes)
            self.forward(inner, source.alias_or_name, extras, derived)
            return
        if isinstance(source, exp.Values):
            return  # a constant relation: always present, no base tuples
        inner = source.this if isinstance(source, exp.Table) else source
        what = inner.sql(dialect=_DIALECT) if isinstance(inner, exp.Expression) else str(inner)
        self.refuse(
            f"{what} in FROM is not a base table, so its rows have no provenance",
            source,
            hint="load the data into a table first (CREATE TABLE ... AS ...)",
        )

    def inline_view(
        self, ref: exp.Table, view: ViewText, ctes: dict[str, list[str] | _Extras]
    ) -> _Extras:
        try:
            body = parse_query(view.sql)
            inner_rewriter = _Rewriter(view.sql, self.resolve)
            inner_rewriter.relations = self.relations
            inner_rewriter._ids = self._ids
            inner = inner_rewriter.query(body, {})
        except CfdbError as err:
            start, end = _span(ref.this, self._whole)
            raise type(err)(
                f"in view {view.name!r}: {err.message}", sql=self.sql, start=start, end=end
            ) from None
        alias = ref.alias_or_name
        ref.replace(exp.Subquery(this=body, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        return inner

    def forward(
        self, inner: _Extras, alias: str, extras: _Extras, derived: dict[str, list[str]]
    ) -> None:
        for rname, iname in inner.pairs:
            extras.pairs.append((rname, iname))  # type: ignore[arg-type]
        extras.branches.extend(inner.branches)
        derived[alias.lower() if alias else ""] = inner.names

    def exclude_from_stars(self, sel: exp.Select, derived: dict[str, list[str]]) -> None:
        hidden = [c for cols in derived.values() for c in cols]
        if not hidden:
            return
        for expr in sel.expressions:
            star = expr.this if isinstance(expr, exp.Column) else expr
            if not isinstance(star, exp.Star):
                continue
            if isinstance(expr, exp.Column) and expr.table:
                names = derived.get(expr.table.lower(), [])
            else:
                names = hidden
            if not names:
                continue
            current = list(star.args.get("except_") or [])
            star.set("except_", current + [exp.column(n) for n in names])

    def union_all(self, node: exp.Union, ctes: dict[str, list[str] | _Extras]) -> _Extras:
        left = self.query(node.this, ctes)
        right = self.query(node.expression, ctes)
        me = self.fresh()
        n_pairs = max(len(left.pairs), len(right.pairs))
        n_branches = max(len(left.branches), len(right.branches))
        out = _Extras(
            pairs=[(f"{PREFIX}{me}_r{j}", f"{PREFIX}{me}_i{j}") for j in range(n_pairs)],
            branches=[f"{PREFIX}{me}_b{k}" for k in range(n_branches)] + [f"{PREFIX}{me}_u"],
        )
        node.set("this", self.wrap(node.this, left, out, 0))
        node.set("expression", self.wrap(node.expression, right, out, 1))
        return out

    @staticmethod
    def wrap(side: exp.Expression, have: _Extras, want: _Extras, branch: int) -> exp.Expression:
        """``SELECT * EXCLUDE (have), <have padded to want> FROM (side)``."""
        columns: list[exp.Expression] = []
        for j, (rname, iname) in enumerate(want.pairs):
            if j < len(have.pairs):
                columns += [
                    exp.alias_(exp.column(have.pairs[j][0]), rname),
                    exp.alias_(exp.column(have.pairs[j][1]), iname),
                ]
            else:
                columns += [
                    exp.alias_(exp.cast(exp.null(), "SMALLINT"), rname),
                    exp.alias_(exp.cast(exp.null(), "BIGINT"), iname),
                ]
        for k, bname in enumerate(want.branches[:-1]):
            value = (
                exp.column(have.branches[k])
                if k < len(have.branches)
                else exp.cast(exp.null(), "SMALLINT")
            )
            columns.append(exp.alias_(value, bname))
        columns.append(
            exp.alias_(exp.cast(exp.Literal.number(branch), "SMALLINT"), want.branches[-1])
        )
        star = exp.Star(except_=[exp.column(n) for n in have.names] if have.names else None)
        inner = side.this if isinstance(side, exp.Subquery) and not side.alias else side
        return exp.select(star, *columns).from_(
            exp.Subquery(
                this=inner, alias=exp.TableAlias(this=exp.to_identifier(f"{PREFIX}side{branch}"))
            )
        )


def _as_expr(value: exp.Expression | str) -> exp.Expression:
    return exp.column(value) if isinstance(value, str) else value


def _flatten_distinct_union(node: exp.Expression) -> list[exp.Expression] | None:
    """The branches of a top-level chain of ``UNION`` (all distinct), else ``None``."""
    if not (isinstance(node, exp.Union) and node.args.get("distinct")):
        return None
    branches: list[exp.Expression] = []
    for side in (node.this, node.expression):
        nested = _flatten_distinct_union(side)
        branches.extend(nested if nested is not None else [side])
    return branches


def capture(sql: str, resolve: Resolver) -> CapturedQuery:
    """Rewrite training query ``sql`` so that every row carries its provenance.

    Args:
        sql: a select-project-join-union query.
        resolve: maps each table name the query reads to a :class:`BaseRelation` (with its
            integer primary key, if any) or a :class:`ViewText` to inline; raises a
            CfdbError for unknown names.

    Returns:
        The rewritten query and how to read its provenance columns.

    Raises:
        CfdbUnsupportedError: the query is outside the supported class (the message says
            why), located in ``sql``.
        CfdbSyntaxError: ``sql`` does not parse.
    """
    node = parse_query(sql)
    while isinstance(node, exp.Subquery) and not node.alias:
        node = node.this
    rewriter = _Rewriter(sql, resolve)
    branches = _flatten_distinct_union(node)
    if branches is None:
        extras = rewriter.query(node, {})
        order_keys = [c for pair in extras.pairs for c in pair] + extras.branches
        _append_order(node, order_keys)
        return CapturedQuery(
            sql=node.sql(dialect=_DIALECT),
            relations=tuple(rewriter.relations),
            pairs=tuple(extras.pairs),
            order_columns=tuple(extras.branches),
        )
    return _capture_distinct_union(sql, node, branches, rewriter)


def _append_order(node: exp.Expression, keys: list[str]) -> None:
    order = node.args.get("order")
    existing = list(order.expressions) if order else []
    if any(isinstance(o.this, exp.Var) and o.this.name.upper() == "ALL" for o in existing):
        return  # ORDER BY ALL already sorts by every column, ours included
    node.set(
        "order",
        exp.Order(expressions=[*existing, *(exp.Ordered(this=exp.column(k)) for k in keys)]),
    )


def _capture_distinct_union(
    sql: str, node: exp.Union, branches: list[exp.Expression], rewriter: _Rewriter
) -> CapturedQuery:
    ctes = rewriter.with_clause(node, {})
    results = [rewriter.query(b, ctes) for b in branches]
    me = rewriter.fresh()
    n_pairs = max(len(r.pairs) for r in results)
    want = _Extras(pairs=[(f"{PREFIX}{me}_r{j}", f"{PREFIX}{me}_i{j}") for j in range(n_pairs)])
    want.branches = [f"{PREFIX}{me}_u"]
    wrapped = [_Rewriter.wrap(b, r, want, i) for i, (b, r) in enumerate(zip(branches, results))]
    union: exp.Expression = wrapped[0]
    for side in wrapped[1:]:
        union = exp.Union(this=union, expression=side, distinct=False)
    inner = union.sql(dialect=_DIALECT)
    if node.args.get("with_"):
        inner = f"{node.args['with_'].sql(dialect=_DIALECT)} {inner}"
    structs = ", ".join(f"struct_pack(r := {r}, i := {i})" for r, i in want.pairs)
    hidden = ", ".join([c for p in want.pairs for c in p] + want.branches)
    order = node.args.get("order")
    user_order = ", ".join(o.sql(dialect=_DIALECT) for o in order.expressions) if order else ""
    monomial = f"list_value({structs})"
    text = (
        f"SELECT * EXCLUDE ({hidden}), list({monomial} ORDER BY {monomial}) AS {MONOMIALS} "
        f"FROM ({inner}) AS {PREFIX}union GROUP BY ALL "
        f"ORDER BY {user_order + ', ' if user_order else ''}{MONOMIALS}"
    )
    return CapturedQuery(
        sql=text,
        relations=tuple(rewriter.relations),
        pairs=tuple(want.pairs),
        monomials=MONOMIALS,
    )
