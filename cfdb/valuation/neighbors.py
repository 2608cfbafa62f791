"""Ranking training rows by distance to validation rows: BLAS distances, packed sort keys.

Every KNN-Shapley algorithm starts by ordering the training rows by Euclidean distance to a
validation row, ties broken by training row order. This module does that in chunks of
validation rows, about as fast as sorting the distances alone:

* squared distances ``‖x‖² − 2·v·x + ‖v‖²`` come from one matrix product of augmented
  matrices ``[−2v, 1, ‖v‖²]·[x, ‖x‖², 1]ᵀ`` (BLAS);
* a non-negative double sorts like its bit pattern read as an unsigned integer. Each
  distance keeps its top bits (sign cleared: the formula's rounding can give ``−0.0…01``
  for a zero distance) and gets, in its low ``b`` bits, the training row index — and
  optionally the row's label code below it. One *value* sort of these 64-bit keys (SIMD, no
  argsort) yields the order, the indices and the labels at once, ties broken by row index.

The price of packing: distances are compared with ``52 − b`` mantissa bits, ``b`` being
``⌈log2 N⌉`` plus the label bits (e.g. 31 bits, a relative resolution of 5·10⁻¹⁰, for a
million rows with two classes). Distances closer than that count as ties and fall back to
row order; the distance formula's own rounding error is usually larger.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

_ALL = 0xFFFFFFFFFFFFFFFF
_NO_SIGN = 0x7FFFFFFFFFFFFFFF


class Ranker:
    """Orders the training rows by distance to validation rows.

    Args:
        train: the featurized training rows (N × d), dense or scipy sparse.
        labels: optional class codes ``0..C-1`` of the training rows, packed into the keys
            (see :meth:`packed`).
        n_classes: the number of classes ``C`` (required with ``labels``).
    """

    def __init__(
        self,
        train: np.ndarray | sp.spmatrix,
        labels: np.ndarray | None = None,
        n_classes: int = 0,
    ) -> None:
        n = train.shape[0]
        self.n = n
        self.index_bits = max(1, math.ceil(math.log2(max(n, 2))))
        self.label_bits = 0 if labels is None else max(1, math.ceil(math.log2(max(n_classes, 2))))
        bits = self.index_bits + self.label_bits
        if bits > 40:
            raise ValueError(f"too many training rows to rank: {n}")
        self.index_mask = np.uint64((1 << self.index_bits) - 1)
        self.label_mask = np.uint64((1 << self.label_bits) - 1)
        self.label_shift = np.uint64(self.label_bits)
        self.high = np.uint64(_NO_SIGN & ~((1 << bits) - 1) & _ALL)
        tag = np.arange(n, dtype=np.uint64) << self.label_shift
        if labels is not None:
            tag |= np.asarray(labels, dtype=np.uint64)
        self._tag = tag
        self.sparse = sp.issparse(train)
        if self.sparse:
            x = sp.csr_matrix(train, dtype=np.float64)
            sq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
            self._xa = sp.hstack([x, sq[:, None], np.ones((n, 1))], format="csr").T.tocsr()
        else:
            x = np.asarray(train, dtype=np.float64)
            d = x.shape[1]
            xa = np.empty((d + 2, n))
            xa[:d] = x.T
            np.einsum("ji,ji->i", xa[:d], xa[:d], out=xa[d])
            xa[d + 1] = 1.0
            self._xa = xa

    def _augment(self, val: np.ndarray | sp.spmatrix) -> np.ndarray | sp.spmatrix:
        if sp.issparse(val):
            v = sp.csr_matrix(val, dtype=np.float64)
            sq = np.asarray(v.multiply(v).sum(axis=1)).ravel()
            return sp.hstack([-2.0 * v, np.ones((v.shape[0], 1)), sq[:, None]], format="csr")
        v = np.asarray(val, dtype=np.float64)
        sq = np.einsum("ij,ij->i", v, v)
        return np.hstack([-2.0 * v, np.ones((len(v), 1)), sq[:, None]])

    def _products(self, val: np.ndarray | sp.spmatrix, out: np.ndarray | None) -> np.ndarray:
        va = self._augment(val)
        if self.sparse or sp.issparse(va):
            d = va @ self._xa
            d = d.toarray() if sp.issparse(d) else np.asarray(d)
            if out is not None:
                out[...] = d
                return out
            return np.ascontiguousarray(d, dtype=np.float64)
        if out is not None:
            return np.dot(va, self._xa, out=out)
        return va @ self._xa

    def squared_distances(
        self, val: np.ndarray | sp.spmatrix, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Squared Euclidean distances (rows of ``val`` × training rows), clamped at 0.

        Args:
            val: validation rows.
            out: an optional C-contiguous float64 buffer of shape (len(val), N) to fill.
        """
        d = self._products(val, out)
        np.maximum(d, 0.0, out=d)
        return d

    def packed(self, val: np.ndarray | sp.spmatrix, out: np.ndarray | None = None) -> np.ndarray:
        """Unsorted sort keys (B × N, uint64): distance bits | row index | label code.

        Sorting a row of keys orders the training rows; :meth:`indices` and :meth:`labels`
        read them back.
        """
        keys = self._products(val, out).view(np.uint64)
        np.bitwise_and(keys, self.high, out=keys)
        np.bitwise_or(keys, self._tag, out=keys)
        return keys

    def indices(self, keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The row indices of (sorted) keys; ``out`` may be ``keys`` itself (in place)."""
        if self.label_bits:
            out = np.right_shift(keys, self.label_shift, out=out)
            np.bitwise_and(out, self.index_mask, out=out)
        else:
            out = np.bitwise_and(keys, self.index_mask, out=out)
        return out.view(np.int64)

    def labels(self, keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The label codes packed into (sorted) keys, as uint64."""
        return np.bitwise_and(keys, self.label_mask, out=out)

    def order(self, val: np.ndarray | sp.spmatrix, out: np.ndarray | None = None) -> np.ndarray:
        """Training row indices by increasing distance, per validation row (B × N, int64).

        Ties (distances equal at the packed resolution) break by training row index.

        Args:
            val: validation rows.
            out: an optional float64 buffer (len(val) × N), reused for the result.
        """
        keys = self.packed(val, out)
        keys.sort(axis=1)
        return self.indices(keys, out=keys)

    def nearest(self, val: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
        """The ``k`` nearest training rows of each validation row, nearest first (B × k)."""
        k = min(k, self.n)
        keys = self.packed(val)
        if k < self.n:
            keys = np.partition(keys, k - 1, axis=1)[:, :k]
        keys = np.sort(keys, axis=1)
        return self.indices(keys.copy())


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def chunk_rows(n_train: int, budget_bytes: int = 64 * 2**20) -> int:
    """How many validation rows to rank at once so one B × N float64 array fits the budget."""
    return max(1, min(4096, budget_bytes // (8 * max(n_train, 1))))
