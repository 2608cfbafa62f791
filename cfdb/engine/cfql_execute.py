"""CFQL batch execution and recording: the physical plan in, typed answers and stored rows
out (CFDB paper, section 4.3, Algorithm 2).

:func:`execute` walks a :class:`~cfdb.engine.cfql_plan.PhysicalPlan` group by group. A
request an earlier query answered with an identical condition and generator reuses that
answer (memo) at no cost, whatever the threshold. With ``reuse_threshold > 0`` the classes run
in topological order through :func:`generate_class`, the one step that calls generators:
typed inputs (members, the class's pool, where new CF refs and the random stream start) and
typed outputs (choices, new CFs, where they end), so it can run in another process. The class
pool holds the persistent pool, CFs pushed from stronger classes and those generated for the
class; after a class runs its pool flows to its successors. With ``reuse_threshold = 0`` no
class depends on another: all requests of a group run at once, in parallel per generator.
On another executor (``executor``, ``address``, ``n_jobs``),
:mod:`cfdb.engine.cfql_distributed` sends the generator calls out in waves that keep the
walk's decisions, so the stored CFs are the same.

:func:`execute` turns choices into typed :class:`Answer` objects, assigns ids to new CFs and
collects the ``CFs`` and ``Prediction_CFs`` rows; :mod:`cfdb.engine.cfql_record` writes them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cfdb.engine import cfql_distributed as distributed
from cfdb.engine.cfql_compile import raw_value
from cfdb.engine.cfql_plan import (
    BATCH_OPTIONS,
    DEFAULT_DIVERSITY,
    QUERY_OPTIONS,
    PhysicalGroup,
    PhysicalPlan,
    Query,
    Request,
)
from cfdb.engine.handlers.models import columns_of, load_model
from cfdb.errors import CfdbDataError, CfdbError
from cfdb.exec import ExecOptions
from cfdb.generators import GenerationTask
from cfdb.generators.reuse import Choice, Member, PoolCF, choice_from_outcome, try_reuse
from cfdb.generators.run import run_task
from cfdb.store import catalog
from cfdb.types import FeatureSpec

if TYPE_CHECKING:
    from cfdb.engine.session import Session
    from cfdb.generators.base import Generator


# -- the generation seam ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClassJob:
    """One class to serve: its members (tasks with fitted generators), the CFs valid for it
    before it runs, the first ref for CFs generated now (``("new", k)``, unique within the
    group) and the state of the random stream that picks pool subsets (``max_pool_checks``)."""

    class_id: int
    members: tuple[Member, ...]
    pool: tuple[PoolCF, ...]
    first_ref: int
    rng_state: Mapping[str, Any]


@dataclass(frozen=True)
class ClassResult:
    """What a class produced: a choice per member key (in member order), the CFs generated
    (they join the class's pool), the next free ref and the random stream's state."""

    class_id: int
    choices: tuple[tuple[Any, Choice], ...]
    new_cfs: tuple[PoolCF, ...]
    next_ref: int
    rng_state: Mapping[str, Any]

    @property
    def generator_calls(self) -> int:
        return sum(1 for _, c in self.choices if c.generator_called)


def generate_class(job: ClassJob, progress: Callable[[int], None] | None = None) -> ClassResult:
    """Algorithm 2 for one class: each member reuses the closest valid pool CF within its
    threshold, else calls its generator, whose CFs join the pool. No database access."""
    rng = np.random.default_rng()
    rng.bit_generator.state = dict(job.rng_state)
    ids = itertools.count(job.first_ref)
    pool = list(job.pool)
    new: list[PoolCF] = []
    choices = []
    for member in job.members:
        choice = try_reuse(member, pool, rng)
        if choice is None:
            outcome = run_task(member.generator, member.key, member.task, member.time_limit)
            choice = choice_from_outcome(outcome, ids)
            pool.extend(choice.cfs)
            new.extend(choice.cfs)
        choices.append((member.key, choice))
        if progress:
            progress(1)
    return ClassResult(job.class_id, tuple(choices), tuple(new), next(ids), rng.bit_generator.state)


def walk_classes(
    group: PhysicalGroup,
    members: Mapping[int, Sequence[Member]],
    seed: int,
    progress: Callable[[int], None] | None = None,
    run: Callable[[ClassJob], ClassResult] | None = None,
) -> dict[Any, Choice]:
    """Run a group's classes in order through ``run`` (default :func:`generate_class`),
    pushing each class's pool to the classes it implies."""
    run = run or (lambda job: generate_class(job, progress))
    order = [s.class_id for s in group.steps]
    pool: dict[int, list[PoolCF]] = {s.class_id: list(s.pool) for s in group.steps}
    seen: dict[int, set[Any]] = {c: {cf.ref for cf in pool[c]} for c in order}
    state = np.random.default_rng(seed).bit_generator.state
    next_ref = 1
    choices: dict[Any, Choice] = {}
    for c in order:
        result = run(ClassJob(c, tuple(members.get(c, ())), tuple(pool[c]), next_ref, state))
        for cf in result.new_cfs:
            pool[c].append(cf)
            seen[c].add(cf.ref)
        choices.update(result.choices)
        next_ref, state = result.next_ref, result.rng_state
        for succ in group.logical.classes[c].successors:
            for cf in pool[c]:
                if cf.ref not in seen[succ]:
                    pool[succ].append(cf)
                    seen[succ].add(cf.ref)
    return choices


# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A ``Prediction_CFs`` row."""

    PredictionId: int
    CfId: int
    QueryId: int
    Distance: float
    Reused: bool
    Optimal: bool | None


@dataclass(frozen=True)
class Answer:
    """How a request was served: ``satisfied``, ``reused``, ``infeasible`` or ``failed``;
    whether the generator ran, how many CFs it made for it, and its links (CF ids, distances,
    optimality flags)."""

    status: str
    error: str | None = None
    called: bool = False
    generated: int = 0
    distances: tuple[float, ...] = ()
    links: tuple[Link, ...] = ()

    @property
    def cf_ids(self) -> tuple[int, ...]:
        return tuple(link.CfId for link in self.links)


def answer_of(choice: Choice, reused: bool, links: Sequence[Link] = ()) -> Answer:
    called = bool(choice.generator_called)
    if choice.error is not None or not choice.cfs:
        # A generator's proof that no CF exists is an answer, not a failure.
        status = "infeasible" if choice.infeasible else "failed"
        return Answer(status, choice.error or "no counterfactual found", called)
    return Answer(
        "reused" if reused else "satisfied",
        None,
        called,
        0 if reused else len(choice.cfs),
        tuple(float(d) for d in choice.distances),
        tuple(links),
    )


@dataclass
class Execution:
    """The answers of a run and the rows to store (filled by :func:`execute`)."""

    answers: dict[tuple[int, int], Answer] = field(default_factory=dict)
    cf_rows: list[dict[str, Any]] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    seconds: float = 0.0


# -- execute ---------------------------------------------------------------------------------


class _Generators:
    """Fitted generators per (query, model), fitted on first use (models and pools cached)."""

    def __init__(self, session: Session, features: Sequence[FeatureSpec]) -> None:
        self.session, self.features = session, list(features)
        self.models: dict[int, Any] = {}
        self.fitted: dict[tuple[int, int], Generator] = {}
        self.pools: dict[str, Any] = {}

    def model(self, mid: int) -> Any:
        if mid not in self.models:
            store = self.session.store
            name = store.execute("SELECT Name FROM Models WHERE ModelId = ?", [mid])[0][0]
            self.models[mid] = load_model(self.session, name)[1]
        return self.models[mid]

    def get(self, q: Query, mid: int) -> Generator:
        key = (q.query_id, mid)
        if key in self.fitted:
            return self.fitted[key]
        cls = q.generator
        pool = None
        if getattr(cls, "uses_pool", True):
            pool_sql = str(q.params.get("pool", "SELECT * FROM Instances"))
            if pool_sql not in self.pools:
                table = self.session.store.arrow(pool_sql)
                self.pools[pool_sql] = {
                    f.name: columns_of(table)[f.name]
                    for f in self.features
                    if f.name in table.column_names
                }
            pool = self.pools[pool_sql]
        where = q.node.args.get("params") or []
        span = (where[0].span[0], where[-1].span[1]) if where else q.node.span("using")
        try:
            self.fitted[key] = cls(**generator_params(q.params)).fit(
                self.model(mid), self.features, pool
            )
        except TypeError as exc:
            raise CfdbDataError(f"generator {cls.name!r}: {exc}").located(
                q.stmt.script, *span
            ) from None
        except CfdbError as err:
            raise err.located(q.stmt.script, *span) from None
        return self.fitted[key]


def generator_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The WITH options meant for the generator itself."""
    return {k: v for k, v in params.items() if k not in QUERY_OPTIONS and k not in BATCH_OPTIONS}


def _member(
    session: Session, q: Query, r: Request, generator: Generator, plan: PhysicalPlan, decimals: Any
) -> Member:
    params = q.params
    task = GenerationTask(
        instance=dict(r.instance),
        original_label=None if r.regression else str(r.label),
        target=r.target,
        original_value=r.original_value,
        min_change=r.min_change,
        direction=r.direction,
        score=r.score,
        condition=r.cond,
        n=int(params.get("n", 1)),
        seed=int(params.get("seed", session.seed)) + r.prediction_id,
        distance=str(params.get("distance", "tabular")).lower(),
        params=generator_params(params),
        diversity=float(params.get("diversity", DEFAULT_DIVERSITY)),
        decimals=decimals,
    )
    return Member(
        key=r.key,
        task=task,
        generator=generator,
        threshold=plan.threshold,
        max_pool_checks=plan.max_pool_checks,
        time_limit=float(params.get("time_limit", 10.0)),
    )


def _reuse_memo(member: Member, rows: Sequence[Mapping[str, Any]]) -> Choice | None:
    """An earlier answer, verified exactly as any reuse; the threshold is the largest earlier
    distance."""
    pool = [PoolCF(int(row["CfId"]), row, str(row["Label"])) for row in rows]
    limit = max(float(row["Distance"] or 0) for row in rows) + 1e-9
    probe = Member(member.key, member.task, member.generator, threshold=limit)
    choice = try_reuse(probe, pool, np.random.default_rng(0))
    return choice if isinstance(choice, Choice) else None


def execute(
    session: Session,
    queries: Sequence[Query],
    plan: PhysicalPlan,
    features: Sequence[FeatureSpec],
    where: ExecOptions | None = None,
) -> Execution:
    """Phase 6: serve every planned request (memo, then the class walk or independent runs)
    and collect the rows to store. ``where`` says where generator calls run (default: the
    queries' own ``executor`` options); ``session.last_generation`` says how it went."""
    store = session.store
    where = where or distributed.where([q.params for q in queries], {})
    session.last_generation = distributed.GenerationStats()
    by_id = {q.query_id: q for q in queries}
    generators = _Generators(session, features)
    decimals = _decimals(store, features)
    next_cf = catalog.next_id(store, catalog.CFS, "CfId")
    out = Execution()
    memo_hits: set[tuple[int, int]] = set()
    for group in plan.groups:
        lg = group.logical
        model_id = lg.group.model_id
        by_class: dict[int, list[Member]] = {}
        request_of: dict[Any, Request] = {}
        for r in lg.group.members:
            q = by_id[r.query_id]
            member = _member(session, q, r, generators.get(q, model_id), plan, decimals)
            request_of[r.key] = r
            hit = plan.memo.get(r.key)
            if hit is not None:
                choice = _reuse_memo(member, hit)
                if choice is not None:
                    links = [
                        Link(r.prediction_id, cf.ref, r.query_id, float(d), True, None)
                        for cf, d in zip(choice.cfs, choice.distances, strict=True)
                    ]
                    out.answers[r.key] = answer_of(choice, True, links)
                    memo_hits.add(r.key)
                    continue
            by_class.setdefault(lg.class_of_hash[r.hash], []).append(member)
        total = sum(len(m) for m in by_class.values())
        with session.progress(f"counterfactuals (model {model_id})", total) as advance:
            # In this process: the class walk as Algorithm 2 is written; on an executor:
            # waves of generator calls that keep the walk's decisions (cfql_distributed).
            choices = distributed.generate(
                [s.class_id for s in group.steps],
                by_class,
                {c: set(k.successors) for c, k in lg.classes.items()},
                {s.class_id: s.pool for s in group.steps},
                threshold=plan.threshold,
                seed=session.seed,
                options=where,
                stats=session.last_generation,
                progress=advance,
                walk=lambda: walk_classes(group, by_class, session.seed, advance),  # noqa: B023
            )
        # Ids for the CFs generated now, and a link per chosen CF.
        new_ids: dict[Any, int] = {}
        for key, choice in choices.items():
            r = request_of[key]
            links = []
            flags = choice.optimal if len(choice.optimal) == len(choice.cfs) else []
            for i, (cf, dist) in enumerate(zip(choice.cfs, choice.distances, strict=True)):
                stored = isinstance(cf.ref, int)
                if not stored and cf.ref not in new_ids:
                    new_ids[cf.ref] = next_cf
                    row = {f.name: raw_value(f, cf.row[f.name]) for f in features}
                    row.update(
                        CfId=next_cf,
                        ModelId=model_id,
                        Label=cf.label,
                        Generator=by_id[r.query_id].generator.name,
                        Score=cf.score,
                    )
                    out.cf_rows.append(row)
                    next_cf += 1
                links.append(
                    Link(
                        r.prediction_id,
                        cf.ref if stored else new_ids[cf.ref],
                        r.query_id,
                        float(dist),
                        bool(choice.reused),
                        # Proven closest for *this* request only when generated for it.
                        None if choice.reused or not flags else flags[i],
                    )
                )
            out.answers[key] = answer_of(choice, choice.reused, links)
            out.links.extend(links)
    # Memo hits are linked last, in request order.
    for q in queries:
        for r in q.requests:
            if r.key in memo_hits:
                out.links.extend(out.answers[r.key].links)
    return out


def _decimals(store: Any, features: Sequence[FeatureSpec]) -> dict[str, int]:
    """Per numeric feature, the most decimals its values have in ``Instances`` (a column
    stored with one decimal gets CFs with one), when that is fewer than 6."""
    numeric = [f.name for f in features if f.type == "numeric"]
    if not numeric or not store.table_exists(catalog.INSTANCES):
        return {}
    have = {c.lower(): c for c, _ in store.columns(catalog.INSTANCES)}
    numeric = [have[n.lower()] for n in numeric if n.lower() in have]
    if not numeric:
        return {}
    parts = [
        f"max(CASE WHEN contains(lower(CAST({catalog.quote(n)} AS VARCHAR)), 'e') THEN 99 "
        f"ELSE length(split_part(CAST({catalog.quote(n)} AS VARCHAR), '.', 2)) END)"
        for n in numeric
    ]
    row = store.execute(f"SELECT {', '.join(parts)} FROM Instances")[0]
    return {n: int(d) for n, d in zip(numeric, row, strict=True) if d is not None and d < 6}
