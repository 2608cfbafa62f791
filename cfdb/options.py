"""Declared options of every cfdb statement: type, range, default and meaning.

One table per statement (:data:`SPECS`, keyed by the statement node's class name) says which
``WITH (...)`` options it takes. :func:`check` validates the values of a parsed statement
before its handler runs: a value of the wrong type, out of range, not finite, or not one of
the choices is refused with a :class:`~cfdb.errors.CfdbOptionError` pointing at the option's
text. Integral floats (``n = 2.0``) are normalized to ``int`` in place. Which option *names*
a statement accepts stays with its handler (some pass unknown names on to a generator or a
model kind); this table also drives the limits in ``docs/errors.md`` and the shell's
completion (:func:`option_names`).

The bounds are the limits cfdb promises to check before any work starts (e.g. at most
``MAX_CFS_PER_PREDICTION`` counterfactuals per prediction), so that a huge number is refused
with the size it asked for instead of exhausting memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cfdb.errors import CfdbOptionError
from cfdb.grid.designs import MAX_EXHAUSTIVE_LIMIT, MAX_EXHAUSTIVE_UNITS

#: Largest ``n`` (counterfactuals per prediction) of a FOREACH.
MAX_CFS_PER_PREDICTION = 10_000
#: Largest per-prediction ``time_limit`` of a FOREACH, in seconds (one day).
MAX_TIME_LIMIT = 86_400.0
#: Largest number of worker processes an option may ask for.
MAX_JOBS = 1024
#: Largest seed (scikit-learn and NumPy legacy seeds are 32-bit).
MAX_SEED = 2**32 - 1
#: Largest number of trees / boosting rounds / iterations a model option may ask for.
MAX_ESTIMATORS = 100_000
#: Largest ``max_iter`` of a model.
MAX_ITER = 10_000_000
#: Largest ``max_depth`` of a tree model.
MAX_DEPTH = 1_000
#: Largest ``k`` of KNN-Shapley and ``n_neighbors`` of a KNN model.
MAX_NEIGHBORS = 1_000_000


@dataclass(frozen=True)
class Option:
    """One option of a statement.

    Attributes:
        name: the option's name (lower case).
        type: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``, compared
            case-insensitively), ``names`` (a name or a list of names), ``jobs`` (a worker
            count: 1 to ``MAX_JOBS``, or -1 for one per core) or ``any``.
        doc: what it does (one line).
        default: the value used when the option is absent (documentation only).
        min: smallest allowed number (inclusive), or ``None``.
        max: largest allowed number (inclusive), or ``None``.
        positive: the number must be > 0 (for floats, where ``min`` would be inclusive).
        choices: the allowed values of a ``choice`` option.
        nullable: ``NULL`` is allowed (means the default).
    """

    name: str
    type: str
    doc: str = ""
    default: Any = None
    min: float | None = None
    max: float | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        """What a valid value looks like, for messages and docs."""
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return "a string"
        if self.type == "names":
            return "a name or a list of names"
        if self.type == "jobs":
            return f"an integer from 1 to {MAX_JOBS:,}, or -1 (one per core)"
        if self.type in ("int", "float"):
            noun = "an integer" if self.type == "int" else "a number"
            if self.positive and self.max is None:
                return f"a positive {'integer' if self.type == 'int' else 'number'}"
            if self.positive:
                return f"{noun} > 0 and <= {_fmt(self.max)}"
            if self.min is not None and self.max is not None:
                return f"{noun} from {_fmt(self.min)} to {_fmt(self.max)}"
            if self.min is not None:
                return f"{noun} >= {_fmt(self.min)}"
            if self.max is not None:
                return f"{noun} <= {_fmt(self.max)}"
            return f"a finite {'integer' if self.type == 'int' else 'number'}"
        return "any value"

    def validate(self, value: Any) -> Any:
        """``value`` checked (and normalized); raises ``ValueError`` with the reason."""
        if value is None:
            if self.nullable or self.type == "any":
                return None
            raise ValueError(self._bad(value))
        kind = self.type
        if kind == "any":
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(self._bad(value))
        if kind == "str":
            if isinstance(value, str):
                return value
            raise ValueError(self._bad(value))
        if kind == "choice":
            if isinstance(value, str) and value.lower() in self.choices:
                return value
            raise ValueError(self._bad(value))
        if kind == "names":
            items = value if isinstance(value, tuple) else (value,)
            if all(isinstance(v, str) and v for v in items):
                return value
            raise ValueError(self._bad(value))
        if kind == "jobs":
            number = _number(value)
            if (
                number is None
                or number != int(number)
                or not (number == -1 or 1 <= number <= MAX_JOBS)
            ):
                raise ValueError(self._bad(value))
            return int(number)
        if kind in ("int", "float"):
            number = _number(value)
            if number is None or (kind == "int" and number != int(number)):
                raise ValueError(self._bad(value))
            if kind == "int":
                number = int(number)
            low_ok = self.min is None or number >= self.min
            high_ok = self.max is None or number <= self.max
            if not (low_ok and high_ok and (not self.positive or number > 0)):
                raise ValueError(self._bad(value))
            return number
        raise AssertionError(f"unknown option type {kind!r}")

    def _bad(self, value: Any) -> str:
        shown = repr(value) if not isinstance(value, float) else _fmt(value)
        if isinstance(value, tuple):
            shown = "(" + ", ".join(repr(v) for v in value) + ")"
        return f"{self.name} must be {self.describe()}, not {shown}"


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if float(x) == int(x) and abs(x) >= 10_000:
        return f"{int(x):,}"
    return f"{int(x)}" if float(x) == int(x) else f"{x:g}"


def _number(value: Any) -> float | int | None:
    """A finite int or float, or ``None`` (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- the tables -------------------------------------------------------------------------------
def _table(*options: Option) -> dict[str, Option]:
    return {o.name: o for o in options}


_SEED = Option("seed", "int", "random seed", 0, min=0, max=MAX_SEED)
# Executors (cfdb.exec) check executor and address, and n_jobs again, with the same rule.
_N_JOBS = Option("n_jobs", "jobs", "worker processes", 1)
_EXECUTOR = Option("executor", "str", "where the work runs: local, process or ray", "local")
_ADDRESS = Option("address", "str", "the Ray cluster to join ('auto', 'host:port')", nullable=True)
_MODEL_SIDE = (
    Option("label", "str", "the label column"),
    Option("features", "names", "the feature columns"),
    Option("encoding", "choice", "categorical encoding", "onehot", choices=("onehot", "target")),
    _SEED,
)
#: Hyper-parameters of model kinds that size the work (checked wherever a model is trained).
MODEL_PARAMS = _table(
    Option("n_estimators", "int", "trees or boosting rounds", min=1, max=MAX_ESTIMATORS),
    Option("max_iter", "int", "solver iterations", min=1, max=MAX_ITER),
    Option("max_depth", "int", "tree depth", min=0, max=MAX_DEPTH, nullable=True),
    Option("n_neighbors", "int", "neighbours of a KNN model", min=1, max=MAX_NEIGHBORS),
    Option("random_state", "int", "random seed", min=0, max=MAX_SEED, nullable=True),
)
QUERY_OPTIONS = _table(
    Option("n", "int", "counterfactuals per prediction", 1, min=1, max=MAX_CFS_PER_PREDICTION),
    Option(
        "distance", "choice", "distance to minimize", "tabular", choices=("tabular", "l0", "l1")
    ),
    Option(
        "time_limit",
        "float",
        "seconds per prediction",
        10.0,
        positive=True,
        max=MAX_TIME_LIMIT,
    ),
    _SEED,
    _N_JOBS,
    _EXECUTOR,
    _ADDRESS,
    Option("target", "any", "the class a CF must reach (multi-class models)"),
    Option("diversity", "float", "weight of diversity among n > 1 CFs", min=0, max=1e6),
    Option("min_change", "float", "regression: smallest change of the output", positive=True),
    Option("pool", "any", "the CF pool of the nearest generator"),
    Option("direction", "choice", "regression: direction", "any", choices=("up", "down", "any")),
)
BATCH_OPTIONS = _table(
    Option("reuse_threshold", "float", "largest distance of a reused CF", 0.0, min=0),
    Option("max_pool_checks", "int", "pool CFs checked per prediction", min=0, nullable=True),
    Option(
        "construction",
        "choice",
        "implication graph construction",
        "atoms",
        choices=("atoms", "naive", "both"),
    ),
    Option("persistent_pool", "bool", "reuse CFs stored by earlier queries", True),
)
_LOAD = _table(
    Option("id", "str", "the instance id column"),
    Option("label", "str", "the ground-truth column"),
    Option("split", "str", "the split column"),
    Option("features", "names", "the feature columns"),
    Option("numeric", "names", "columns typed numeric"),
    Option("integer", "names", "columns typed integer"),
    Option("categorical", "names", "columns typed categorical"),
    Option("boolean", "names", "columns typed boolean"),
    Option("immutable", "names", "features a CF may not change"),
    Option("mode", "choice", "", "create", choices=("create", "append", "replace")),
)
_GRID = _table(
    *_MODEL_SIDE,
    Option("key", "str", "the unit key column"),
    Option("sensitive", "str", "the sensitive attribute column"),
    Option("positive", "any", "the positive label"),
    Option(
        "max_units",
        "int",
        "largest number of units of EXHAUSTIVE",
        MAX_EXHAUSTIVE_UNITS,
        min=1,
        max=MAX_EXHAUSTIVE_LIMIT,
    ),
    Option("lazy", "bool", "fill cells when read"),
    Option("relation", "str", "base relation of the units"),
    Option("empty_value", "float", "metric of an empty training set", nullable=True),
    _N_JOBS,
)

#: Statement node class name -> its declared options.
SPECS: dict[str, dict[str, Option]] = {
    "Foreach": {**QUERY_OPTIONS, **BATCH_OPTIONS},
    "BeginBatch": {**BATCH_OPTIONS, **_table(_N_JOBS, _EXECUTOR, _ADDRESS)},
    "CreateModel": {**_table(*_MODEL_SIDE), **MODEL_PARAMS},
    "LoadInstances": _LOAD,
    "LoadDataset": _LOAD,
    "ImportModel": _table(
        Option(
            "format",
            "choice",
            "file format",
            choices=("skops", "xgboost-ubj", "xgboost-json", "pickle"),
        ),
        Option("features", "names", "the feature columns"),
        Option("allow_pickle", "bool", "load a pickle (runs code from the file)", False),
    ),
    "CreateGrid": {**_GRID, **MODEL_PARAMS},
    "WhatIf": {**_GRID, **MODEL_PARAMS},
    "MaterializeGrid": _table(
        _N_JOBS,
        Option("progress", "bool", "show progress", True),
        Option("retry_failed", "bool", "train failed cells again", False),
    ),
    "Valuate": _table(
        _N_JOBS,
        Option("k", "int", "neighbours", 5, min=1, max=MAX_NEIGHBORS),
        Option("knn_utility", "choice", "", "soft", choices=("soft", "vote")),
        Option("label", "str", "the label column"),
        Option("features", "names", "the feature columns"),
        Option("max_nodes", "int", "largest decision diagram", min=1, nullable=True),
        Option("players", "names", "relations whose tuples are players"),
        Option("samples", "int", "coalitions sampled (knn_shapley_sampled)", min=2, max=100_000),
        _SEED,
    ),
    "FitScalingLaws": _table(
        Option("slice", "str", "evaluation slice"), Option("metric", "str", "metric")
    ),
    "PlotScalingLaws": _table(
        Option("slice", "str", "evaluation slice"),
        Option("metric", "str", "metric"),
        Option("min_r2", "float", "smallest R² of a plotted law", min=-1e9, max=1),
    ),
}


def option_names(statement: str) -> list[str]:
    """The declared option names of a statement node class (for completion)."""
    return sorted(SPECS.get(statement, {}))


#: Longest name of a model or grid.
MAX_NAME_LENGTH = 128
#: Statements that create a named object (the name is checked like an option).
_NAMING = {"CreateModel", "ImportModel", "CreateGrid"}


def check_name(node: Any, script: str) -> None:
    """A new model's or grid's name: not empty, at most :data:`MAX_NAME_LENGTH` characters,
    no control characters."""
    if type(node).__name__ not in _NAMING:
        return
    name = str(node.args.get("this") or "")
    problem = None
    if not name.strip():
        problem = "a name may not be empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"a name has at most {MAX_NAME_LENGTH} characters, not {len(name):,}"
    elif any(ord(c) < 32 for c in name):
        problem = "a name may not hold control characters"
    if problem:
        start, end = node.span("name")
        raise CfdbOptionError(problem, sql=script, start=start, end=end)


def check(node: Any, script: str) -> None:
    """Validate every declared option of a parsed statement, in place.

    Looks at the node's ``params`` and ``options`` lists; an option the table does not
    declare is left to the handler. A refused value raises :class:`CfdbOptionError` at the
    option's span.
    """
    check_name(node, script)
    specs = SPECS.get(type(node).__name__)
    if not specs:
        return
    for arg in ("params", "options"):
        for param in node.args.get(arg) or []:
            spec = specs.get(param.name)
            if spec is None:
                continue
            try:
                value = spec.validate(param.value)
            except ValueError as exc:
                start, end = param.span
                raise CfdbOptionError(str(exc), sql=script, start=start, end=end) from None
            if value is not param.value:
                param.set("value", value)
