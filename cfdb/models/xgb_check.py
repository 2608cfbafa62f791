"""Checks of XGBoost model bytes before XGBoost's native parser sees them.

XGBoost's C++ loader trusts its input: empty bytes abort the process ("terminate called
without an active exception"), a length field of a truncated UBJSON file makes it allocate
without bound or spin. :func:`check_booster_bytes` reads the whole document in Python first
— UBJSON (the format of ``save_raw("ubj")``) or JSON — checking every length and count
against the bytes that remain and the nesting depth, and that the document is an XGBoost
model (an object with a ``learner`` holding a ``gradient_booster`` and an ``objective``).
Only bytes that pass are handed to XGBoost. :func:`first_line` keeps the first line of an
``XGBoostError`` (the rest is a C++ backtrace).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from cfdb.errors import CfdbSchemaError

#: Deepest nesting of containers in a model document (XGBoost's own are < 10 deep).
MAX_DEPTH = 64

_INT_MARKERS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q"}
_FIXED = {**_INT_MARKERS, b"d": ">f", b"D": ">d", b"C": ">c"}


class _Bad(Exception):
    pass


class _Reader:
    """A bounds-checked UBJSON reader (draft 12, as XGBoost writes it)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Bad(f"a length of {n} bytes runs past the end at offset {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def marker(self) -> bytes:
        while True:
            m = self.take(1)
            if m != b"N":  # no-op
                return m

    def length(self, marker: bytes | None = None) -> int:
        marker = marker or self.marker()
        fmt = _INT_MARKERS.get(marker)
        if fmt is None:
            raise _Bad(f"expected a length at offset {self.pos - 1}, found {marker!r}")
        n = int(struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0])
        if n < 0 or n > len(self.data) - self.pos:
            raise _Bad(f"a length or count of {n} exceeds the {len(self.data)} bytes given")
        return n

    def value(self, marker: bytes, depth: int) -> Any:
        if marker in _FIXED:
            fmt = _FIXED[marker]
            return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        if marker in (b"S", b"H"):
            return self.take(self.length()).decode("utf-8", errors="strict")
        if marker == b"Z":
            return None
        if marker in (b"T", b"F"):
            return marker == b"T"
        if marker in (b"[", b"{"):
            if depth >= MAX_DEPTH:
                raise _Bad(f"containers nest more than {MAX_DEPTH} deep")
            return self.container(marker == b"{", depth + 1)
        raise _Bad(f"unknown UBJSON marker {marker!r} at offset {self.pos - 1}")

    def container(self, is_object: bool, depth: int) -> Any:
        typed: bytes | None = None
        count: int | None = None
        nxt = self.marker()
        if nxt == b"$":
            typed = self.take(1)
            nxt = self.marker()
            if nxt != b"#":
                raise _Bad("a typed container without a count")
        if nxt == b"#":
            count = self.length()
            if typed in _FIXED:
                # Typed numeric arrays are read as a block, after checking their size.
                size = struct.calcsize(_FIXED[typed])
                if count * size > len(self.data) - self.pos:
                    raise _Bad(f"an array of {count} items runs past the end")
            nxt = b""
        out: Any = {} if is_object else []
        k = 0
        while True:
            if count is not None:
                if k == count:
                    break
            else:
                if nxt == (b"}" if is_object else b"]"):
                    break
            key = None
            if is_object:
                key_len = self.length(nxt or None)
                key = self.take(key_len).decode("utf-8", errors="strict")
                nxt = b""
            m = typed or (nxt or self.marker())
            item = self.value(m, depth)
            if is_object:
                out[key] = item
            else:
                out.append(item)
            k += 1
            nxt = self.marker() if count is None else b""
        return out


def _decode(blob: bytes) -> Any:
    text_start = blob.lstrip()[:1]
    if text_start == b"{" and blob.lstrip()[1:2] in (b'"', b" ", b"\n", b"\r", b"\t", b"}"):
        try:
            return json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _Bad(f"not valid JSON: {exc}") from None
    reader = _Reader(blob)
    if reader.marker() != b"{":
        raise _Bad("a model document starts with '{'")
    doc = reader.container(True, 1)
    if reader.pos != len(blob):
        raise _Bad(f"{len(blob) - reader.pos} bytes follow the model document")
    return doc


def check_booster_bytes(blob: bytes, what: str = "stored xgboost model") -> None:
    """Refuse bytes that are not a complete XGBoost model document.

    Raises:
        CfdbSchemaError: empty, truncated, malformed, or not an XGBoost model.
    """
    if not blob:
        raise CfdbSchemaError(f"{what} cannot be read: it is empty")
    try:
        doc = _decode(bytes(blob))
    except (_Bad, UnicodeDecodeError, struct.error) as exc:
        raise CfdbSchemaError(f"{what} cannot be read: {exc}") from None
    learner = doc.get("learner") if isinstance(doc, dict) else None
    if not isinstance(learner, dict) or not isinstance(learner.get("gradient_booster"), dict):
        raise CfdbSchemaError(f"{what} cannot be read: it is not an XGBoost model")
    objective = learner.get("objective")
    if not isinstance(objective, dict) or not isinstance(objective.get("name"), str):
        raise CfdbSchemaError(f"{what} cannot be read: it names no objective")
    try:
        _check_model(learner)
    except (_Bad, KeyError, TypeError, ValueError, IndexError) as exc:
        detail = str(exc) if isinstance(exc, _Bad) else f"malformed field {exc}"
        raise CfdbSchemaError(f"{what} cannot be read: {detail}") from None


def _int(value: Any) -> int:
    """An integer field (XGBoost stores parameters as strings)."""
    if isinstance(value, bool):
        raise _Bad(f"expected an integer, found {value!r}")
    return int(value)


def _check_model(learner: dict[str, Any]) -> None:
    """The invariants XGBoost's loader assumes but does not check: array sizes agree with
    the declared counts, child and feature indices are in range, and children come after
    their parent (no cycles)."""
    num_feature = _int(learner["learner_model_param"]["num_feature"])
    booster = learner["gradient_booster"]
    name = booster.get("name")
    if name == "gblinear":
        weights = booster["model"]["weights"]
        if not isinstance(weights, list) or not weights:
            raise _Bad("a linear model without weights")
        return
    model = booster["model"] if name == "gbtree" else booster["gbtree"]["model"]
    trees = model["trees"]
    if not isinstance(trees, list):
        raise _Bad("trees is not a list")
    if _int(model["gbtree_model_param"]["num_trees"]) != len(trees):
        raise _Bad("the number of trees does not match num_trees")
    if len(model.get("tree_info", trees)) != len(trees):
        raise _Bad("tree_info does not match the trees")
    for k, tree in enumerate(trees):
        _check_tree(tree, num_feature, k)


_PER_NODE = (
    "left_children",
    "right_children",
    "parents",
    "split_conditions",
    "split_indices",
    "default_left",
    "loss_changes",
    "sum_hessian",
    "split_type",
)


def _check_tree(tree: dict[str, Any], num_feature: int, k: int) -> None:
    n = _int(tree["tree_param"]["num_nodes"])
    if n < 1:
        raise _Bad(f"tree {k} has {n} nodes")
    for field in _PER_NODE:
        if len(tree[field]) != n:
            raise _Bad(f"tree {k}: {field} has {len(tree[field])} entries for {n} nodes")
    if len(tree["base_weights"]) < n:
        raise _Bad(f"tree {k}: base_weights is too short")
    left, right = tree["left_children"], tree["right_children"]
    for node in range(n):
        lc, rc = _int(left[node]), _int(right[node])
        if (lc == -1) != (rc == -1):
            raise _Bad(f"tree {k}, node {node}: one child missing")
        if lc == -1:
            continue
        if not (node < lc < n and node < rc < n):
            raise _Bad(f"tree {k}, node {node}: a child index is out of range")
        if not 0 <= _int(tree["split_indices"][node]) < max(num_feature, 1):
            raise _Bad(f"tree {k}, node {node}: split feature out of range")
        if _int(tree["parents"][lc]) != node or _int(tree["parents"][rc]) != node:
            raise _Bad(f"tree {k}, node {node}: children and parents disagree")
    nodes, segments, sizes = (
        tree.get("categories_nodes", []),
        tree.get("categories_segments", []),
        tree.get("categories_sizes", []),
    )
    if not len(nodes) == len(segments) == len(sizes):
        raise _Bad(f"tree {k}: categorical split arrays disagree")
    total = len(tree.get("categories", []))
    for node, seg, size in zip(nodes, segments, sizes, strict=True):
        if not (0 <= _int(node) < n and _int(seg) >= 0 and _int(seg) + _int(size) <= total):
            raise _Bad(f"tree {k}: a categorical split is out of range")


def first_line(exc: BaseException) -> str:
    """The first line of an XGBoost error (dropping the C++ backtrace)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
