"""``EXPLAIN PLAN``: a CFQL batch's plan as a tree of boxes, the way DuckDB's EXPLAIN draws
its physical plan (CFDB paper, section 4: the batch optimizer's decisions made visible).

The root is the last phase; each box is a phase with its counts, leaves are the compiled
queries. The EXECUTE box carries the estimated generator calls
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

#: Box width, borders included (DuckDB's boxes are about this wide).
WIDTH = 41
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
        "(≥ 1 per GENERATE class, ≤ 1 per request)",
    )


def _group_label(lg: LogicalGroup) -> str:
    key = lg.group.key
    if lg.group.regression:
        return f"model {key[0]} {key[1]} ≥ {key[2]:g}"
    target = "any other" if key[2] is None else key[2]
    return f"model {key[0]} {key[1]} → {target}"


def plan_tree(plan: BatchPlan) -> Node:
    """The plan as operator boxes, root (RECORD) first."""
    queries, logical, physical = plan.queries, plan.logical, plan.physical
    stats = logical.stats()
    requests = sum(len(q.requests) for q in queries)
    infeasible = sum(1 for q in queries for r in q.requests if not r.feasible)
    leaves = [
        Node(
            f"COMPILE #{q.position}",
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
        more = Node(f"COMPILE × {len(rest)}", (f"Requests: {sum(len(q.requests) for q in rest)}",))
        leaves = [*leaves[: MAX_CHILDREN - 1], more]
    dedupe = Node(
        "DEDUPE",
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
    graph = Node("GRAPH", tuple(graph_lines), (dedupe,))
    class_edges = sum(len(c.successors) for lg in logical.groups for c in lg.classes.values())
    condense = Node(
        "CONDENSE",
        (f"Classes: {stats['Classes']}", f"Class edges: {class_edges}"),
        (graph,),
    )
    if physical is None:
        return Node("RECORD", (f"Conditions: {requests} rows",), (condense,))
    order = Node("ORDER", _order_lines(physical), (condense,))
    execute = Node("EXECUTE", _execute_lines(plan, physical), (order,))
    return Node(
        "RECORD",
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
        lines.append(f"{_group_label(g.logical)}: {len(g.steps)} classes, {gen} GENERATE")
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


# -- drawing ---------------------------------------------------------------------------------


def _box(node: Node) -> list[str]:
    inner = WIDTH - 2
    body = [
        node.title.center(inner),
        ("─" * min(inner - 4, max(len(node.title), 10))).center(inner),
    ]
    for line in node.lines:
        for part in textwrap.wrap(line, inner - 2) or [""]:
            body.append(part.center(inner))
    top = "┌" + "─" * inner + "┐"
    bottom = "└" + "─" * inner + "┘"
    if node.children:
        mid = inner // 2
        bottom = "└" + "─" * mid + "┬" + "─" * (inner - mid - 1) + "┘"
    return [top] + ["│" + b + "│" for b in body] + [bottom]


def _with_input(lines: list[str]) -> list[str]:
    """A box drawn as an input: its top border joins the line from above."""
    inner = WIDTH - 2
    mid = inner // 2
    return ["┌" + "─" * mid + "┴" + "─" * (inner - mid - 1) + "┐", *lines[1:]]


def _render(node: Node, is_input: bool = False) -> list[str]:
    box = _box(node)
    if is_input:
        box = _with_input(box)
    if not node.children:
        return box
    blocks = [_render(c, is_input=True) for c in node.children]
    widths = [max(len(x) for x in b) for b in blocks]
    height = max(len(b) for b in blocks)
    row = []
    for i in range(height):
        parts = [(b[i] if i < len(b) else "").ljust(w) for b, w in zip(blocks, widths, strict=True)]
        row.append((" " * GAP).join(parts).rstrip())
    centers, x = [], 0
    for w in widths:
        centers.append(x + (WIDTH - 2) // 2 + 1)
        x += w + GAP
    if len(blocks) > 1:
        width = centers[-1] + 1
        link = [" "] * width
        for i in range(centers[0], centers[-1]):
            link[i] = "─"
        link[centers[0]] = "├"
        for c in centers[1:-1]:
            link[c] = "┬"
        link[centers[-1]] = "┐"
        row = ["".join(link), *row]
    return box + row


def render(plan: BatchPlan) -> str:
    """The plan tree as text."""
    return "\n".join(line.rstrip() for line in _render(plan_tree(plan)))


def explain_rows(plan: BatchPlan) -> tuple[Sequence[str], Sequence[Any]]:
    """DuckDB's EXPLAIN columns: ``explain_key`` and ``explain_value``."""
    return ["physical_plan"], [render(plan)]
