"""CF generation of a CFQL batch on an executor, with the decisions of the local run (CFDB
paper, section 4.3, Algorithm 2, spread over worker processes or a Ray cluster).

What a member's decision depends on
    Algorithm 2 (:func:`cfdb.generators.reuse.evaluate_batch`) walks the classes in
    topological order and, inside a class, its members in order. A member reuses the closest
    valid CF of its class's pool within the threshold, else calls the generator. That pool
    holds, at that moment, exactly: the persistent pool of the class (fixed before the run),
    the CFs of every class that implies it (pushed along the edges, so of all its ancestors,
    in the walk's order), and the CFs generated for the members before it in its own class.
    Nothing generated for an unrelated class enters it. One more thing is shared by all: with
    ``max_pool_checks`` set, a member whose pool is larger draws a random subset from one
    generator seeded once per batch, so its subset depends on how many draws came before it
    in the walk. The generator call itself depends on nothing but its task: it is seeded per
    request (``seed`` + prediction id), so its answer is the same in any process.

The waves
    The driver replays the walk of the local run in every wave, with the decisions known so
    far (from the first class not finished yet: the state after the finished ones is kept). A member is *decidable* when nothing its pool (or its random
    draw) depends on is still unknown; its decision is then exactly the local run's and is
    kept. A decidable member that must generate joins this wave's requests, and the rest of
    its class and every class it implies wait for its answer; the members that do not depend
    on it go on. All the wave's requests run at once on the executor, their outcomes come
    back, and the next wave replays again. Each wave decides at least the first undecided
    member of the walk, so the run ends; generator calls are exactly the local run's (no
    speculation), and the choices come out in the walk's order, so CF ids are assigned in the
    same order as locally. The local run itself is unchanged: with an in-process executor
    this module calls :func:`~cfdb.generators.reuse.evaluate_batch` as before.

Without reuse (``reuse_threshold = 0``) no decision depends on another: one wave generates
every member, and the choices are put in the local run's order (per generator, then the
members').

Generators (model included) cross to the workers pickled, once per worker and run (the
process pool keeps one shipped value while it does not change; see :mod:`cfdb.exec`).
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cfdb.exec import ExecOptions, Executor, chunked, exec_options
from cfdb.generators.base import GenerationTask, Generator
from cfdb.generators.reuse import (
    Choice,
    Member,
    PoolCF,
    choice_from_outcome,
    evaluate_batch,
    try_reuse,
)
from cfdb.generators.run import Outcome, run_task, run_tasks

#: Tasks per chunk at most (a chunk's tasks run one after the other on one worker).
LARGEST_CHUNK = 16


@dataclass
class GenerationStats:
    """How one run of the generation went (``session.last_generation`` after a FOREACH).

    Attributes:
        executor: the executor's name (``local``, ``process``, ``ray``).
        workers: chunks that ran at once.
        waves: rounds of parallel generator calls (1 without reuse; 0 when nothing ran).
        calls: generator calls.
        calls_by_worker: generator calls per worker process (``host:pid``, with the Ray node
            id's first characters on Ray; ``driver`` for the calling process).
        seconds: wall time of the generation.
    """

    executor: str = "local"
    workers: int = 1
    waves: int = 0
    calls: int = 0
    calls_by_worker: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, run: GenerationStats) -> None:
        """Count ``run`` (one model's plan of the batch) in."""
        self.executor, self.workers = run.executor, run.workers
        self.waves += run.waves
        self.calls += run.calls
        for name, calls in run.calls_by_worker.items():
            self.calls_by_worker[name] = self.calls_by_worker.get(name, 0) + calls
        self.seconds += run.seconds


def where(params: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> ExecOptions:
    """The executor of a batch: the first query's ``executor`` and ``address`` that are set,
    else the batch's (``BEGIN BATCH WITH (...)``); ``n_jobs`` the largest asked (-1 wins).

    Raises:
        CfdbDataError: a bad value (checked again here; the handlers point at the option).
    """
    sources = [*params, options]
    jobs = [int(s["n_jobs"]) for s in sources if s.get("n_jobs") is not None]
    n_jobs = -1 if -1 in jobs else max(jobs, default=1)
    picked = exec_options(*sources)
    return ExecOptions(picked.executor, n_jobs, picked.address)


def generate(
    order: Sequence[int],
    members: Mapping[int, Sequence[Member]],
    successors: Mapping[int, set[int]],
    pools: Mapping[int, Sequence[PoolCF]] | None,
    *,
    threshold: float,
    seed: int,
    options: ExecOptions,
    stats: GenerationStats | None = None,
    progress: Callable[[int], None] | None = None,
    walk: Callable[[], dict[Any, Choice]] | None = None,
) -> dict[Any, Choice]:
    """Every member's choice, as the local run makes it; how the run went is added to
    ``stats``.

    Args:
        order, members, successors, pools: as for
            :func:`~cfdb.generators.reuse.evaluate_batch`.
        threshold: the batch's reuse threshold (0: no reuse, every member generates).
        seed: the batch's seed (random pool subsets).
        options: where generation runs.
        stats: counts to add this run's to (the session keeps one per batch).
        progress: called with the number of members just served.
        walk: the in-process walk with reuse (the planner's class walk); by default
            :func:`~cfdb.generators.reuse.evaluate_batch`, which it reproduces.
    """
    started = time.perf_counter()
    executor = options.make()
    run = GenerationStats(executor=options.executor, workers=executor.workers)
    if executor.in_process:
        # The local run, exactly as written.
        if threshold <= 0:
            choices = _independent(members, executor, progress)
        elif walk is not None:
            choices = walk()
        else:
            choices = evaluate_batch(
                order, members, successors, pools, seed=seed, progress=progress
            )
        run.calls = sum(1 for c in choices.values() if c.generator_called)
        run.calls_by_worker = {"driver": run.calls} if run.calls else {}
        run.waves = 1 if threshold <= 0 and run.calls else run.calls
    else:
        choices = Waves(order, members, successors, pools, seed).run(executor, progress, run)
        if threshold <= 0:  # the local run's order: per generator, then the members'
            choices = {m.key: choices[m.key] for m in _by_generator(members)}
    run.seconds = time.perf_counter() - started
    if stats is not None:
        stats.add(run)
    return choices


# -- without reuse ------------------------------------------------------------------------------
def _by_generator(members: Mapping[int, Sequence[Member]]) -> list[Member]:
    """The members grouped by generator (first seen first), each group in the members' order."""
    groups: dict[int, list[Member]] = {}
    for group in members.values():
        for m in group:
            groups.setdefault(id(m.generator), []).append(m)
    return [m for group in groups.values() for m in group]


def _independent(
    members: Mapping[int, Sequence[Member]],
    executor: Executor,
    progress: Callable[[int], None] | None,
) -> dict[Any, Choice]:
    """Threshold 0 in this process: every member's generator runs, generator by generator."""
    ordered = _by_generator(members)
    choices: dict[Any, Choice] = {}
    ids = itertools.count(1)
    start = 0
    while start < len(ordered):
        generator = ordered[start].generator
        end = start
        while end < len(ordered) and ordered[end].generator is generator:
            end += 1
        group = ordered[start:end]
        outcomes = run_tasks(
            generator,
            [(m.key, m.task) for m in group],
            time_limit=group[0].time_limit,
            progress=progress,
            executor=executor,
        )
        for m, outcome in zip(group, outcomes, strict=True):
            choices[m.key] = choice_from_outcome(outcome, ids)
        start = end
    return choices


# -- with reuse: waves --------------------------------------------------------------------------
@dataclass
class _Decided:
    """A member's decision: its choice (``None`` while its generator call is out), and the
    state of the batch's random generator after its pool subset was drawn (``None``: it drew
    nothing)."""

    choice: Choice | None
    rng_after: dict[str, Any] | None


class Waves:
    """Algorithm 2 with the generator calls of each wave run together (see the module doc)."""

    def __init__(
        self,
        order: Sequence[int],
        members: Mapping[int, Sequence[Member]],
        successors: Mapping[int, set[int]],
        pools: Mapping[int, Sequence[PoolCF]] | None,
        seed: int,
    ) -> None:
        self.order, self.members, self.successors = order, members, successors
        self.decided: dict[Any, _Decided] = {}
        # The walk's state after its finished prefix: classes before ``start`` have all
        # their choices (in ``final``) and have pushed their pools; a replay starts there.
        self.start = 0
        self.pool: dict[int, list[PoolCF]] = {c: list((pools or {}).get(c, ())) for c in order}
        self.seen: dict[int, set[Any]] = {c: {cf.ref for cf in self.pool[c]} for c in order}
        self.rng_state = np.random.default_rng(seed).bit_generator.state
        self.final: dict[Any, Choice] = {}

    def walk(self) -> tuple[list[Member], dict[Any, Choice]]:
        """One replay of the local walk: the members that must now generate (decided here,
        their calls not yet made), and the choices of the walk so far, in its order."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        rng_known = True
        pool, seen = self.pool, self.seen  # the checkpoint's, while classes finish
        finishing = True
        waiting: set[int] = set()  # classes whose pool depends on a call not yet answered
        requests: list[Member] = []
        choices: dict[Any, Choice] = {}
        for index in range(self.start, len(self.order)):
            cls = self.order[index]
            # The class's pool grows as its members generate: a copy until the class ends.
            own, own_seen = (
                (list(pool[cls]), set(seen[cls])) if finishing else (pool[cls], seen[cls])
            )
            blocked = cls in waiting
            mine: dict[Any, Choice] = {}
            for member in self.members.get(cls, ()):
                draws = member.max_pool_checks is not None and member.threshold > 0
                known = self.decided.get(member.key)
                if blocked and known is None and member.threshold <= 0:
                    # Without a threshold nothing is reused: it generates, whatever its pool.
                    known = self.decided[member.key] = _Decided(None, None)
                    requests.append(member)
                if blocked:
                    # Decisions are made in order: a member after an unknown one waits. Its
                    # draw (if any) is unknown, and so is the generator's state after it.
                    if known is None and draws:
                        rng_known = False
                    if known is None or known.choice is None:
                        continue
                if known is None:
                    if not rng_known and draws and len(own) > member.max_pool_checks:
                        blocked = True  # its subset depends on draws not yet replayed
                        continue
                    before = rng.bit_generator.state
                    choice = try_reuse(member, own, rng)
                    after = rng.bit_generator.state
                    known = _Decided(choice, after if after != before else None)
                    self.decided[member.key] = known
                    if choice is None:
                        requests.append(member)
                elif known.rng_after is not None:
                    rng.bit_generator.state = known.rng_after
                    rng_known = True
                if known.choice is None:
                    blocked = True  # the rest of the class needs this member's CFs
                    continue
                if not blocked:
                    mine[member.key] = known.choice
                if known.choice.generator_called:
                    for cf in known.choice.cfs:
                        own.append(cf)
                        own_seen.add(cf.ref)
            if finishing and blocked:
                # The first unfinished class: the rest of this walk works on copies.
                finishing = False
                rest = self.order[index + 1 :]
                pool = {c: list(pool[c]) for c in rest}
                seen = {c: set(seen[c]) for c in rest}
            pool[cls], seen[cls] = own, own_seen
            if finishing:
                self.final.update(mine)
                self.start = index + 1
                self.rng_state = rng.bit_generator.state
            else:
                choices.update(mine)
            for succ in self.successors.get(cls, ()):
                if blocked:
                    waiting.add(succ)
                    continue
                for cf in own:
                    if cf.ref not in seen.setdefault(succ, set()):
                        pool.setdefault(succ, []).append(cf)
                        seen[succ].add(cf.ref)
        return requests, {**self.final, **choices}

    def run(
        self,
        executor: Executor,
        progress: Callable[[int], None] | None,
        stats: GenerationStats,
    ) -> dict[Any, Choice]:
        """Waves until every member is decided; the choices in the local run's order."""
        generators: list[Generator] = []
        index: dict[int, int] = {}
        for cls in self.order:
            for m in self.members.get(cls, ()):
                if id(m.generator) not in index:
                    index[id(m.generator)] = len(generators)
                    generators.append(m.generator)
        shared = tuple(generators)  # the same value every wave: shipped once per worker
        total = sum(len(v) for v in self.members.values())
        served = 0
        while True:
            requests, choices = self.walk()
            # Reuses decided in this walk are served now; calls when they come back.
            newly = sum(1 for k in self.decided if self.decided[k].choice is not None) - served
            if progress and newly:
                progress(newly)
            served += newly
            if not requests:
                break
            stats.waves += 1
            items = [(index[id(m.generator)], m.key, m.task, m.time_limit) for m in requests]
            chunks = chunked(items, executor.workers, largest=LARGEST_CHUNK)
            stream = executor.map_chunks(
                _generate_chunk, shared, chunks, describe=_describe, lost=_lost
            )
            try:
                for results in stream:
                    for key, outcome, worker in results:
                        refs = ((key, i) for i in itertools.count())
                        choice = choice_from_outcome(outcome, refs)
                        self.decided[key].choice = choice
                        stats.calls += 1
                        stats.calls_by_worker[worker] = stats.calls_by_worker.get(worker, 0) + 1
            finally:
                stream.close()
        if len(choices) != total:  # every member is decided once no request is left
            raise AssertionError("internal error: a member was left without a decision")
        return choices


def _worker_name() -> str:
    """``host:pid`` of this process, with its Ray node when it is a Ray worker."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            node = ray.get_runtime_context().get_node_id()
        except Exception:  # not in a Ray task (e.g. the driver): no node to name
            return name
        return f"{node[:8]}/{name}"
    return name


def _generate_chunk(
    generators: tuple[Generator, ...],
    items: Sequence[tuple[int, Any, GenerationTask, float | None]],
) -> list[tuple[Any, Outcome, str]]:
    """Run on a worker: each request's generator call, verified, with who ran it."""
    name = _worker_name()
    return [(key, run_task(generators[g], key, task, limit), name) for g, key, task, limit in items]


def _describe(item: tuple[int, Any, GenerationTask, float | None]) -> str:
    key = item[1]
    if isinstance(key, tuple) and len(key) == 2:  # (query id, prediction id)
        return f"prediction {key[1]} of query {key[0]}"
    return f"prediction {key}"


def _lost(item: tuple[int, Any, GenerationTask, float | None], reason: str) -> tuple[Any, ...]:
    # a request whose worker died twice is recorded as failed, with why
    return item[1], Outcome(item[1], error=reason), "lost"
