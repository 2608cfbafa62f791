"""``cfdb demo``: build a demo database from the bundled UCI Adult data and query it.

The demo is a plain cfdb script (:data:`DEMO_SCRIPT`): load the data, train the CFDB paper's
two models (a random forest of 10 trees of depth 5, an L2 logistic regression), fill
``Predictions`` and ask a few questions in SQL. Every statement is printed before its result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import cfdb

DEMO_SCRIPT = """\
-- 1. The bundled UCI Adult data (Becker & Kohavi 1996): features, label and split.
LOAD DATASET adult;

-- 2. The CFDB paper's two models, trained on the training split.
CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5)
  TRAIN ON (SELECT * FROM Instances WHERE split = 'train');
CREATE MODEL lr AS logistic_regression WITH (C = 1.0)
  TRAIN ON (SELECT * FROM Instances WHERE split = 'train');

-- 3. Predictions for every instance, as rows of the Predictions table.
PREDICT rf ON (SELECT * FROM Instances);
PREDICT lr ON (SELECT * FROM Instances);

-- 4. Accuracy per model and split.
SELECT M.Name AS model, I.split, count(*) AS n,
       round(avg(CAST(P.Label = I.GroundTruth AS INTEGER)), 4) AS accuracy
FROM Predictions P JOIN Instances I USING (InstanceId) JOIN Models M USING (ModelId)
GROUP BY ALL ORDER BY model, I.split DESC;

-- 5. Confusion counts of the random forest on the test split, per sex x race.
SELECT I.sex, I.race, count(*) AS n,
       count(*) FILTER (P.Label = '>50K' AND I.GroundTruth = '>50K') AS tp,
       count(*) FILTER (P.Label = '>50K' AND I.GroundTruth = '<=50K') AS fp,
       count(*) FILTER (P.Label = '<=50K' AND I.GroundTruth = '>50K') AS fn,
       count(*) FILTER (P.Label = '<=50K' AND I.GroundTruth = '<=50K') AS tn
FROM Predictions P JOIN Instances I USING (InstanceId) JOIN Models M USING (ModelId)
WHERE M.Name = 'rf' AND I.split = 'test'
GROUP BY ALL ORDER BY I.sex, I.race;

-- 6. False negatives per model: candidates for counterfactual questions.
SELECT M.Name AS model, count(*) AS false_negatives
FROM Predictions P JOIN Instances I USING (InstanceId) JOIN Models M USING (ModelId)
WHERE I.GroundTruth = '>50K' AND P.Label = '<=50K' AND I.split = 'test'
GROUP BY ALL ORDER BY model;
"""


def run(path: str, out: Any, show: Callable[[Any, Any], None] | None = None) -> float:
    """Build ``path`` from scratch with :data:`DEMO_SCRIPT`, printing each step to ``out``.

    Args:
        path: the database file to (re)create.
        out: a ``rich.console.Console`` (anything with ``print``).
        show: how to print a relation (default: :func:`cfdb.format.print_relation`).

    Returns:
        The wall time in seconds.
    """
    if show is None:
        from cfdb.format import print_relation as show
    for suffix in ("", ".wal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    started = time.perf_counter()
    with cfdb.connect(path) as db:
        for result in db.execute(DEMO_SCRIPT):
            statement = result.statement
            comment = _leading_comment(statement.script, statement.start)
            if comment:
                out.print("\n" + comment, style="bold", markup=False, highlight=False)
            out.print(
                statement.text + ";", style="cyan", markup=False, highlight=False, soft_wrap=True
            )
            if result.relation is not None:
                show(result.relation, out)
    seconds = time.perf_counter() - started
    out.print(
        f"\nBuilt {path} in {seconds:.1f} s. Open it with: cfdb shell {path}",
        markup=False,
        highlight=False,
    )
    return seconds


def _leading_comment(script: str, start: int) -> str:
    # The comment lines right above a statement describe it.
    lines = script[:start].rstrip("\n ").split("\n")
    found = []
    for line in reversed(lines):
        if line.startswith("--"):
            found.append(line[2:].strip())
        else:
            break
    return " ".join(reversed(found))
