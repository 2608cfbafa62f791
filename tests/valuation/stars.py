"""Random small star joins for the players and sampled-estimate tests: a fact table joined
with up to three dimension tables, every training row the product of one fact tuple and one
tuple of each dimension table (a dimension key may be NULL: the row lacks that tuple)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfdb.valuation import Lineage


@dataclass(frozen=True)
class Star:
    """Variables: facts first, then each dimension table's tuples (relation codes 0, 1, ...)."""

    row_vars: list[list[int]]
    n_vars: int
    relation: np.ndarray
    train: np.ndarray
    labels: np.ndarray
    val: np.ndarray
    y_val: np.ndarray
    gain: np.ndarray

    def lineage(self) -> Lineage:
        width = max(len(r) for r in self.row_vars)
        rv = np.full((len(self.row_vars), width), -1, dtype=np.int64)
        for i, r in enumerate(self.row_vars):
            rv[i, : len(r)] = r
        return Lineage(self.n_vars, self.relation, rv)

    def of(self, codes: tuple[int, ...]) -> list[int]:
        """The variables of relations ``codes``."""
        return [int(v) for v in np.nonzero(np.isin(self.relation, codes))[0]]


def random_star(
    rng: np.random.Generator,
    facts: int,
    dims: tuple[int, ...],
    *,
    n_val: int = 3,
    n_classes: int = 2,
    missing: float = 0.0,
    rows_per_fact: int = 1,
) -> Star:
    """A star join with ``facts`` fact tuples and dimension tables of ``dims`` tuples.

    ``missing``: the probability that a fact has no tuple of a dimension table (an outer
    join); ``rows_per_fact``: training rows per fact tuple (at most).
    """
    offsets = np.cumsum([facts, *dims])
    row_vars = []
    for f in range(facts):
        vars_f = [f]
        for d, size in enumerate(dims):
            if rng.random() >= missing:
                vars_f.append(int(offsets[d] + rng.integers(0, size)))
        for _ in range(int(rng.integers(1, rows_per_fact + 1))):
            row_vars.append(vars_f)
    relation = np.repeat(np.arange(len(dims) + 1), [facts, *dims]).astype(np.int64)
    n = len(row_vars)
    train = rng.normal(size=(n, 2))
    labels = rng.integers(0, n_classes, n)
    val = rng.normal(size=(n_val, 2))
    y_val = rng.integers(0, n_classes, n_val)
    gain = np.zeros((n_val, n_classes))
    gain[np.arange(n_val), y_val] = 1.0 / n_val
    return Star(row_vars, int(offsets[-1]), relation, train, labels, val, y_val, gain)
