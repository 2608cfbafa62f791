"""CFQL batch plans as typed, immutable objects (CFDB paper, sections 3.2, 4.1 and 4.3).

A batch is planned like a database query, one function per phase, each over the objects
defined here:

1. compile (:mod:`cfdb.engine.cfql_compile`) — each ``FOREACH`` becomes a :class:`Query`
   whose :class:`Request` objects (one per selected prediction) hold the prediction's
   normalized condition, its text and hash, and whether z3 finds it feasible with the
   instance's immutable features held;
2. dedupe (:mod:`cfdb.engine.cfql_optimize`) — feasible requests get their target (the other
   label, ``target``, or for a regressor ``min_change`` and ``direction``, section 4.4) and
   are grouped by model, original label, target and bound on ``C.Score`` (CFs are
   interchangeable only within a group); identical conditions are merged: a :class:`Group`;
3. graph — the implication graph over a group's distinct conditions (:class:`GroupGraph`);
4. condense — strongly connected components are the equivalence classes
   (:class:`PlanClass`); a :class:`LogicalPlan` holds every group's classes and edges;
5. order — the :class:`PhysicalPlan`: classes in topological order (strongest first), each
   a :class:`ClassStep` that says how its members are served (``GENERATE``, ``REUSE`` CFs
   pushed from stronger classes, or read the persistent ``POOL``), and which requests an
   earlier query already answered (memo). Its :class:`CallEstimate` bounds the generator
   calls;
6. execute (:mod:`cfdb.engine.cfql_execute`) and 7. record (:mod:`cfdb.engine.cfql_record`).

The orchestration is :mod:`cfdb.engine.cfql_batch`; EXPLAIN PLAN's tree
:mod:`cfdb.engine.cfql_explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from cfdb.ctable.condition import Cond
from cfdb.generators.base import ScoreBound
from cfdb.generators.reuse import PoolCF
from cfdb.lang.cfql import CfqlPlan, Foreach
from cfdb.lang.parse import Statement
from cfdb.types import FeatureSpec

if TYPE_CHECKING:
    from cfdb.generators.base import Generator

DEFAULT_GENERATOR = "growing_spheres"
#: Weight of the diversity term when a query asks for n > 1 CFs (DiCE's default weight).
DEFAULT_DIVERSITY = 1.0
QUERY_OPTIONS = frozenset(
    {
        "n",
        "distance",
        "time_limit",
        "seed",
        "n_jobs",
        "target",
        "pool",
        "min_change",
        "direction",
        "executor",
        "address",
        "diversity",
    }
)
BATCH_OPTIONS = {"reuse_threshold", "max_pool_checks", "construction", "persistent_pool"}
CONSTRUCTIONS = ("atoms", "naive", "both")
#: Base-query rows allowed per prediction: more means Q_CF joins a relation not tied to pred.
MAX_ROWS_PER_PREDICTION = 1000


# -- plan objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One (query, prediction): the condition its CFs must satisfy and what they must reach.

    ``feasible`` is z3's verdict on the condition (with the instance's immutable features
    held, and a bound on ``C.Score`` that some score meets); ``error`` says why not when the
    bound is the reason. The target fields are set by :func:`dedupe` for feasible requests:
    ``target`` for a classifier (None: any other label), ``min_change``, ``direction`` and
    ``original_value`` (the prediction's Score) for a regressor.
    """

    query_id: int
    prediction_id: int
    model_id: int
    instance_id: int
    label: Any
    cond: Cond
    condition: str
    hash: str
    feasible: bool
    error: str | None
    score: ScoreBound | None
    instance: Mapping[str, Any] = field(repr=False)
    regression: bool = False
    target: str | None = None
    min_change: float | None = None
    direction: str = "any"
    original_value: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.query_id, self.prediction_id)

    def bound_key(self) -> tuple[Any, ...] | None:
        """CFs are interchangeable only under the same bound on their score."""
        return self.score.key() if self.score is not None else None


@dataclass(frozen=True)
class Query:
    """One FOREACH of the batch, compiled: its statement, options, generator and requests."""

    query_id: int
    position: int
    node: Foreach
    stmt: Statement
    params: Mapping[str, Any]
    generator: type[Generator]
    analysis: CfqlPlan
    features: tuple[FeatureSpec, ...]
    requests: tuple[Request, ...]
    solver_calls: int

    def option(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


@dataclass(frozen=True)
class Group:
    """Requests whose CFs are interchangeable (same model, original label or regression
    change, target and score bound), and their distinct conditions (first request per hash)."""

    key: tuple[Any, ...]
    regression: bool
    members: tuple[Request, ...]
    distinct: tuple[Request, ...]

    @property
    def model_id(self) -> int:
        return int(self.key[0])


@dataclass(frozen=True)
class GroupGraph:
    """The implication graph over a group's distinct conditions (indices into ``distinct``)."""

    edge_from: np.ndarray
    edge_to: np.ndarray
    edge_count: int
    solver_calls: int
    seconds: float
    naive_solver_calls: int | None = None
    naive_seconds: float | None = None


@dataclass(frozen=True)
class PlanClass:
    """An equivalence class of conditions (a strongly connected component).

    ``representative`` is the request whose condition text reads the persistent pool;
    ``successors`` the classes it implies directly, ``predecessors`` those implying it.
    """

    class_id: int
    representative: Request
    members: tuple[Request, ...]
    successors: frozenset[int]
    predecessors: frozenset[int]


@dataclass(frozen=True)
class LogicalGroup:
    """A group with its graph, classes and a topological order of the classes."""

    group: Group
    graph: GroupGraph
    classes: Mapping[int, PlanClass]
    order: tuple[int, ...]
    class_of_hash: Mapping[str, int]


@dataclass(frozen=True)
class LogicalPlan:
    """Every group's classes and edges, and the plan's statistics (``CFBatches``)."""

    groups: tuple[LogicalGroup, ...]
    construction: str

    def stats(self) -> dict[str, Any]:
        naive = [g.graph.naive_solver_calls for g in self.groups]
        naive_s = [g.graph.naive_seconds for g in self.groups]
        return {
            "Nodes": sum(len(g.group.members) for g in self.groups),
            "UniqueConditions": sum(len(g.group.distinct) for g in self.groups),
            "Classes": sum(len(g.classes) for g in self.groups),
            "Edges": sum(g.graph.edge_count for g in self.groups),
            "SolverCalls": sum(g.graph.solver_calls for g in self.groups),
            "GraphSeconds": sum(g.graph.seconds for g in self.groups),
            "NaiveSolverCalls": sum(c for c in naive if c is not None)
            if any(c is not None for c in naive)
            else None,
            "NaiveSeconds": sum(s for s in naive_s if s is not None)
            if any(s is not None for s in naive_s)
            else None,
        }

    def class_of(self) -> dict[tuple[int, int], int]:
        """The class of every feasible request, by ``(query_id, prediction_id)``."""
        return {r.key: lg.class_of_hash[r.hash] for lg in self.groups for r in lg.group.members}


class Access(Enum):
    """How a class's members are served, at best: the generator runs for a member whose
    class pool holds no valid CF within the reuse threshold."""

    GENERATE = "GENERATE"  # the pool starts empty: the first member calls the generator
    REUSE = "REUSE"  # CFs pushed from stronger classes (reuse_from) may serve members
    POOL = "POOL"  # CFs stored by earlier queries satisfy the condition


@dataclass(frozen=True)
class ClassStep:
    """One class in execution order: its members still to serve (memo hits removed), its
    access path, the stronger classes whose CFs may reach it, and its persistent pool."""

    class_id: int
    access: Access
    members: tuple[Request, ...]
    reuse_from: tuple[int, ...] = ()
    pool: tuple[PoolCF, ...] = ()


@dataclass(frozen=True)
class PhysicalGroup:
    """A group's classes in topological order (strongest first)."""

    logical: LogicalGroup
    steps: tuple[ClassStep, ...]


@dataclass(frozen=True)
class CallEstimate:
    """Generator calls the plan will make: ``low <= actual <= high``.

    ``high`` counts the members still to serve (each calls the generator at most once);
    ``low`` the GENERATE classes with members (their first member finds an empty pool, so it
    calls). With ``reuse_threshold = 0`` nothing is reused and ``low == high``: the estimate
    is exact. With a positive threshold it is exact only when every class with members is a
    GENERATE class of one member; otherwise the true count depends on distances between
    instances and CFs, known only once CFs exist. Both bounds assume that an earlier answer
    (memo) verifies again, which holds unless the stored CF or the model changed.
    """

    low: int
    high: int

    @property
    def exact(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class PhysicalPlan:
    """The executable plan: per group the ordered class steps, the reuse settings, and the
    requests an earlier query answered with an identical condition and generator (memo)."""

    groups: tuple[PhysicalGroup, ...]
    threshold: float
    max_pool_checks: int | None
    persistent: bool
    memo: Mapping[tuple[int, int], tuple[Mapping[str, Any], ...]]

    def estimate(self) -> CallEstimate:
        steps = [s for g in self.groups for s in g.steps]
        high = sum(len(s.members) for s in steps)
        if self.threshold <= 0:
            return CallEstimate(high, high)
        low = sum(1 for s in steps if s.access is Access.GENERATE and s.members)
        return CallEstimate(low, high)

    def pool_hits(self) -> int:
        """Persistent-pool CFs available to the classes (before any reuse check)."""
        return sum(len(s.pool) for g in self.groups for s in g.steps)
