"""``EXPLAIN PLAN``: a CFQL batch's plan as a tree of boxes, the way DuckDB's EXPLAIN draws
its physical plan (CFDB paper, section 4: the batch optimizer's decisions made visible).

The root is the last phase; each box is a phase with its counts, leaves are the compiled
queries. The Execute box carries the estimated generator calls
(:meth:`~cfdb.engine.cfql_plan.PhysicalPlan.estimate`): one number when it is exact, else
the interval ``low – high``. Pure: a :class:`~cfdb.engine.cfql_batch.BatchPlan` in, text out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfdb.engine.cfql_plan import Access, CallEstimate, LogicalGroup, PhysicalPlan

if TYPE_CHECKING:
    from cfdb.engine.cfql_batch import BatchPlan

#: Inner width of the boxes at most; longer lines wrap.
MAX_WIDTH = 44
GAP = 2
#: Leaves shown side by side at most; the rest are summed up in one more box.
MAX_CHILDREN = 4
#: Groups listed in the ORDER box at most.
MAX_GROUPS = 4


@dataclass(frozen=True)
class Node:
    """An operator box: its title, lines of counts, and its inputs."""

    title: str
    lines: tuple[str, ...] = ()
    children: tuple[Node, ...] = field(default=())


def estimate_text(estimate: CallEstimate) -> tuple[str, ...]:
    """The estimate's lines: one number when exact, else the interval and why."""
    if estimate.exact:
        return (f"Estimated generator calls: {estimate.low}",)
    return (
        f"Estimated generator calls: {estimate.low} – {estimate.high}",
        "(≥ 1 per GENERATE class,",
        " ≤ 1 per request)",
    )


def _group_label(lg: LogicalGroup) -> str:
    key = lg.group.key
    if lg.group.regression:
        return f"model {key[0]} {key[1]} ≥ {key[2]:g}"
    target = "any other" if key[2] is None else key[2]
    return f"model {key[0]} {key[1]} → {target}"


def plan_tree(plan: BatchPlan) -> Node:
    """The plan as operator boxes, root (Record) first."""
    queries, logical, physical = plan.queries, plan.logical, plan.physical
    stats = logical.stats()
    requests = sum(len(q.requests) for q in queries)
    infeasible = sum(1 for q in queries for r in q.requests if not r.feasible)
    leaves = [
        Node(
            f"Compile #{q.position}",
            (
                f"Query: {q.query_id}",
                f"Generator: {q.generator.name}",
                f"Requests: {len(q.requests)}",
                f"Infeasible: {sum(1 for r in q.requests if not r.feasible)}",
            ),
        )
        for q in queries
    ]
    if len(leaves) > MAX_CHILDREN:
        rest = queries[MAX_CHILDREN - 1 :]
        more = Node(f"Compile × {len(rest)}", (f"Requests: {sum(len(q.requests) for q in rest)}",))
        leaves = [*leaves[: MAX_CHILDREN - 1], more]
    dedupe = Node(
        "Dedupe",
        (
            f"Requests: {requests}",
            f"Feasible: {requests - infeasible}",
            f"Groups: {len(logical.groups)}",
            f"Distinct conditions: {stats['UniqueConditions']}",
        ),
        tuple(leaves),
    )
    graph_lines = [
        f"Construction: {logical.construction}",
        f"Edges: {stats['Edges']}",
        f"z3 calls: {stats['SolverCalls']}",
    ]
    if stats["NaiveSolverCalls"] is not None:
        graph_lines.append(f"z3 calls (naive): {stats['NaiveSolverCalls']}")
    graph = Node("Graph", tuple(graph_lines), (dedupe,))
    class_edges = sum(len(c.successors) for lg in logical.groups for c in lg.classes.values())
    condense = Node(
        "Condense",
        (f"Classes: {stats['Classes']}", f"Class edges: {class_edges}"),
        (graph,),
    )
    if physical is None:
        return Node("Record", (f"Conditions: {requests} rows",), (condense,))
    order = Node("Order", _order_lines(physical), (condense,))
    execute = Node("Execute", _execute_lines(plan, physical), (order,))
    return Node(
        "Record",
        (f"Conditions: {requests} rows", f"ImplicationEdges: {stats['Edges']} rows"),
        (execute,),
    )


def _order_lines(physical: PhysicalPlan) -> tuple[str, ...]:
    steps = [s for g in physical.groups for s in g.steps]
    count = {a: sum(1 for s in steps if s.access is a) for a in Access}
    lines = [
        "Topological, strongest first",
        f"GENERATE: {count[Access.GENERATE]} classes",
        f"REUSE: {count[Access.REUSE]} classes",
        f"POOL: {count[Access.POOL]} classes",
        f"Pool CFs: {physical.pool_hits()}",
        f"Memo hits: {len(physical.memo)}",
    ]
    for g in physical.groups[:MAX_GROUPS]:
        gen = sum(1 for s in g.steps if s.access is Access.GENERATE)
        lines.append(f"{_group_label(g.logical)}:")
        lines.append(f"  {len(g.steps)} classes, {gen} GENERATE")
    if len(physical.groups) > MAX_GROUPS:
        lines.append(f"… {len(physical.groups) - MAX_GROUPS} more groups")
    return tuple(lines)


def _execute_lines(plan: BatchPlan, physical: PhysicalPlan) -> tuple[str, ...]:
    lines = [f"Reuse threshold: {physical.threshold:g}"]
    if physical.max_pool_checks is not None:
        lines.append(f"Max pool checks: {physical.max_pool_checks}")
    lines.append(f"Persistent pool: {'on' if physical.persistent else 'off'}")
    lines.append(f"Requests to serve: {physical.estimate().high}")
    lines.extend(estimate_text(physical.estimate()))
    return tuple(lines)


# -- drawing (DuckDB 2.0's EXPLAIN: rounded boxes of one width, the title in the top border,
# inputs side by side under their parent) -------------------------------------------------


def _width(node: Node) -> int:
    """The inner width every box of the tree gets: its longest line, at most ``MAX_WIDTH``."""
    own = max([len(node.title) + 3, *(len(line) + 2 for line in node.lines)])
    return min(MAX_WIDTH, max([own, *(_width(c) for c in node.children)]))


def _box(node: Node, inner: int, is_input: bool) -> list[str]:
    mid = inner // 2
    top = list("╭─ " + node.title + " " + "─" * max(0, inner - len(node.title) - 3) + "╮")
    if is_input and top[1 + mid] == "─":
        top[1 + mid] = "┴"
    body = []
    for line in node.lines:
        for part in textwrap.wrap(line, inner - 2) or [""]:
            body.append("│ " + part.ljust(inner - 2) + " │")
    bottom = "╰" + "─" * inner + "╯"
    if node.children:
        bottom = "╰" + "─" * mid + "┬" + "─" * (inner - mid - 1) + "╯"
    return ["".join(top), *body, bottom]


def _render(node: Node, inner: int, is_input: bool = False) -> list[str]:
    box = _box(node, inner, is_input)
    if not node.children:
        return box
    blocks = [_render(c, inner, is_input=True) for c in node.children]
    widths = [max(len(x) for x in b) for b in blocks]
    row = []
    for i in range(max(len(b) for b in blocks)):
        parts = [(b[i] if i < len(b) else "").ljust(w) for b, w in zip(blocks, widths, strict=True)]
        row.append((" " * GAP).join(parts).rstrip())
    if len(blocks) > 1:
        centers, x = [], 0
        for w in widths:
            centers.append(x + 1 + inner // 2)
            x += w + GAP
        link = [" "] * (centers[-1] + 1)
        for i in range(centers[0], centers[-1]):
            link[i] = "─"
        link[centers[0]] = "├"
        for c in centers[1:-1]:
            link[c] = "┬"
        link[centers[-1]] = "╮"
        row = ["".join(link), *row]
    return box + row


def render(plan: BatchPlan) -> str:
    """The plan tree as text."""
    tree = plan_tree(plan)
    return "\n".join(line.rstrip() for line in _render(tree, _width(tree)))


def explain_rows(plan: BatchPlan) -> tuple[Sequence[str], Sequence[Any]]:
    """DuckDB's EXPLAIN columns: ``explain_key`` and ``explain_value``."""
    return ["physical_plan"], [render(plan)]
