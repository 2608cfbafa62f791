"""Batch evaluation with counterfactual reuse (CFDB paper, section 4.3, Algorithm 2).

The condensed implication graph is walked in topological order, strongest conditions first.
Each class keeps a pool of valid CFs: those generated for its members, those pushed from the
classes that imply it (a CF satisfying a stronger condition satisfies the weaker one), and
CFs stored by earlier queries that satisfy it (the persistent pool, fetched by the engine).
For each member, the closest pool CF within ``reuse_threshold`` of its instance is reused
(optionally among a random subset of ``max_pool_checks`` pool CFs); otherwise the generator
is called and its CFs join the pool. Reused CFs are verified like generated ones (condition,
immutable features, the model's output), each against the member's own task: for a regressor,
a pool CF serves a member only if it moves the output from *that member's* original value by
``min_change`` in the required direction.

Pure: pools and tasks in, choices out; the engine reads and writes the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cfdb.generators.base import GenerationTask, Generator, valid_mask
from cfdb.generators.distance import distance
from cfdb.generators.run import Outcome, coerce, run_task


@dataclass(frozen=True)
class PoolCF:
    """A CF that may serve several members.

    Attributes:
        ref: the CF's id when stored earlier (int), or ``("new", k)`` for one generated now.
        row: its raw feature values.
        label: the model's output on it as text (a label, or a regressor's value).
        score: the model's score on it (``CFs.Score``), when known.
    """

    ref: Any
    row: Mapping[str, Any]
    label: str
    score: float | None = None


@dataclass
class Member:
    """One (query, prediction) to serve.

    Attributes:
        key: the caller's key, e.g. ``(query_id, prediction_id)``.
        task: the generation task (instance, condition, target, n, distance).
        generator: a fitted generator for this member's query and model.
        threshold: the reuse threshold of its query.
        max_pool_checks: look at most at this many (random) pool CFs; ``None`` for all.
        time_limit: seconds for a generator call.
    """

    key: Any
    task: GenerationTask
    generator: Generator
    threshold: float = 0.0
    max_pool_checks: int | None = None
    time_limit: float | None = None


@dataclass
class Choice:
    """What a member got: CFs with their distances, whether reused, or an error.

    ``optimal`` holds the generator's flag per CF (None: unknown, always for a reuse);
    ``infeasible``: the generator proved that no CF exists (``error`` says so).
    """

    cfs: list[PoolCF] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    reused: bool = False
    error: str | None = None
    generator_called: bool = False
    optimal: list[bool | None] = field(default_factory=list)
    infeasible: bool = False


def _columns(pool: Sequence[PoolCF], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: np.array([cf.row[n] for cf in pool], dtype=object) for n in names}


def try_reuse(member: Member, pool: Sequence[PoolCF], rng: np.random.Generator) -> Choice | None:
    if not pool or member.threshold <= 0:
        return None
    candidates = list(pool)
    if member.max_pool_checks is not None and len(candidates) > member.max_pool_checks:
        picked = rng.choice(len(candidates), size=member.max_pool_checks, replace=False)
        candidates = [candidates[i] for i in sorted(picked.tolist())]
    features = member.generator.features_
    names = [f.name for f in features]
    rows = coerce(_columns(candidates, names), features)
    dist = distance(member.task.distance, member.task.instance, rows, features)
    near = dist <= member.threshold
    if not near.any():
        return None
    index = np.flatnonzero(near)
    subset = {k: v[index] for k, v in rows.items()}
    ok = valid_mask(member.generator.model_, features, member.task, subset)
    if not ok.any():
        return None
    index = index[ok]
    order = index[np.argsort(dist[index], kind="stable")][: member.task.n]
    return Choice(
        cfs=[candidates[i] for i in order.tolist()],
        distances=[float(dist[i]) for i in order.tolist()],
        reused=True,
    )


def choice_from_outcome(outcome: Outcome, ids: Iterator[int]) -> Choice:
    """A generator call's outcome as a choice; new CFs get refs ``("new", k)`` from ``ids``."""
    if outcome.error is not None or not outcome.count:
        return Choice(
            error=outcome.error or "no counterfactual found",
            generator_called=True,
            infeasible=outcome.infeasible,
        )
    scores = outcome.scores if len(outcome.scores) == outcome.count else [None] * outcome.count
    cfs = [
        PoolCF(
            ("new", next(ids)),
            {k: v[i] for k, v in outcome.rows.items()},
            str(outcome.labels[i]),
            None if scores[i] is None or np.isnan(scores[i]) else float(scores[i]),
        )
        for i in range(outcome.count)
    ]
    optimal = outcome.optimal if len(outcome.optimal) == outcome.count else [None] * len(cfs)
    return Choice(
        cfs=cfs,
        distances=outcome.distances.tolist(),
        generator_called=True,
        optimal=list(optimal),
    )


def evaluate_batch(
    order: Sequence[int],
    members: Mapping[int, Sequence[Member]],
    successors: Mapping[int, set[int]],
    pools: Mapping[int, Sequence[PoolCF]] | None = None,
    *,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[Any, Choice]:
    """Algorithm 2 over the condensation.

    Args:
        order: class ids in topological order (strongest first).
        members: class id -> the members of that class.
        successors: class id -> classes it implies.
        pools: class id -> CFs stored earlier that satisfy the class's condition.
        seed: for the random pool subsets.
        progress: called with 1 after each member.
    """
    rng = np.random.default_rng(seed)
    pool: dict[int, list[PoolCF]] = {c: list((pools or {}).get(c, ())) for c in order}
    seen: dict[int, set[Any]] = {c: {cf.ref for cf in pool[c]} for c in order}
    choices: dict[Any, Choice] = {}
    ids = itertools.count(1)
    for cls in order:
        for member in members.get(cls, ()):
            choice = try_reuse(member, pool[cls], rng)
            if choice is None:
                outcome: Outcome = run_task(
                    member.generator, member.key, member.task, member.time_limit
                )
                choice = choice_from_outcome(outcome, ids)
                for cf in choice.cfs:
                    pool[cls].append(cf)
                    seen[cls].add(cf.ref)
            choices[member.key] = choice
            if progress:
                progress(1)
        for succ in successors.get(cls, ()):
            for cf in pool[cls]:
                if cf.ref not in seen.setdefault(succ, set()):
                    pool.setdefault(succ, []).append(cf)
                    seen[succ].add(cf.ref)
    return choices
