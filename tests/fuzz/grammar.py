"""Statement forms from the docs, and hostile mutations of them (hypothesis strategies).

:data:`FORMS` holds every cfdb statement form of README.md and docs/*.md, written against the
fuzz database of :mod:`tests.fuzz.harness` (table ``Instances`` of the toy loan data, model
``lr``, grid ``g``); ``{file:...}`` placeholders name files the harness prepares. Mutations
work on tokens: a number becomes a huge, negative, infinite, fractional or malformed one, a
string an empty, huge or odd one, a token is dropped, doubled or swapped, the text is cut
short, a ``\\r`` or deep parentheses are inserted, a list is written ``[...]``.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

TRAIN = "(SELECT * FROM Instances WHERE split = 'train')"
TEST = "(SELECT * FROM Instances WHERE split = 'test')"
PRED = "(SELECT PredictionId FROM Predictions LIMIT 3)"
QCF = (
    "(SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
    "AND C.home = I.home AND C.income >= I.income)"
)

FORMS: list[str] = [
    # data
    "LOAD INSTANCES FROM (SELECT InstanceId + 1000 AS InstanceId, * EXCLUDE (InstanceId) "
    "FROM Instances LIMIT 3) WITH (id = 'InstanceId', label = 'GroundTruth', split = 'split', "
    "mode = 'append')",
    "LOAD INSTANCES FROM (SELECT * FROM Instances LIMIT 5) WITH (id = 'InstanceId', "
    "label = 'GroundTruth', immutable = ('home'), mode = 'replace')",
    "LOAD INSTANCES FROM '{file:csv}' WITH (id = 'applicant', label = 'decision', mode = 'replace')",
    "LOAD INSTANCES FROM '{file:missing}'",
    "LOAD DATASET nope",
    "DERIVE FEATURES",
    # models
    f"CREATE MODEL m1 AS logistic_regression WITH (max_iter = 50, seed = 3) TRAIN ON {TRAIN}",
    f"CREATE OR REPLACE MODEL m2 AS decision_tree WITH (max_depth = 3) TRAIN ON {TRAIN}",
    f"CREATE OR REPLACE MODEL m3 AS random_forest WITH (n_estimators = 3, max_depth = 2) "
    f"TRAIN ON {TRAIN}",
    f"CREATE OR REPLACE MODEL m4 AS xgboost WITH (n_estimators = 3, max_depth = 2) "
    f"TRAIN ON {TRAIN}",
    f"CREATE OR REPLACE MODEL m5 AS knn WITH (n_neighbors = 3, features = (income, amount)) "
    f"TRAIN ON {TRAIN}",
    "PREDICT lr ON (SELECT * FROM Instances)",
    "PREDICT m1 ON (SELECT * FROM Instances LIMIT 4)",
    "IMPORT OR REPLACE MODEL x1 FROM '{file:good_ubj}'",
    "IMPORT MODEL x2 FROM '{file:empty_ubj}'",
    "IMPORT MODEL x3 FROM '{file:garbage_ubj}'",
    "IMPORT MODEL x4 FROM '{file:skops}' WITH (format = 'skops')",
    "IMPORT MODEL x5 FROM '{file:pickle}' WITH (format = 'pickle')",
    "DROP MODEL IF EXISTS m1",
    "DROP MODEL nope",
    # CFQL
    f"FOREACH pred IN {PRED} GENERATE {QCF} USING nearest WITH (n = 1, distance = 'l1')",
    f"FOREACH pred IN {PRED} GENERATE {QCF} USING growing_spheres "
    "WITH (n = 2, time_limit = 2, seed = 1)",
    f"FOREACH pred IN {PRED} GENERATE {QCF} USING random WITH (n = 1, time_limit = 2)",
    f"EXPLAIN FOREACH pred IN {PRED} GENERATE (SELECT C.* FROM CFs C, Instances I "
    "WHERE I.InstanceId = pred.InstanceId AND C.amount BETWEEN 1 AND 30)",
    f"FOREACH pred IN {PRED} GENERATE (SELECT C.* FROM CFs C WHERE C.home IN ('own', 'rent')) "
    "USING nearest WITH (reuse_threshold = 0.5)",
    f"BEGIN BATCH WITH (reuse_threshold = 1); FOREACH pred IN {PRED} GENERATE {QCF} "
    "USING nearest; END BATCH",
    f"BEGIN BATCH; FOREACH pred IN {PRED} GENERATE {QCF} USING nearest; SELECT 1; END BATCH",
    f"EXPLAIN BEGIN BATCH WITH (construction = 'both'); FOREACH pred IN {PRED} "
    f"GENERATE {QCF}; END BATCH",
    f"EXPLAIN PLAN FOREACH pred IN {PRED} GENERATE {QCF} WITH (reuse_threshold = 2)",
    f"EXPLAIN PLAN BEGIN BATCH; FOREACH pred IN {PRED} GENERATE {QCF}; END BATCH",
    "END BATCH",
    # grids
    f"CREATE OR REPLACE GRID g1 TRAIN ON (SELECT * FROM Instances WHERE split = 'train' "
    f"LIMIT 8) SUBSETS LEAVE ONE OUT EVALUATE ON {TEST} MODEL logistic_regression "
    "METRIC accuracy WITH (lazy = true)",
    f"CREATE OR REPLACE GRID g2 TRAIN ON {TRAIN} UNITS BY home SUBSETS EXHAUSTIVE "
    f"EVALUATE ON {TEST} MODEL decision_tree METRIC accuracy WITH (max_units = 4)",
    f"CREATE OR REPLACE GRID g3 TRAIN ON {TRAIN} UNITS BY home SUBSETS PERMUTATIONS 2 "
    f"EVALUATE ON {TEST} MODEL logistic_regression METRIC accuracy",
    f"CREATE OR REPLACE GRID g4 TRAIN ON {TRAIN} UNITS BY home SUBSETS RANDOM 3 "
    f"EVALUATE ON {TEST} MODEL logistic_regression METRIC accuracy",
    f"CREATE OR REPLACE GRID g5 TRAIN ON {TRAIN} UNITS BY home SUBSETS MARGINAL 2 "
    f"SIZES (1, 2) EVALUATE ON {TEST} MODEL logistic_regression METRIC accuracy",
    "MATERIALIZE GRID g WITH (progress = false)",
    "MATERIALIZE GRID g LIMIT 2",
    "DROP GRID IF EXISTS g9",
    f"WHATIF REMOVE (SELECT * FROM Instances WHERE home = 'own') MODEL logistic_regression "
    f"TRAIN ON {TRAIN} EVALUATE ON {TEST} METRIC accuracy",
    "FIT SCALING LAWS FOR GRID g METHOD ols",
    "PLOT SCALING LAWS FOR GRID g CURVES TO '{file:png}'",
    # valuation
    f"VALUATE {TRAIN} EVALUATE ON {TEST} USING knn_shapley WITH (k = 3) UTILITY accuracy",
    # plain SQL over cfdb tables and macros
    "SELECT count(*) FROM Predictions",
    "SELECT * FROM loo('g')",
    "SELECT * FROM shapley('g')",
    "SELECT Name, Kind FROM Models ORDER BY Name",
    "SELECT * FROM read_csv('{file:csv}') LIMIT 2",
]

#: Numbers a mutation puts in place of a number.
HOSTILE_NUMBERS = [
    "0",
    "-1",
    "2.5",
    "-0.0",
    "1e309",
    "-1e309",
    "2E",
    "1e5.5",
    "inf",
    "nan",
    "NULL",
    "'abc'",
    "''",
    "2147483648",
    "9223372036854775808",
    "-9223372036854775809",
    "340282366920938463463374607431768211457",
    "(1, 2)",
    "[1, 2]",
    "((((1))))",
    "1_000",
    "0x10",
    "true",
]
#: Strings a mutation puts in place of a string literal.
HOSTILE_STRINGS = [
    "''",
    "'\\'",
    "'" + "x" * 1000 + "'",
    "'日本'",
    "'a''b'",
    "'nope'",
    "'/'",
    "'/dev/null'",
    "'.'",
    "NULL",
    "42",
    "('a', 'b')",
    "['a', 'b']",
]
#: Words a mutation inserts.
WORDS = [
    "(",
    ")",
    ",",
    ";",
    "=",
    "[",
    "]",
    "WITH",
    "SELECT",
    "FROM",
    "END BATCH",
    "BEGIN BATCH",
    "\r",
    "\n",
    "*日本",
    "--",
    "/*",
    "'",
    '"',
    "LIMIT -9223372036854775809",
    "(" * 200,
    ")" * 200,
    '""',
    "x" * 1000,
]

_TOKEN = re.compile(r"'(?:[^']|'')*'|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\w+|\s+|.", re.S)


def tokens(text: str) -> list[str]:
    """A rough SQL tokenization (strings, numbers, words, spaces, single characters)."""
    return _TOKEN.findall(text)


@st.composite
def mutated(draw: st.DrawFn, form: str) -> str:
    """``form`` with one to three token-level mutations."""
    toks = tokens(form)
    for _ in range(draw(st.integers(1, 3))):
        if not toks:
            break
        op = draw(
            st.sampled_from(
                ["number", "number", "string", "drop", "dup", "swap", "insert", "cut", "nest"]
            )
        )
        numbers = [i for i, t in enumerate(toks) if t[:1].isdigit()]
        strings = [i for i, t in enumerate(toks) if t.startswith("'")]
        if op == "number" and numbers:
            toks[draw(st.sampled_from(numbers))] = draw(st.sampled_from(HOSTILE_NUMBERS))
        elif op == "string" and strings:
            toks[draw(st.sampled_from(strings))] = draw(st.sampled_from(HOSTILE_STRINGS))
        elif op == "drop":
            del toks[draw(st.integers(0, len(toks) - 1))]
        elif op == "dup":
            i = draw(st.integers(0, len(toks) - 1))
            toks.insert(i, toks[i])
        elif op == "swap" and len(toks) > 1:
            i = draw(st.integers(0, len(toks) - 2))
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == "cut":
            toks = toks[: draw(st.integers(0, len(toks)))]
        elif op == "nest":
            depth = draw(st.sampled_from([3, 50, 1000]))
            targets = numbers or list(range(len(toks)))
            i = draw(st.sampled_from(targets))
            toks[i] = "(" * depth + toks[i] + ")" * depth
        else:
            i = draw(st.integers(0, len(toks)))
            toks.insert(i, " " + draw(st.sampled_from(WORDS)) + " ")
    return "".join(toks)


@st.composite
def inputs(draw: st.DrawFn) -> str:
    """A statement form as written (one in six) or mutated."""
    form = draw(st.sampled_from(FORMS))
    if draw(st.integers(0, 5)) == 0:
        return form
    return draw(mutated(form))
