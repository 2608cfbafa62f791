"""Running a generator over many tasks: verification, distances, failures, parallelism.

Pure: tasks in, verified CFs out; the engine reads the database and writes the results. Every
candidate is verified (condition, immutable features, the model's output) before it counts; a
generator that raises or overruns its deadline marks its task ``failed`` with the reason, and
the other tasks go on. A generator that *proves* there is no CF (``info["status"] ==
"infeasible"`` on its answer, see :mod:`cfdb.generators.base`) marks its task ``infeasible``;
its per-CF ``__optimal`` flags follow the CFs that pass verification. Tasks run through an
executor (:mod:`cfdb.exec`): in this process, in warm worker processes (in chunks), or on Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cfdb.errors import CfdbUnsupportedError
from cfdb.generators.base import (
    GenerationTask,
    Generator,
    model_outputs,
    output_scores,
    output_text,
    take,
    valid_mask,
)
from cfdb.generators.distance import distance
from cfdb.generators.diversity import CANDIDATES_PER_CF, round_to_data, select_diverse
from cfdb.generators.sampling import unique_index
from cfdb.types import FeatureSpec


@dataclass
class Outcome:
    """What one task produced.

    Attributes:
        key: the caller's key for the task (e.g. the prediction id).
        rows: the verified CFs (feature columns), closest first.
        distances: their distances to the instance.
        labels: the model's output on each CF as text: its label, or a regressor's value
            (:func:`~cfdb.generators.base.output_text`).
        scores: the model's score on each CF (:func:`~cfdb.generators.base.output_scores`).
        optimal: per CF, whether the generator proved it optimal (None: it does not say).
        error: why the task failed (``None`` if it ran).
        infeasible: the generator proved that no CF exists (``error`` says so).
        seconds: time spent.
    """

    key: Any
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    optimal: list[bool | None] = field(default_factory=list)
    error: str | None = None
    infeasible: bool = False
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.distances)


def run_task(
    generator: Generator, key: Any, task: GenerationTask, time_limit: float | None
) -> Outcome:
    """Run one task and verify its candidates; never raises for a generator's failure."""
    model, features = generator.model_, generator.features_
    started = time.monotonic()
    if time_limit is not None:
        task = replace(task, deadline=started + time_limit)
    diverse = task.diversity > 0 and task.n > 1
    try:
        # Diverse CFs are chosen among more candidates than CFs wanted.
        asked = replace(task, n=task.n * CANDIDATES_PER_CF) if diverse else task
        candidates = generator.generate(asked)
    except Exception as exc:  # a failing generator is recorded, not fatal to the batch
        return Outcome(
            key, error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started
        )
    seconds = time.monotonic() - started
    # Cooperative generators stop near the deadline; a small grace keeps their answers.
    if time_limit is not None and seconds > time_limit * 1.2 + 0.1:
        return Outcome(
            key, error=f"time limit exceeded ({seconds:.1f} s > {time_limit} s)", seconds=seconds
        )
    names = [f.name for f in features]
    extra = getattr(candidates, "extra", None) or {}
    info = getattr(candidates, "info", None) or {}
    if not candidates or not len(next(iter(candidates.values()), [])):
        if info.get("status") == "infeasible":
            return Outcome(
                key,
                error=f"no counterfactual exists: generator {generator.name!r} proved that none "
                "satisfies the condition and the target within the feature domains",
                infeasible=True,
                seconds=seconds,
            )
        return Outcome(key, error="no counterfactual found", seconds=seconds)
    missing = [n for n in names if n not in candidates]
    if missing:
        return Outcome(key, error=f"generator returned no column {missing[0]!r}", seconds=seconds)
    rows = coerce({n: candidates[n] for n in names}, features)
    if task.decimals:
        rows = round_to_data(rows, task.instance, task.decimals, features)
        rows = take(rows, unique_index(rows, features))  # rounding may merge candidates
    ok = valid_mask(model, features, task, rows)
    if not ok.any():
        return Outcome(key, error="no candidate passed verification", seconds=seconds)
    kept = np.flatnonzero(ok)
    rows = take(rows, kept)
    dist = distance(task.distance, task.instance, rows, features)
    if diverse:
        order = select_diverse(rows, dist, task.n, task.diversity, features, task.distance)
    else:
        order = np.argsort(dist, kind="stable")[: task.n]
    rows = take(rows, order)
    flags = extra.get("__optimal")
    if flags is not None and len(flags) == len(ok):
        optimal: list[bool | None] = [bool(v) for v in np.asarray(flags)[kept][order]]
    else:
        optimal = [None] * len(order)
    return Outcome(
        key,
        rows=rows,
        distances=dist[order],
        labels=output_text(model, model_outputs(model, rows)),
        scores=_scores(model, rows),
        optimal=optimal,
        seconds=time.monotonic() - started,
    )


def _scores(model: Any, rows: dict[str, np.ndarray]) -> np.ndarray:
    """The model's score on each CF; NaN (stored as NULL) for a classifier that gives no
    probabilities."""
    try:
        return output_scores(model, rows)
    except CfdbUnsupportedError:
        return np.full(len(next(iter(rows.values()))), np.nan)


def coerce(rows: dict[str, Any], features: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """Candidate columns in the raw types the database stores (integers rounded, categoricals
    as strings), so that what is verified is exactly what is stored."""
    out = {}
    for f in features:
        values = np.asarray(rows[f.name])
        if f.type == "integer":
            values = np.rint(values.astype(float)).astype(np.int64)
        elif f.type == "numeric":
            values = values.astype(float)
        elif f.type == "boolean":
            values = values.astype(bool)
        else:
            values = np.array([str(v) for v in values.tolist()], dtype=object)
        out[f.name] = values
    return out


def _run_chunk(
    shared: tuple[Generator, float | None], items: Sequence[tuple[int, Any, GenerationTask]]
) -> list[tuple[int, Outcome]]:
    generator, time_limit = shared
    return [(i, run_task(generator, key, task, time_limit)) for i, key, task in items]


def _describe(item: tuple[int, Any, GenerationTask]) -> str:
    key = item[1]
    if isinstance(key, tuple) and len(key) == 2:  # (query id, prediction id)
        return f"prediction {key[1]} of query {key[0]}"
    return f"prediction {key}"


def _lost(item: tuple[int, Any, GenerationTask], reason: str) -> tuple[int, Outcome]:
    # a prediction whose worker died twice is recorded as failed, with why
    return item[0], Outcome(item[1], error=reason)


def run_tasks(
    generator: Generator,
    items: Sequence[tuple[Any, GenerationTask]],
    *,
    time_limit: float | None = None,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    executor: Any = None,
) -> list[Outcome]:
    """Run every ``(key, task)``; outcomes in the order of ``items``.

    Args:
        generator: a fitted generator.
        time_limit: seconds per task (cooperative: the generator sees the deadline).
        n_jobs: worker processes of the default (``local``) executor; 1 runs in this process.
        progress: called with the number of tasks just finished.
        executor: a :class:`cfdb.exec.Executor` to run on instead (``n_jobs`` is then its own).
            The fitted generator (model included) is shipped once per worker.
    """
    from cfdb.exec import chunked, make_executor

    if executor is None:
        executor = make_executor("local", n_jobs)
    indexed = [(i, key, task) for i, (key, task) in enumerate(items)]
    if executor.in_process or len(items) < 2:
        chunks = [[item] for item in indexed]
    else:
        chunks = chunked(indexed, executor.workers, largest=64)
    results: list[Outcome | None] = [None] * len(items)
    stream = executor.map_chunks(
        _run_chunk, (generator, time_limit), chunks, describe=_describe, lost=_lost
    )
    try:
        for outcomes in stream:
            for i, outcome in outcomes:
                results[i] = outcome
            if progress:
                progress(len(outcomes))
    finally:
        stream.close()
    return [r for r in results if r is not None]
