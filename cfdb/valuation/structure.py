"""Provenance of training rows as Boolean variables, and the canonical pipeline classes.

Every base tuple is a variable; a training row is present when its provenance polynomial
is true. DataScope section 4.2 names three *canonical* pipelines, recognized here from the
polynomials alone:

* **map** — every row is one variable and every variable one row (``p(t_i) = a_i``);
* **fork** — every row is one variable, a variable may own several rows (data providers,
  augmentation);
* **one-to-many join** — a row is a product ``a_f · a_d`` of a *fact* variable and a
  *dimension* (group) variable, where each fact belongs to exactly one dimension tuple
  (a star join with one dimension table). Rows with only a fact or only a dimension
  variable (a ``UNION ALL`` of the fact table and the join, say) fit too.

A row with no variable at all is *always present*: a constant row, or (after
:func:`restrict_players`) a row made only of *exogenous* tuples, those of relations that are
not players (the endogenous/exogenous facts of the Shapley-of-tuples literature; Livshits et
al., ICDT 2020). Such rows are in every coalition; the pipeline counts them in ``constants``.

Anything else (a sum from a deduplicating ``UNION``, three or more tuples per row, a
many-to-many join) is ``general``, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

MAP, FORK, JOIN, GENERAL = "map", "fork", "join", "general"


@dataclass(frozen=True)
class Lineage:
    """Training-row provenance over variables.

    Attributes:
        n_vars: number of variables (base tuples appearing in some row).
        var_relation: relation code of each variable.
        row_vars: for rows with one monomial: the monomial's variables (M × J, -1 padded).
        sums: row indices whose polynomial has more than one distinct monomial.
    """

    n_vars: int
    var_relation: np.ndarray
    row_vars: np.ndarray
    sums: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int:
        return int(self.row_vars.shape[0])


def restrict_players(lineage: Lineage, players: Sequence[int] | None) -> Lineage:
    """``lineage`` with only the variables of relations ``players`` left in the monomials.

    The other relations' tuples are *exogenous*: always present, so they drop out of every
    monomial (``1 · a = a``). A row left with no variable is always present. ``None`` keeps
    every relation.
    """
    if players is None:
        return lineage
    keep = np.isin(lineage.var_relation, np.asarray(list(players), dtype=np.int64))
    rv = lineage.row_vars.copy()
    valid = rv >= 0
    rv[valid & ~keep[np.where(valid, rv, 0)]] = -1
    # keep the player variables first in each row (the -1 padding last)
    rv = -np.sort(-rv, axis=1)
    return Lineage(lineage.n_vars, lineage.var_relation, rv, lineage.sums)


def monomial_vars(lineage: Lineage) -> np.ndarray:
    """Each row's distinct variables, sorted, -1 padded at the front (``a·a = a``)."""
    rv = np.sort(lineage.row_vars, axis=1)
    if rv.shape[1] > 1:
        rv[:, 1:][rv[:, 1:] == rv[:, :-1]] = -1
        rv = np.sort(rv, axis=1)
    return rv


@dataclass(frozen=True)
class Pipeline:
    """A canonical pipeline recognized from a :class:`Lineage`.

    Attributes:
        kind: ``map``, ``fork``, ``join`` or ``general``.
        row_fact: per training row, its fact variable (-1: none). For map and fork pipelines
            this is -1 and ``row_group`` holds the row's variable.
        row_group: per training row, its group (dimension) variable (-1: none).
        n_vars: number of variables.
        fact_relation: relation code of the fact variables (join), else -1.
        group_relation: relation code of the group variables, else -1.
        reason: why the pipeline is ``general``.
        constants: rows with no variable (always present); their ``row_fact`` and
            ``row_group`` are -1.
    """

    kind: str
    row_fact: np.ndarray
    row_group: np.ndarray
    n_vars: int
    fact_relation: int = -1
    group_relation: int = -1
    reason: str = ""
    constants: int = 0

    @property
    def players(self) -> np.ndarray:
        """The variables that occur in some row, sorted."""
        return np.union1d(self.row_fact[self.row_fact >= 0], self.row_group[self.row_group >= 0])


def _general(lineage: Lineage, reason: str) -> Pipeline:
    empty = np.full(lineage.n_rows, -1, dtype=np.int64)
    return Pipeline(GENERAL, empty, empty, lineage.n_vars, reason=reason)


def classify(lineage: Lineage) -> Pipeline:
    """The canonical class of ``lineage`` (DataScope section 4.2)."""
    if lineage.sums:
        return _general(
            lineage,
            f"training row {lineage.sums[0]} has a provenance sum, a disjunction (a deduplicating UNION "
            "merged rows from different tuples); write UNION ALL",
        )
    # a·a = a: drop repeated variables inside a monomial (a self-join on one tuple)
    rv = monomial_vars(lineage)
    counts = (rv >= 0).sum(axis=1)
    if lineage.n_rows and counts.max() > 2:
        row = int(np.argmax(counts))
        return _general(
            lineage,
            f"training row {row} joins {int(counts[row])} base tuples (a star join with "
            "several dimension tables); exact KNN-Shapley over such a join is #P-hard in general (it "
            "contains the Shapley value of tuples for the non-hierarchical query "
            "R(x), S(x, y), T(y); Livshits et al., ICDT 2020). Nearest supported shapes: value "
            "the fact table and one dimension table, holding the others fixed, with "
            "WITH (players = '<fact>, <one dim>') (exact), or estimate the values of every "
            "tuple with USING knn_shapley_sampled (Monte Carlo, with standard errors)",
        )
    constants = int(np.sum(counts == 0))
    last = rv[:, -1]
    if lineage.n_rows == 0 or counts.max() <= 1:
        per_var = np.bincount(last[last >= 0], minlength=lineage.n_vars)
        kind = MAP if per_var.max(initial=0) <= 1 else FORK
        none = np.full(lineage.n_rows, -1, dtype=np.int64)
        return Pipeline(kind, none, last.astype(np.int64), lineage.n_vars, constants=constants)
    pipeline = _classify_join(lineage, rv, counts)
    return replace(pipeline, constants=constants) if pipeline.kind == JOIN else pipeline


def _classify_join(lineage: Lineage, rv: np.ndarray, counts: np.ndarray) -> Pipeline:
    rel = lineage.var_relation
    two = counts == 2
    a, b = rv[two, -2], rv[two, -1]
    ra, rb = rel[a], rel[b]
    pairs = {(int(x), int(y)) for x, y in zip(np.minimum(ra, rb), np.maximum(ra, rb))}
    if len(pairs) != 1 or next(iter(pairs))[0] == next(iter(pairs))[1]:
        return _general(
            lineage,
            "training rows join tuples of more than one pair of relations, or a relation "
            "with itself (a self-join); exact KNN-Shapley handles one fact and one dimension "
            "table. Nearest supported shape: FROM fact JOIN dim ON fact.key = dim.key, "
            "reading each table once",
        )
    r1, r2 = next(iter(pairs))
    # orient every pair as (r1 variable, r2 variable)
    x = np.where(ra == r1, a, b)
    y = np.where(ra == r1, b, a)

    def unique_partner(leaf: np.ndarray, partner: np.ndarray) -> bool:
        order = np.lexsort((partner, leaf))
        ls, ps = leaf[order], partner[order]
        same_leaf = ls[1:] == ls[:-1]
        return bool(np.all(ps[1:][same_leaf] == ps[:-1][same_leaf]))

    x_leaf, y_leaf = unique_partner(x, y), unique_partner(y, x)
    if not (x_leaf or y_leaf):
        return _general(
            lineage,
            "the join is many-to-many (a tuple of each relation meets several of the other), "
            "where a row's presence depends on two tuples shared with other rows; nearest "
            "supported shape: a one-to-many join on the dimension table's key; "
            "exact KNN-Shapley handles one-to-many joins",
        )
    if x_leaf and y_leaf:  # one-to-one: the relation with more tuples plays the fact
        x_leaf = len(np.unique(x)) >= len(np.unique(y))
    fact_rel, group_rel = (r1, r2) if x_leaf else (r2, r1)
    facts, groups = (x, y) if x_leaf else (y, x)
    row_fact = np.full(lineage.n_rows, -1, dtype=np.int64)
    row_group = np.full(lineage.n_rows, -1, dtype=np.int64)
    row_fact[two] = facts
    row_group[two] = groups
    one = np.nonzero(counts == 1)[0]
    single = rv[one, -1]
    single_rel = rel[single]
    if np.any((single_rel != fact_rel) & (single_rel != group_rel)):
        return _general(lineage, "training rows mix a join with tuples of a third relation")
    is_fact = single_rel == fact_rel
    row_fact[one[is_fact]] = single[is_fact]
    row_group[one[~is_fact]] = single[~is_fact]
    # a fact must sit in one group (or none) across all its rows
    has_fact = row_fact >= 0
    f, g = row_fact[has_fact], row_group[has_fact]
    order = np.lexsort((g, f))
    fs, gs = f[order], g[order]
    same = fs[1:] == fs[:-1]
    if np.any(gs[1:][same] != gs[:-1][same]):
        return _general(lineage, "a fact tuple appears both joined and not joined")
    return Pipeline(
        JOIN,
        row_fact,
        row_group,
        lineage.n_vars,
        fact_relation=int(fact_rel),
        group_relation=int(group_rel),
    )
