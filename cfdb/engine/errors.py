"""The last net at the handler boundary: a stray exception becomes a located CfdbError.

Every bad input should be refused by a specific check with a precise message (options in
:mod:`cfdb.options`, bounds before work starts, artifacts validated before native libraries).
What escapes them anyway (a library's ``ValueError``, ``LinAlgError``, ``RecursionError``,
``MemoryError``) is turned here into a :class:`~cfdb.errors.CfdbExecutionError` that names the
statement and keeps only the first line of the original message, so the promise "every
input gets a CfdbError" holds while the specific fix is written.
"""

from __future__ import annotations

from typing import Any

from cfdb.errors import CfdbExecutionError
from cfdb.lang.dialect import CfdbParser

_REASONS = {
    "MemoryError": "ran out of memory",
    "RecursionError": "nests too deeply",
    "LinAlgError": "a linear-algebra routine failed",
}


def statement_name(text: str) -> str:
    """The leading keywords of a cfdb statement, e.g. ``CREATE MODEL`` or ``FOREACH``."""
    words = tuple(w.upper() for w in text.split()[:5])
    prefixes = [p for p in CfdbParser.CFDB_STATEMENTS if words[: len(p)] == p]
    return " ".join(max(prefixes, key=len)) if prefixes else "statement"


def stray_error(exc: BaseException, statement: Any) -> CfdbExecutionError:
    """``exc`` (not a CfdbError) as an execution error located at ``statement``."""
    name = type(exc).__name__
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    reason = _REASONS.get(name)
    detail = f"{reason} ({name}: {first})" if reason else f"{name}: {first}"
    err = CfdbExecutionError(f"{statement_name(statement.text)} failed: {detail}")
    return err.located(statement.script, statement.start, statement.end)  # type: ignore[return-value]
