"""Benchmark: exact KNN-Shapley over one-to-many joins, star joins, and map memory at scale.

Sections (each prints a table; times are wall seconds on this machine, ratios in one run):

* ``readme`` — the README's seller/review example through SQL (20 sellers, 400 reviews,
  a holdout of 100): whole ``VALUATE`` at K = 1, 2, 3, 5 (``--readme-val`` holdout rows
  for K = 10, extrapolated linearly — values are a sum over holdout rows; extrapolations
  are marked ``*``), wall and CPU seconds (the machine is shared: CPU time is the steadier
  number).
* ``join`` — 10,000 facts × 200 dimension tuples × 1,000 validation rows: time per
  validation row for K = 1 (running products), K = 2, 3, 5, 10 (the join sweep), extrapolated
  to 1,000 rows (``*``); the log-domain path against the segment tree alone; with
  ``--full 1000`` all 1,000 rows measured, in this process and on two worker processes; with
  ``--general`` also the division-free counting oracle on a 200-fact join against the sweep,
  same K, in the same run.
* ``star`` — 10,000 facts × three dimension tables of 200 tuples × 1,000 validation rows,
  K = 5: exact knn_shapley with players = the fact table and one dimension table (the
  others exogenous); knn_shapley_sampled over every tuple for a few sample counts, with the
  median and largest standard error relative to the largest |value|; and on a 14-tuple star
  join the sampled estimate's largest error in standard errors against enumeration.
* ``growth`` — facts N = 10k, 20k, 40k (N/50 dimension tuples), per validation row, K = 1
  and 5, with the fitted exponent of CPU time in N.
* ``map`` (``--map``) — a map pipeline at N = 1,000,000, V = 10,000, d = 20 in a fresh
  process: time and peak resident memory (long; run it under ``nice``).

Usage::

    python benchmarks/knn_shapley_joins.py                 # readme, join, star, growth
    python benchmarks/knn_shapley_joins.py --sections map  # the 1M × 10k map run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from cfdb.valuation import KnnShapley, Lineage, Problem  # noqa: E402


def _join_problem(facts: int, dims: int, n_val: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    dim_of = rng.integers(0, dims, facts)
    centers = rng.normal(size=(dims, 8))
    train = centers[dim_of] + rng.normal(size=(facts, 8))
    labels = (train[:, 0] + 0.5 * rng.normal(size=facts) > 0).astype(np.int64)
    val = rng.normal(size=(n_val, 8)) + centers[rng.integers(0, dims, n_val)]
    y_val = (val[:, 0] > 0).astype(np.int64)
    gain = np.zeros((n_val, 2))
    gain[np.arange(n_val), y_val] = 1.0 / n_val
    rows = np.c_[np.arange(facts), facts + dim_of]
    relation = np.r_[np.zeros(facts), np.ones(dims)].astype(np.int64)
    return Problem(train, labels, Lineage(facts + dims, relation, rows), val, gain)


def _per_val_row(facts: int, dims: int, k: int, n_val: int) -> tuple[float, float]:
    """Wall and CPU seconds per validation row."""
    problem = _join_problem(facts, dims, n_val)
    start, cpu = time.perf_counter(), time.process_time()
    KnnShapley(k=k, knn_utility="soft").fit(problem)
    return (time.perf_counter() - start) / n_val, (time.process_time() - cpu) / n_val


def readme(args: argparse.Namespace) -> None:
    import cfdb

    db = cfdb.connect()
    db.sql(
        "CREATE TABLE sellers AS SELECT range AS seller_id, random() AS rating FROM range(20);"
        "CREATE TABLE reviews AS SELECT range AS review_id, range % 20 AS seller_id, "
        "random() AS length, random() AS stars, "
        "CASE WHEN random() < 0.5 THEN 'ok' ELSE 'bad' END AS verdict FROM range(400);"
        "CREATE TABLE holdout AS SELECT random() AS length, random() AS stars, "
        "random() AS rating, CASE WHEN random() < 0.5 THEN 'ok' ELSE 'bad' END AS verdict "
        "FROM range(100);"
    )
    print("\nREADME seller/review example: 400 reviews × 20 sellers, holdout 100 (goal < 10 s)")
    print(f"{'K':>3} {'holdout rows run':>17} {'wall s':>8} {'CPU s':>8} {'for 100 rows':>13}")
    for k in (1, 2, 3, 5, 10):
        rows = 100 if k <= 5 else args.readme_val
        start, cpu = time.perf_counter(), time.process_time()
        db.sql(
            "VALUATE (SELECT r.*, s.rating FROM reviews r JOIN sellers s USING (seller_id)) "
            f"EVALUATE ON (SELECT * FROM holdout LIMIT {rows}) USING knn_shapley "
            f"WITH (k = {k}, label = 'verdict')"
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        total = cpu * 100 / rows
        mark = "" if rows == 100 else "*"
        print(f"{k:>3} {rows:>17} {seconds:>8.2f} {cpu:>8.2f} {total:>12.1f}{mark}")
    # The same K = 5 statement on both cores: its validation parts on two worker processes
    # (the first run also starts them; the second is what a session sees afterwards).
    for attempt in ("first", "again"):
        start = time.perf_counter()
        db.sql(
            "VALUATE (SELECT r.*, s.rating FROM reviews r JOIN sellers s USING (seller_id)) "
            "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley "
            "WITH (k = 5, label = 'verdict', executor = 'process', n_jobs = 2)"
        )
        seconds = time.perf_counter() - start
        print(f"  5 {'100, 2 processes':>17} {seconds:>8.2f} {'-':>8} {'(' + attempt + ')':>13}")


def join(args: argparse.Namespace) -> None:
    print("\nOne-to-many join: 10,000 facts × 200 dimension tuples (goal: 1,000 rows < 60 s)")
    print(f"{'K':>3} {'algorithm':>17} {'wall s / row':>13} {'CPU s / row':>12} {'1,000 rows':>11}")
    runs = [(1, "running products"), (2, "join sweep"), (3, "join sweep"), (5, "join sweep")]
    runs += [(10, "join sweep")] if args.k10 else []
    for k, name in runs:
        wall, cpu = _per_val_row(10_000, 200, k, args.join_val)
        print(f"{k:>3} {name:>17} {wall:>13.2f} {cpu:>12.2f} {cpu * 1000 / 60:>9.0f} m*")
    _logs_against_tree(args.join_val)
    if args.full:
        _full_join(args.full)
    if args.general:
        _against_general()


def _full_join(n_val: int) -> None:
    """Every validation row, K = 5: one process, then two worker processes (both cores)."""
    from cfdb.exec import make_executor

    print(f"\n10,000 facts × 200 dimension tuples × {n_val:,} validation rows, K = 5 (measured)")
    print(f"{'executor':>22} {'wall s':>8} {'same values':>12}")
    problem = _join_problem(10_000, 200, n_val)
    start = time.perf_counter()
    local = KnnShapley(k=5).fit(problem).values_
    print(f"{'this process':>22} {time.perf_counter() - start:>8.1f} {'-':>12}")
    # the first run starts the workers (and loads the compiled loops); the second is what a
    # session sees afterwards
    executor = make_executor("process", n_jobs=2)
    try:
        for attempt in ("first", "again"):
            start = time.perf_counter()
            parts = KnnShapley(k=5, executor=executor).fit(problem).values_
            seconds = time.perf_counter() - start
            same = "bit for bit" if np.array_equal(local, parts) else "NO"
            print(f"{'2 worker processes, ' + attempt:>22} {seconds:>8.1f} {same:>12}")
    finally:
        executor.close()


def _logs_against_tree(n_val: int) -> None:
    """The sweep as it runs (nodes up to the split in the log domain) against the segment tree alone
    at every node (the previous algorithm), same nodes, same run."""
    from cfdb.valuation import knn_join
    from cfdb.valuation.knn_join_sweep import join_values_sweep
    from cfdb.valuation.neighbors import Ranker

    print("\n10,000 facts × 200 dimension tuples: compiled paths vs segment tree only")
    print(f"{'K':>3} {'tree CPU s/row':>15} {'logs CPU s/row':>15} {'speed-up':>9} {'max diff':>9}")
    problem = _join_problem(10_000, 200, n_val)
    dims = problem.lineage.row_vars[:, 1]
    ranker = Ranker(problem.train)
    for k in (3, 5):
        args = (ranker, np.arange(10_000), dims, problem.labels, problem.val, problem.gain)
        _, nodes = knn_join.join_values(*args, 10_200, k, "soft")  # the rule join_values picks
        cpu = time.process_time()
        tree = join_values_sweep(*args, 10_200, k, "soft", nodes, split=0.0, direct=False)
        mid = time.process_time()
        logs = join_values_sweep(*args, 10_200, k, "soft", nodes)
        end = time.process_time()
        diff = float(np.abs(tree - logs).max() / np.abs(tree).max())
        a, b = (mid - cpu) / n_val, (end - mid) / n_val
        print(f"{k:>3} {a:>15.2f} {b:>15.2f} {a / b:>8.1f}× {diff:>9.1e}")


def _against_general() -> None:
    """The sweep against the division-free counting oracle it replaced for K >= 4."""
    from cfdb.valuation import knn_join
    from cfdb.valuation.knn_join_sweep import join_values_sweep
    from cfdb.valuation.neighbors import Ranker
    from cfdb.valuation.quadrature import shapley_nodes

    print("\n200 facts × 10 dimension tuples, one validation row: sweep vs counting oracle")
    print(f"{'K':>3} {'sweep CPU s':>12} {'oracle CPU s':>13} {'ratio':>7} {'max rel diff':>13}")
    problem = _join_problem(200, 10, 1)
    dims = problem.lineage.row_vars[:, 1]
    args = (Ranker(problem.train), np.arange(200), dims, problem.labels)
    args += (problem.val, problem.gain, 210)
    nodes = shapley_nodes(210)
    for k in (4, 5):
        cpu = time.process_time()
        fast = join_values_sweep(*args, k, "soft", nodes)
        mid = time.process_time()
        slow = knn_join.join_values_general(*args, k, "soft", nodes)
        end = time.process_time()
        diff = float(np.abs(fast - slow).max() / np.abs(slow).max())
        ratio = (end - mid) / (mid - cpu)
        print(f"{k:>3} {mid - cpu:>12.2f} {end - mid:>13.1f} {ratio:>6.0f}× {diff:>13.1e}")


def _star_problem(facts: int, dims: int, n_val: int, seed: int = 0) -> Problem:
    """A fact table (4 features) joined with three dimension tables of ``dims`` tuples (4
    features each); the label depends on a fact and a dimension feature."""
    rng = np.random.default_rng(seed)
    dim_of = rng.integers(0, dims, (facts, 3))
    centers = rng.normal(size=(3, dims, 4))
    train = np.hstack([rng.normal(size=(facts, 4))] + [centers[d][dim_of[:, d]] for d in range(3)])
    labels = (train[:, 0] + train[:, 4] + 0.5 * rng.normal(size=facts) > 0).astype(np.int64)
    pick = rng.integers(0, dims, (n_val, 3))
    val = np.hstack([rng.normal(size=(n_val, 4))] + [centers[d][pick[:, d]] for d in range(3)])
    y_val = (val[:, 0] + val[:, 4] > 0).astype(np.int64)
    gain = np.zeros((n_val, 2))
    gain[np.arange(n_val), y_val] = 1.0 / n_val
    rows = np.c_[np.arange(facts), facts + dim_of + dims * np.arange(3)]
    relation = np.repeat(np.arange(4), [facts, dims, dims, dims]).astype(np.int64)
    return Problem(train, labels, Lineage(facts + 3 * dims, relation, rows), val, gain)


def star(args: argparse.Namespace) -> None:
    from cfdb.valuation import KnnShapleySampled
    from tests.valuation import oracle

    facts, dims, n_val = 10_000, 200, args.star_val
    problem = _star_problem(facts, dims, n_val)
    print(
        f"\nStar join: {facts:,} facts × 3 dimension tables of {dims} tuples, {n_val:,} "
        "validation rows, K = 5, soft (goal < 120 s)"
    )
    try:
        KnnShapley(k=5).fit(problem)
    except Exception as exc:  # the refusal is a result too
        print(f"  knn_shapley over every tuple: refused ({str(exc)[:70]}...)")
    print(f"{'method':>34} {'wall s':>8} {'CPU s':>8} {'median SE':>10} {'max SE':>8}")
    # (a) exact, the fact table and one dimension table as players: the join sweep costs
    # seconds per validation row at K = 5, so a few rows are timed and extrapolated (*)
    rows = args.star_exact_val
    few = replace(problem, val=problem.val[:rows], gain=problem.gain[:rows], players=(0, 1))
    start, cpu = time.perf_counter(), time.process_time()
    exact = KnnShapley(k=5).fit(few)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    name = f"knn_shapley, players = fact + dim, {rows} rows"
    print(f"{name:>34} {wall:>8.1f} {cpu:>8.1f} {'exact':>10} {'':>8}")
    wall, cpu = wall * n_val / rows, cpu * n_val / rows
    print(
        f"{'the same, ' + f'{n_val:,} rows':>34} {wall:>7.0f}* {cpu:>7.0f}* {'exact':>10} {'':>8}"
    )
    for m in args.star_samples:
        start, cpu = time.perf_counter(), time.process_time()
        est = KnnShapleySampled(k=5, samples=m).fit(problem)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        scale = np.abs(est.values_).max()
        median, top = est.info_["std_error_median"] / scale, est.info_["std_error_max"] / scale
        name = f"knn_shapley_sampled, m = {m}"
        rare = est.info_["rarely_seen"]
        print(
            f"{name:>34} {wall:>8.1f} {cpu:>8.1f} {median:>10.1e} {top:>8.1e}"
            f"  ({rare:,} tuples mattered in < 10 samples)"
        )
    if args.star_processes:
        from cfdb.exec import make_executor

        m = args.star_samples[0]
        with make_executor("process", n_jobs=2) as executor:
            start, cpu = time.perf_counter(), time.process_time()
            there = KnnShapleySampled(k=5, samples=m, executor=executor).fit(problem)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        same = np.array_equal(there.values_, KnnShapleySampled(k=5, samples=m).fit(problem).values_)
        name = f"m = {m}, 2 worker processes"
        print(f"{name:>34} {wall:>8.1f} {cpu:>8.1f}  (values equal to one process: {same})")
        if args.star_exact_all:
            # the exact run over every validation row, measured, on both cores
            every = replace(problem, players=(0, 1))
            with make_executor("process", n_jobs=2) as executor:
                start = time.perf_counter()
                KnnShapley(k=5, executor=executor).fit(every)
                wall = time.perf_counter() - start
            name = f"exact, {n_val:,} rows, 2 processes"
            print(f"{name:>34} {wall:>8.1f} {'-':>8} {'exact':>10}")
    print("  (SE relative to the largest |value|, over all 10,600 tuples)")
    # the sampled estimate against the exact values where both run: the same rows, players
    est = KnnShapleySampled(k=5, samples=args.star_samples[-1]).fit(few)
    played = np.union1d(few.lineage.row_vars[:, 0], few.lineage.row_vars[:, 1])
    err = np.abs(est.values_ - exact.values_)[played]
    se, often = est.std_errors_[played], est.seen_[played] >= 10
    z = float(np.max(err[often] / se[often])) if often.any() else float("nan")
    print(
        f"  players = fact + dim on the {rows} rows, m = {args.star_samples[-1]}: "
        f"max |sampled − exact| / SE = {z:.2f} over the {int(often.sum())} tuples that "
        f"mattered in >= 10 samples; the other {int((~often).sum())}: max |error| "
        f"{err[~often].max(initial=0):.1e}, largest |value| {np.abs(exact.values_).max():.1e}"
    )
    # (c) a star join small enough to enumerate: the estimate's error in standard errors
    small = _star_problem(8, 2, 20, seed=1)
    variables = list(range(small.lineage.n_vars))
    row_vars = [list(r) for r in small.lineage.row_vars]
    truth, _, _ = oracle.shapley_of_players(
        small.train, small.labels, row_vars, variables, small.val, small.gain, 3, "soft"
    )
    print("\nSmall star join (8 facts × 3 dimension tables of 2, 14 tuples, K = 3, 20 rows):")
    print(f"{'samples':>8} {'max |error| / SE':>17} {'max |error|':>12} {'max |value|':>12}")
    for m in (100, 1000, 10_000):
        est = KnnShapleySampled(k=3, samples=m).fit(small)
        err = np.abs(est.values_ - truth)
        z = float(np.max(err / np.maximum(est.std_errors_, 1e-300)))
        print(f"{m:>8} {z:>17.2f} {err.max():>12.1e} {np.abs(truth).max():>12.1e}")


def growth(args: argparse.Namespace) -> None:
    print("\nGrowth with N facts (N/50 dimension tuples), CPU seconds per validation row")
    sizes = (10_000, 20_000, 40_000)
    print(f"{'K':>3} " + " ".join(f"{n:>9,}" for n in sizes) + f" {'exponent':>9}")
    for k in (1, 5):
        times = [_per_val_row(n, n // 50, k, args.growth_val)[1] for n in sizes]
        slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        print(f"{k:>3} " + " ".join(f"{t:>9.2f}" for t in times) + f" {slope:>9.2f}")


def _map_child(n: int, n_val: int, d: int) -> None:
    from cfdb.valuation import knn_map

    rng = np.random.default_rng(0)
    train = rng.normal(size=(n, d))
    labels = rng.integers(0, 2, n)
    val = rng.normal(size=(n_val, d))
    gain = np.zeros((n_val, 2))
    gain[np.arange(n_val), rng.integers(0, 2, n_val)] = 1.0 / n_val
    start = time.perf_counter()
    values = knn_map.map_values(train, labels, val, gain, 5, n_jobs=2)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "sum": float(values.sum())}))


def map_memory(args: argparse.Namespace) -> None:
    print("\nMap pipeline, K = 5, d = 20 (goal: peak < 4 GB, time linear in V)")
    print(f"{'N':>10} {'V':>7} {'seconds':>9} {'s per 1k V':>11} {'peak GB':>8}")
    for n, n_val in ((1_000_000, 1_000), (1_000_000, args.map_val)):
        out = subprocess.run(
            [sys.executable, str(HERE), "--child", f"{n},{n_val},20"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        per = got["seconds"] / n_val * 1000
        print(f"{n:>10,} {n_val:>7,} {got['seconds']:>9.1f} {per:>11.1f} {got['peak_gb']:>8.2f}")


SECTIONS = {"readme": readme, "join": join, "star": star, "growth": growth, "map": map_memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="readme,join,star,growth")
    parser.add_argument("--readme-val", type=int, default=10, help="holdout rows at K = 10")
    parser.add_argument("--join-val", type=int, default=1, help="validation rows timed")
    parser.add_argument("--growth-val", type=int, default=1)
    parser.add_argument("--star-val", type=int, default=1000, help="star join validation rows")
    parser.add_argument("--star-exact-val", type=int, default=20, help="rows timed, exact star")
    parser.add_argument(
        "--star-exact-all",
        action="store_true",
        help="with --star-processes: also the exact run over every row on 2 worker processes",
    )
    parser.add_argument(
        "--star-processes", action="store_true", help="also the first m on 2 worker processes"
    )
    parser.add_argument(
        "--star-samples",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[64, 256],
        help="sample counts of knn_shapley_sampled on the star join",
    )
    parser.add_argument("--map-val", type=int, default=10_000)
    parser.add_argument("--general", action="store_true", help="also the counting oracle (slow)")
    parser.add_argument("--full", type=int, default=0, help="also time N validation rows, K = 5")
    parser.add_argument("--k10", action="store_true", help="also K = 10 on the 10,000-fact join")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _map_child(*(int(x) for x in args.child.split(",")))
        return
    for name in args.sections.split(","):
        SECTIONS[name.strip()](args)


if __name__ == "__main__":
    main()
