"""The fuzz database and the check run on each input.

:func:`build` makes a small database (toy loan data, a model ``lr`` with predictions, a lazy
grid ``g``) and the files the statement forms name. :func:`check` runs one input with a
watchdog: after ``limit`` seconds it calls the session's ``interrupt`` (DuckDB's cancellation,
what Ctrl-C does); an input that does not stop within ``GRACE`` seconds of that counts as a
failure (it ran on without honouring the interrupt), and an interrupted one must fail cleanly
like any other. It then checks that the input succeeded or raised a
``CfdbError``, and that a failing single statement left every table as it was (row counts
and content hashes) and no batch open.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any

import cfdb
from cfdb.errors import CfdbError
from cfdb.lang import split
from tests.conftest import toy_frame

#: Seconds an input may run before the watchdog interrupts it.
DEFAULT_LIMIT = 10.0
#: Seconds an interrupted input may take to stop (generous: a loaded machine is slow to
#: schedule DuckDB's cancellation check).
GRACE = 20.0


@dataclass
class Finding:
    """One input that broke a promise."""

    kind: str  # "exception", "timeout", "changed", "batch-open"
    text: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.detail}\n    input: {self.text[:300]!r}"


def make_files(folder: str) -> dict[str, str]:
    """The files statement forms refer to, by placeholder name."""
    import numpy as np
    import skops.io
    import xgboost
    from sklearn.linear_model import LogisticRegression

    files = {
        "csv": os.path.join(folder, "loans.csv"),
        "missing": os.path.join(folder, "missing.csv"),
        "good_ubj": os.path.join(folder, "good.ubj"),
        "empty_ubj": os.path.join(folder, "empty.ubj"),
        "garbage_ubj": os.path.join(folder, "garbage.ubj"),
        "skops": os.path.join(folder, "model.skops"),
        "pickle": os.path.join(folder, "model.pkl"),
        "png": os.path.join(folder, "laws.png"),
    }
    toy_frame(30, seed=1).to_csv(files["csv"], index=False)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4)), rng.integers(0, 2, 40)
    booster = xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(x, y).get_booster()
    good = bytes(booster.save_raw("ubj"))
    with open(files["good_ubj"], "wb") as f:
        f.write(good)
    with open(files["empty_ubj"], "wb") as f:
        f.write(b"")
    with open(files["garbage_ubj"], "wb") as f:
        f.write(good[: len(good) // 3])
    with open(files["skops"], "wb") as f:
        f.write(skops.io.dumps(LogisticRegression().fit(x, y)))
    with open(files["pickle"], "wb") as f:
        pickle.dump(LogisticRegression().fit(x, y), f)
    return files


def build(folder: str) -> tuple[cfdb.Database, dict[str, str]]:
    """The fuzz database (in memory) and its files."""
    db = cfdb.connect()
    db.load_instances(toy_frame(40), id="applicant", label="decision", split="part")
    db.sql(
        "CREATE MODEL lr AS logistic_regression TRAIN ON "
        "(SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT lr ON (SELECT * FROM Instances);"
        "CREATE GRID g TRAIN ON (SELECT * FROM Instances WHERE split = 'train') UNITS BY home "
        "SUBSETS MARGINAL 1 SIZES (1) EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') "
        "MODEL logistic_regression METRIC accuracy WITH (lazy = true)"
    )
    return db, make_files(folder)


def fill(text: str, files: dict[str, str]) -> str:
    """``text`` with ``{file:name}`` placeholders replaced by paths."""
    for name, path in files.items():
        text = text.replace("{file:" + name + "}", path)
    return text


def snapshot(db: cfdb.Database) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent content hash of every table."""
    store = db.session.store
    names = [
        r[0]
        for r in store.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND NOT temporary ORDER BY 1"
        )
    ]
    if not names:
        return {}
    parts = []
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        parts.append(
            f"SELECT {len(parts)} AS k, count(*) AS n, "
            f"coalesce(sum(hash(t::VARCHAR)), 0)::VARCHAR AS h FROM {quoted} t"
        )
    rows = store.execute(" UNION ALL ".join(parts))
    return {names[k]: (int(n), int(h)) for k, n, h in rows}


def _single_statement(text: str) -> bool:
    try:
        return len(split(text)) <= 1
    except CfdbError:
        return True  # nothing runs


def end_user_transaction(db: cfdb.Database) -> None:
    """Roll back a transaction an input opened with plain ``BEGIN`` (the next input starts
    outside it, as a new script in the shell would after ``ROLLBACK``)."""
    with contextlib.suppress(CfdbError):
        db.session.store.execute("ROLLBACK")


def check(
    db: cfdb.Database, text: str, limit: float = DEFAULT_LIMIT, cache: dict[str, Any] | None = None
) -> Finding | None:
    """Run ``text``; the broken promise, or ``None``.

    ``cache`` carries the database's :func:`snapshot` from one input to the next: an input
    that failed left the database unchanged, so the next one need not take it again.
    """
    cache = {} if cache is None else cache
    known = cache.pop("snapshot", None)
    single = _single_statement(text)
    open_before = db.session.open_block is not None
    before = (known if known is not None else snapshot(db)) if single else None
    timed_out = threading.Event()
    finished = threading.Event()

    def watchdog() -> None:
        if not finished.wait(limit):
            timed_out.set()
            db.session.interrupt()

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    started = time.monotonic()
    error: BaseException | None = None
    try:
        rel = db.sql(text)
        if rel is not None:
            rel.fetchall()
    except CfdbError as exc:
        error = exc
    except Exception as exc:  # a promise broken: report, do not raise
        finished.set()
        return Finding("exception", text, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        finished.set()
        guard.join()
    seconds = time.monotonic() - started
    if db.session.open_block is not None and error is None:
        db.session.open_block = None  # a lone BEGIN BATCH: close it for the next input
    if timed_out.is_set() and seconds > limit + GRACE:
        return Finding(
            "timeout", text, f"ran {seconds:.1f} s: the interrupt at {limit} s was not honoured"
        )
    if error is not None:
        if db.session.open_block is not None and not open_before:
            db.session.open_block = None
            return Finding("batch-open", text, f"a batch stayed open after: {error}")
        if before is not None:
            after = snapshot(db)
            cache["snapshot"] = after
            if after != before:
                changed = sorted(
                    k for k in set(before) | set(after) if before.get(k) != after.get(k)
                )
                return Finding("changed", text, f"{error} -- changed tables {changed}")
    return None


def run(
    db: cfdb.Database,
    files: dict[str, str],
    text: str,
    limit: float,
    cache: dict[str, Any] | None = None,
) -> Finding | None:
    """:func:`check` of an input with its file placeholders filled; a transaction the input
    opened is rolled back afterwards (and the cached snapshot dropped)."""
    finding = check(db, fill(text, files), limit, cache)
    if text.strip().upper().startswith(("BEGIN", "START")) and cache is not None:
        cache.pop("snapshot", None)
    end_user_transaction(db)
    return finding


def describe(findings: list[Finding]) -> str:
    return "\n".join(str(f) for f in findings)
