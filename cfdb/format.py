"""Text rendering for the command line: duckbox tables, line mode, errors, name lists (the
shell's other output modes are in :mod:`cfdb.shell.modes`).

Everything here is a pure function from column names, type names and row tuples (or an
exception) to a string, except :func:`take_rows` and :func:`print_relation`, which read any
relation-like object (``columns``, ``types``, ``iter_rows()`` or ``fetchall()``) without
knowing the database library, and print to a rich Console or a callable.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import traceback
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any

from rich.cells import cell_len

from cfdb.errors import CfdbError

#: How a SQL NULL is shown in table and line modes.
NULL = "NULL"


#: Rows shown by default before "… N more rows".
DEFAULT_MAX_ROWS = 40

#: Widest a table cell may be (in terminal cells) before it is cut with an ellipsis.
MAX_CELL_WIDTH = 60

ELLIPSIS = "…"

_NUMERIC_TYPE_RE = re.compile(
    r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|INT[1248]|FLOAT[48]?|DOUBLE|REAL|DECIMAL.*|NUMERIC.*"
    r"|UHUGEINT|VARINT|BIGNUM)$",
    re.IGNORECASE,
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# -- values ------------------------------------------------------------------------------------
def is_numeric_type(type_name: str) -> bool:
    """Whether a DuckDB type name is a number type (its column is right-aligned)."""
    return bool(_NUMERIC_TYPE_RE.match(type_name.strip()))


def format_value(value: Any, null: str = NULL) -> str:
    """A value as shown in a table cell: ``NULL``, ``true``/``false``, numbers, ISO dates."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_nested(k)}: {_nested(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    return str(value)


def _nested(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return format_value(value)


def _float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _bytes(value: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02X}" for b in value)


def _cell_lines(text: str, width: int) -> list[str]:
    """The lines of a cell's text, control characters made visible, each cut to ``width``."""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return [crop(line, width) for line in text.split("\n")]


def crop(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal cells, ending in an ellipsis if cut."""
    if cell_len(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - cell_len(text))
    return gap + text if right else text + gap


def row_count(n: int) -> str:
    """``1 row`` / ``12,345 rows``."""
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _more_rows(n: int) -> str:
    return f"{ELLIPSIS} {n:,} more row" if n == 1 else f"{ELLIPSIS} {n:,} more rows"


# -- results -----------------------------------------------------------------------------------
def render_table(
    columns: Sequence[str],
    types: Sequence[str] | None,
    rows: Sequence[Sequence[Any]],
    *,
    tail: Sequence[Sequence[Any]] = (),
    total: int | None = None,
    max_width: int | None = None,
    max_cell_width: int = MAX_CELL_WIDTH,
    null: str = NULL,
) -> str:
    """A boxed table: names and types as the header, numbers right-aligned, NULL as ``NULL``.

    Args:
        columns: column names.
        types: DuckDB type names, one per column (``None`` to infer alignment from values).
        rows: the rows to show.
        tail: the last rows of a result that was cut in the middle: shown after a row of
            ``…``, and the footer says how many rows were shown.
        total: how many rows the result has (more than ``len(rows)`` when it was cut); a
            "… N more rows" line and the row count follow the table (without ``tail``).
        null: how NULL is shown.
        max_width: the terminal width; middle columns are left out (shown as ``…``) so the
            table fits. ``None`` for no limit.
        max_cell_width: cells wider than this are cut with an ellipsis.
    """
    shown_rows = len(rows) + len(tail)
    total = shown_rows if total is None else total
    gap = bool(tail) and total > shown_rows
    rows = [*rows, *tail]
    ncols = len(columns)
    type_names = list(types) if types is not None else [""] * ncols
    right = [
        is_numeric_type(t) if t else _values_numeric(rows, i) for i, t in enumerate(type_names)
    ]
    cells = [[_cell_lines(format_value(v, null), max_cell_width) for v in row] for row in rows]
    heads = [
        [crop(str(name), max_cell_width)] + ([crop(t, max_cell_width)] if types else [])
        for name, t in zip(columns, type_names)
    ]
    widths = [
        max([cell_len(x) for x in heads[i]] + [cell_len(x) for r in cells for x in r[i]] + [1])
        for i in range(ncols)
    ]
    shown = _fit_columns(widths, max_width)
    notes = []
    if len(shown) < ncols:
        notes.append(f"{ncols} columns ({len([i for i in shown if i is not None])} shown)")

    def line(left: str, mid: str, end: str) -> str:
        parts = ["─" * (widths[i] + 2) if i is not None else "─" * 3 for i in shown]
        return left + mid.join(parts) + end

    def row_lines(values: list[list[str]]) -> list[str]:
        height = max([len(v) for v in values] + [1])
        out = []
        for k in range(height):
            parts = []
            for i in shown:
                if i is None:
                    parts.append(ELLIPSIS if k == 0 else " ")
                    continue
                text = values[i][k] if k < len(values[i]) else ""
                parts.append(_pad(text, widths[i], right[i]))
            out.append("│ " + " │ ".join(parts) + " │")
        return out

    out = []
    if ncols:
        out.append(line("┌", "┬", "┐"))
        out += row_lines([[h[0]] for h in heads])
        if types:
            out += row_lines([[h[1]] for h in heads])
        out.append(line("├", "┼", "┤"))
        for k, row in enumerate(cells):
            if gap and k == shown_rows - len(tail):
                out += row_lines([[ELLIPSIS] for _ in range(ncols)])
            out += row_lines(row)
        out.append(line("└", "┴", "┘"))
    if gap:
        notes.insert(0, f"{shown_rows:,} shown")
    elif total > len(rows):
        out.append(_more_rows(total - len(rows)))
    out.append(", ".join([row_count(total), *notes]))
    return "\n".join(out)


def _values_numeric(rows: Sequence[Sequence[Any]], i: int) -> bool:
    seen = [row[i] for row in rows if row[i] is not None]
    return bool(seen) and all(
        isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in seen
    )


def _fit_columns(widths: list[int], max_width: int | None) -> list[int | None]:
    """Which columns to show, in order; ``None`` marks the gap of left-out middle columns."""
    n = len(widths)
    everything: list[int | None] = list(range(n))

    def width_of(cols: Iterable[int], gap: bool) -> int:
        return 1 + sum(widths[i] + 3 for i in cols) + (4 if gap else 0)

    if max_width is None or width_of(range(n), False) <= max_width:
        return everything
    left: list[int] = []
    right: list[int] = []
    for k in range(n):
        i = k // 2 if k % 2 == 0 else n - 1 - k // 2
        if width_of([*left, *right, i], True) > max_width and (left or right):
            break
        (left if k % 2 == 0 else right).append(i)
    return [*left, None, *reversed(right)]


def render_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header row; NULL is an empty field, other values as in a table."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else format_value(v) for v in row])
    return buf.getvalue().rstrip("\n")


def render_lines(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    total: int | None = None,
    null: str = NULL,
) -> str:
    """One ``name = value`` line per column, a blank line between rows, then the row count."""
    total = len(rows) if total is None else total
    width = max([cell_len(c) for c in columns] + [1])
    blocks = []
    for row in rows:
        blocks.append(
            "\n".join(
                f"{_pad(name, width, True)} = {format_value(v, null)}"
                for name, v in zip(columns, row)
            )
        )
    out = "\n\n".join(blocks)
    tail = [_more_rows(total - len(rows))] if total > len(rows) else []
    tail.append(row_count(total))
    return "\n\n".join([out, "\n".join(tail)]) if out else "\n".join(tail)


def take_rows(relation: Any, limit: int | None) -> tuple[list[tuple[Any, ...]], int]:
    """The first ``limit`` rows of a relation (all if None) and its row count, in one run."""
    iter_rows = getattr(type(relation), "iter_rows", None)
    rows_iter: Iterator[tuple[Any, ...]] = (
        iter(iter_rows(relation)) if iter_rows is not None else iter(relation.fetchall())
    )
    rows = list(rows_iter if limit is None else islice(rows_iter, limit))
    return rows, len(rows) + sum(1 for _ in rows_iter)


def take_head_tail(
    relation: Any, limit: int | None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """The first and last rows of a relation (``limit`` in all, head first; all rows if None
    or the result is short enough) and its row count, in one run."""
    iter_rows = getattr(type(relation), "iter_rows", None)
    rows_iter: Iterator[tuple[Any, ...]] = (
        iter(iter_rows(relation)) if iter_rows is not None else iter(relation.fetchall())
    )
    if limit is None:
        rows = list(rows_iter)
        return rows, [], len(rows)
    head = list(islice(rows_iter, limit))
    keep = limit // 2  # half the budget from each end (the head gets the odd one), as DuckDB
    tail: deque[tuple[Any, ...]] = deque(maxlen=max(keep, 1))
    count = len(head)
    for row in rows_iter:
        tail.append(row)
        count += 1
    if count <= limit or keep == 0:
        return head, [], count
    # head and tail are contiguous unless the deque dropped rows; either way this slice is
    # the last ``keep`` rows of the result.
    last = [*head, *tail][-keep:]
    return head[: limit - keep], last, count


def print_relation(relation: Any, out: Any, *, max_rows: int = DEFAULT_MAX_ROWS) -> None:
    """Fetch ``relation`` and print it as a table to ``out`` (a rich Console or a callable)."""
    columns = list(relation.columns)
    types = [str(t) for t in relation.types]
    rows, total = take_rows(relation, max_rows if max_rows > 0 else None)
    width = out.width if getattr(out, "is_terminal", False) else None
    text = render_table(columns, types, rows, total=total, max_width=width)
    if hasattr(out, "out"):
        out.out(text, highlight=False)
    elif hasattr(out, "print"):
        out.print(text)
    else:
        out(text)


def render_names(names: Sequence[str], max_width: int | None = None) -> str:
    """Names laid out in columns, sorted down then across (like ``ls``)."""
    if not names:
        return ""
    width = max(cell_len(n) for n in names) + 2
    per_line = max(1, (max_width or 80) // width)
    height = math.ceil(len(names) / per_line)
    lines = []
    for r in range(height):
        parts = [names[i] for i in range(r, len(names), height)]
        lines.append("".join(_pad(p, width, False) for p in parts).rstrip())
    return "\n".join(lines)


def elapsed(seconds: float) -> str:
    """The ``.timer`` line."""
    return f"Time: {seconds:.3f} s"


# -- errors ------------------------------------------------------------------------------------
def render_error(err: CfdbError, *, source: str | None = None) -> str:
    """The error's message, offending line and caret; ``source:line:column:`` in front if given."""
    text = err.render()
    if source is None:
        return text
    where = f"{source}:{err.line}:{err.column}" if err.line is not None else source
    return f"{where}: {text}"


def render_internal_error(exc: BaseException) -> str:
    """An unexpected exception (a bug in cfdb): its type and message and how to see more."""
    message = str(exc).strip()
    name = type(exc).__name__
    return (
        f"Internal error: {name}: {message}" if message else f"Internal error: {name}"
    ) + "\nThis is a bug in cfdb; rerun with --debug to see the traceback."


def render_traceback(exc: BaseException) -> str:
    """The full traceback of ``exc`` (for ``--debug``)."""
    return "".join(traceback.format_exception(exc)).rstrip("\n")
