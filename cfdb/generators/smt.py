"""The ``smt`` generator: exact counterfactuals for linear models and tree ensembles, by
encoding the model, its featurizer, the feature domains and the CFQL condition in z3 (the
exact generator the CFDB paper's design calls for, section 3.2 step 3; in the spirit of MACE,
Karimi et al., AISTATS 2020).

Where the model-agnostic generators treat the condition as a filter on samples, this one
returns CFs that satisfy the condition *by construction* and are *provably closest* under the
chosen objective, so a burden computed from them is exact rather than an upper bound.

* Models (:mod:`~.smt_model`): logistic regression, linear SVM (``linear_svm``), decision
  trees, random forests (sklearn's averaged probabilities), gradient boosting, histogram
  gradient boosting and XGBoost, binary and multi-class; and regressors (linear, ridge, trees,
  forests, gradient boosting, XGBoost; :mod:`~.smt_regression`), whose CFs move the output by
  ``min_change`` in the asked direction (CFDB paper, section 4.4). Raw-mode models (a user's
  pipeline) are opaque and refused with :class:`~cfdb.errors.CfdbUnsupportedError`, as are
  kinds without an encoding (``knn``, ``mlp``, ``knn_regressor``).
* Variables (:mod:`~.smt_encode`): the raw values a CF stores. Numeric features are reals and
  integer features integers, both bounded by the feature's observed ``[min, max]`` (widened to
  contain the instance): the generator never proposes values outside the data's range, although
  a CFQL condition itself may ask for them (such a request is then infeasible here).
  Categorical and boolean features range over their active domain; immutable features keep
  the instance's values.
* Objectives (``WITH (objective = ...)``): ``l0`` (fewest changed features), ``l1``
  (Σ |y − x| / MAD plus changed categoricals), ``tabular`` (CERTIFAI's distance, the one the
  burden experiment uses) and ``l0_l1`` (the default: fewest changes, then the smallest L1
  among those). The statement's ``distance`` option still decides how the engine orders and
  records CFs; set both to the same measure for exact results (e.g. ``objective =
  'tabular', distance = 'tabular'``).
* Bounds on the CF's score (``C.Score`` in CFQL; :mod:`~.smt_output`): a regressor's
  output, or a binary classifier's probability of the CF's label, as a threshold on the
  encoded score (``p`` is ``log(p / (1 - p))`` for logistic links); multi-class models refuse.
* ``n > 1``: successive optimal CFs under blocking clauses (:mod:`~.smt_search`).
* Time limits (:mod:`~.smt_worker`): solving runs in a child process that is killed at the
  task's deadline; the best CF found so far is returned, flagged as not proven optimal.

Exactness is up to the estimators' floating point: a CF's winning score must beat the others
by a small margin (1e-9 relative for float64 scores, more for XGBoost's float32 sums), and a
strict comparison on a real feature by 1e-6 MAD. Every CF is checked with the model's own
``predict`` before it is returned; one failing that check makes the task run again with the
margin on both sides of every tie and a 100 times larger margin.

The answer is a dict of feature columns, of type :class:`SmtColumns`, that also carries
per-CF flags in ``extra`` (``__optimal``, ``__timed_out``, ``__objective``, ``__l0``, aligned
with the rows) and per-task facts in ``info`` (``status``: ``optimal``, ``feasible`` (time
ran out after a CF was found), ``timeout``, ``infeasible`` (proven: no CF within the
feature domains meets the condition and the target, up to the decision margin; the engine
records the request as ``infeasible``), ``unproven`` (none found with the widened margin of a
retry) or ``error``; ``seconds``; ``error``).

Parameters (``WITH``): ``objective`` (default ``l0_l1``) and ``process`` (default true: solve
in a child process with a hard time limit; false: in this process, with z3's timeout).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError, CfdbSolverError
from cfdb.generators.base import GENERATORS, GenerationTask, Generator, take, valid_mask
from cfdb.generators.sampling import empty_columns, instance_row, raw_column, resolve_params
from cfdb.generators.smt_encode import Encoding
from cfdb.generators.smt_model import compile_model
from cfdb.generators.smt_output import raw_bounds
from cfdb.generators.smt_search import OBJECTIVES, Found, Job
from cfdb.generators.smt_worker import Result, Worker
from cfdb.types import Columns

#: How much the margin grows when a CF fails the model's own check.
RETRY_MARGIN = 100.0


class SmtColumns(dict):
    """Feature columns of the CFs, with per-CF flags (``extra``) and per-task facts (``info``).

    Attributes:
        extra: ``__optimal`` (proven closest, given the earlier CFs), ``__timed_out``,
            ``__objective`` (the objective's value) and ``__l0``, one entry per row.
        info: ``status``, ``seconds`` and ``error`` of the task, and ``rejected``: how many
            candidates failed the model's own check (each one makes the task run again with
            conservative margins).
    """

    def __init__(
        self,
        columns: Columns,
        extra: dict[str, np.ndarray] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(columns)
        self.extra = extra or {}
        self.info = info or {}


@GENERATORS.decorator("smt")
class Smt(Generator):
    """Exact counterfactuals by SMT (see the module docstring)."""

    name = "smt"
    #: Whether the engine must pass a pool of instances to ``fit``.
    uses_pool = False
    #: Regressors too: a CF moves the output by ``min_change`` (CFDB paper, section 4.4).
    supports_regression = True
    #: Parameters and their defaults.
    defaults: dict[str, Any] = {"objective": "l0_l1", "process": True}

    def _options(self, *given: dict[str, Any]) -> dict[str, Any]:
        p = resolve_params(self.name, self.defaults, *given)
        p["objective"] = str(p["objective"]).lower()
        if p["objective"] not in OBJECTIVES:
            raise CfdbDataError(
                f"parameter 'objective' of generator {self.name!r} must be one of "
                f"{', '.join(OBJECTIVES)}, got {p['objective']!r}"
            )
        return p

    def _fit(self) -> None:
        self._options(self.params)
        self.compiled_ = compile_model(self.model_, self.features_)
        self._build()

    def _build(self) -> None:
        self.encoding_ = Encoding(self.compiled_, self.features_)
        self.worker_ = Worker(self.encoding_, self.compiled_, self.features_)

    def __getstate__(self) -> dict[str, Any]:
        # z3 objects and processes do not pickle; a copy rebuilds them on first use.
        state = dict(self.__dict__)
        state.pop("encoding_", None)
        state.pop("worker_", None)
        return state

    def close(self) -> None:
        """Stop the solver process (it also stops when the generator is collected)."""
        worker = self.__dict__.get("worker_")
        if worker is not None:
            worker.stop()

    def generate(self, task: GenerationTask) -> Columns:
        """Up to ``task.n`` CFs, closest first (see the module docstring)."""
        self.check_fitted()
        p = self._options(self.params, task.params)
        if "encoding_" not in self.__dict__:
            self._build()
        if task.n <= 0:
            return SmtColumns(empty_columns(self.features_), info={"status": "done"})
        x = instance_row(self.features_, task)
        original, target, regression = 0, None, None
        if task.is_regression:
            assert task.original_value is not None and task.min_change is not None
            regression = (float(task.original_value), float(task.min_change), task.direction)
        else:
            labels = list(self.model_.labels)
            if task.target is not None and task.target not in labels:
                raise CfdbDataError(f"target {task.target!r} is not a label of the model")
            original = labels.index(str(task.original_label))
            target = None if task.target is None else labels.index(task.target)
        score = None
        if task.score is not None:
            wanted = target
            if wanted is None and not regression and self.compiled_.n_classes == 2:
                wanted = 1 - original
            score = raw_bounds(self.model_, self.compiled_, task.score, wanted)
            if score is None:  # the bound itself is out of reach (a probability above 1)
                return SmtColumns(empty_columns(self.features_), info={"status": "infeasible"})
        job = Job(
            instance={k: _python(v) for k, v in x.items()},
            condition=task.condition,
            original=original,
            target=target,
            n=task.n,
            objective=p["objective"],
            margin=self.compiled_.margin,
            regression=regression,
            score=score,
        )
        here = not p["process"]
        result = self.worker_.run(job, task.deadline, in_process=here)
        rows, found = self._verified(task, result)
        rejected = len(result.found) - len(found)
        if rejected and not task.expired():
            # A CF failed the model's own check: float rounding at a tie. Be conservative.
            job = replace(job, ties=False, margin=job.margin * RETRY_MARGIN)
            result = self.worker_.run(job, task.deadline, in_process=here)
            rows, found = self._verified(task, result)
            rejected += len(result.found) - len(found)
        if result.status == "error" and not found:
            # The engine records the message as the reason the prediction failed.
            raise CfdbSolverError(f"the smt search failed: {result.error}")
        answer = self._answer(rows, found, result)
        answer.info["rejected"] = rejected
        if rejected and answer.info["status"] == "infeasible":
            # Infeasible only under the widened margin: no proof that no CF exists.
            answer.info["status"] = "unproven"
        return answer

    def _verified(self, task: GenerationTask, result: Result) -> tuple[dict[str, Any], list[Found]]:
        found = [result.found[i] for i in sorted(result.found)]
        if not found:
            return empty_columns(self.features_), []
        rows = {f.name: raw_column(f, [c.values[f.name] for c in found]) for f in self.features_}
        ok = valid_mask(self.model_, self.features_, task, rows)
        keep = np.flatnonzero(ok)
        return take(rows, keep), [found[i] for i in keep]

    def _answer(self, rows: dict[str, Any], found: list[Found], result: Result) -> SmtColumns:
        timed_out = result.status == "timeout"
        status = result.status
        if status == "done":
            status = "optimal" if found else "infeasible"
        elif timed_out and found:
            status = "feasible"
        extra = {
            "__optimal": np.array([c.optimal for c in found], dtype=bool),
            "__timed_out": np.full(len(found), timed_out, dtype=bool),
            "__objective": np.array([float(c.cost) for c in found], dtype=np.float64),
            "__l0": np.array([c.l0 for c in found], dtype=np.int64),
        }
        info = {"status": status, "seconds": result.seconds, "error": result.error}
        return SmtColumns(rows, extra, info)


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
