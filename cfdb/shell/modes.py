"""Output modes of the shell (``.mode``), with DuckDB's CLI names and meanings.

``duckbox`` (the default) is cfdb's own boxed table (:func:`cfdb.format.render_table`): column
names and types as the header, numbers right-aligned, the head and tail rows of a long result
around a ``…`` row, and middle columns left out to fit the terminal. It is rendered here rather
than by DuckDB's renderer because the shell fetches each result once and must render cfdb's
own results (which are not DuckDB relations of the user's query) the same way.

``markdown``, ``latex`` and ``html`` come from ``tabulate``; ``csv``, ``tabs`` and ``json``
from the standard library. The sqlite-style modes (``list``, ``quote``, ``ascii``, ``tcl``,
``insert``, ``column``, ``table``, ``box``, ``line``) are a few lines each, written here
because no library produces exactly these formats.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.cells import cell_len

from cfdb import format as fmt

#: Every output mode, as DuckDB's CLI names them.
MODES = (
    "ascii", "box", "column", "csv", "duckbox", "html", "insert", "json", "jsonlines",
    "latex", "line", "list", "markdown", "quote", "table", "tabs", "tcl", "trash",
)  # fmt: skip

#: What each mode shows (for ``.help`` and the docs).
MODE_HELP = {
    "ascii": "columns and rows delimited by 0x1F and 0x1E",
    "box": "tables drawn with Unicode box characters",
    "column": "left-aligned columns (see .width)",
    "csv": "comma-separated values",
    "duckbox": "boxed tables with types; long and wide results elided (default)",
    "html": "an HTML <table>",
    "insert": "SQL INSERT statements for TABLE",
    "json": "a JSON array of objects",
    "jsonlines": "one JSON object per line (NDJSON)",
    "latex": "a LaTeX tabular environment",
    "line": "one value per line",
    "list": "values delimited by the separator ('|')",
    "markdown": "a Markdown table",
    "quote": "values quoted as SQL literals",
    "table": "an ASCII-art table",
    "tabs": "tab-separated values",
    "tcl": "TCL list elements",
    "trash": "no output",
}

#: Modes that show every row (``.maxrows`` applies to duckbox and line only).
ALL_ROWS = frozenset(MODES) - {"duckbox", "line"}


@dataclass
class Options:
    """Settings of the dot-commands that shape output (``.headers``, ``.nullvalue``, ...)."""

    headers: bool = True
    nullvalue: str = fmt.NULL
    separator: str | None = None  # column separator; None: the mode's own
    row_separator: str = "\n"
    widths: list[int] = field(default_factory=list)
    table: str = "table"  # the table name of insert mode
    max_width: int | None = None
    transpose: bool = False  # .columns: one line per column (duckbox)


def render(
    mode: str,
    columns: Sequence[str],
    types: Sequence[str] | None,
    rows: Sequence[Sequence[Any]],
    *,
    tail: Sequence[Sequence[Any]] = (),
    total: int | None = None,
    options: Options | None = None,
) -> str | None:
    """A result in ``mode``; None when nothing is to be printed (``trash``).

    Args:
        rows: the rows to show (the head rows when the result was cut).
        tail: the last rows of a cut result (duckbox shows them after a ``…`` row).
        total: how many rows the result has.
    """
    opts = options or Options()
    if mode not in _RENDERERS:
        raise ValueError(f"unknown output mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "duckbox" and opts.transpose:
        shown = [*rows, *tail]
        text = fmt.render_table(
            ["column", *[str(i + 1) for i in range(len(shown))]],
            None,
            [(c, *[r[i] for r in shown]) for i, c in enumerate(columns)],
            max_width=opts.max_width,
            null=opts.nullvalue,
        )
        box, _, _ = text.rpartition("\n")
        total = len(shown) if total is None else total
        more = f" ({len(shown):,} shown)" if total > len(shown) else ""
        return f"{box}\n{fmt.row_count(total)}{more}, {len(columns)} columns"
    if mode == "duckbox":
        return fmt.render_table(
            columns, types, rows, tail=tail, total=total, max_width=opts.max_width,
            null=opts.nullvalue,
        )  # fmt: skip
    if mode == "line":
        return fmt.render_lines(columns, rows, total=total, null=opts.nullvalue)
    return _RENDERERS[mode](list(columns), list(rows), types, opts)


# -- helpers -----------------------------------------------------------------------------------
def _text(value: Any, opts: Options) -> str:
    return opts.nullvalue if value is None else fmt.format_value(value)


def _delimited(rows: list[Sequence[Any]], columns: list[str], sep: str, opts: Options) -> str:
    lines = [sep.join(columns)] if opts.headers else []
    lines += [sep.join(_text(v, opts) for v in row) for row in rows]
    return opts.row_separator.join(lines)


def sql_literal(value: Any) -> str:
    """A SQL literal for ``value`` (numbers bare, NULL, everything else a quoted string that
    DuckDB casts to the column's type on INSERT)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{fmt.format_value(value)}'"
    if isinstance(value, bytes | bytearray | memoryview):
        return "'" + fmt.format_value(value).replace("'", "''") + "'::BLOB"
    return "'" + fmt.format_value(value).replace("'", "''") + "'"


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else fmt.format_value(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dt.date | dt.time | dt.timedelta | uuid.UUID | bytes):
        return fmt.format_value(value)
    return fmt.format_value(value)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - cell_len(text))
    return gap + text if right else text + gap


def _grid(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> Any:
    cells = [[_text(v, opts).replace("\n", " ") for v in row] for row in rows]
    widths = [
        max([cell_len(c)] + [cell_len(r[i]) for r in cells] + [1]) for i, c in enumerate(columns)
    ]
    return cells, widths


# -- the modes ---------------------------------------------------------------------------------
def _csv(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=opts.separator or ",", lineterminator=opts.row_separator)
    if opts.headers:
        writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else fmt.format_value(v) for v in row])
    return buf.getvalue().removesuffix(opts.row_separator)


def _list(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    return _delimited(rows, columns, opts.separator or "|", opts)


def _tabs(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    return _delimited(rows, columns, "\t", opts)


def _ascii(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    lines = ["\x1f".join(columns)] if opts.headers else []
    lines += ["\x1f".join(_text(v, opts) for v in row) for row in rows]
    return "\x1e".join(lines)


def _quote(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    lines = [",".join(sql_literal(c) for c in columns)] if opts.headers else []
    lines += [",".join(sql_literal(v) for v in row) for row in rows]
    return "\n".join(lines)


def _tcl(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [" ".join(q(c) for c in columns)] if opts.headers else []
    lines += [" ".join(q(_text(v, opts)) for v in row) for row in rows]
    return "\n".join(lines)


def _insert(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    table = opts.table if opts.table.isidentifier() else '"' + opts.table.replace('"', '""') + '"'
    names = ",".join(c if c.isidentifier() else '"' + c.replace('"', '""') + '"' for c in columns)
    return "\n".join(
        f"INSERT INTO {table}({names}) VALUES({','.join(sql_literal(v) for v in row)});"
        for row in rows
    )


def _json(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    objects = [
        json.dumps(
            {c: _json_value(v) for c, v in zip(columns, row)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for row in rows
    ]
    return "[" + ",\n".join(objects) + "]" if objects else "[]"


def _jsonlines(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    return "\n".join(
        json.dumps(
            {c: _json_value(v) for c, v in zip(columns, row)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for row in rows
    )


def _tabulate(style: str) -> Callable[[list[str], list[Sequence[Any]], Any, Options], str]:
    def render(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
        from tabulate import tabulate

        body = [[_text(v, opts) for v in row] for row in rows]
        align = (
            ["right" if fmt.is_numeric_type(t) else "left" for t in types]
            if types
            else ["left"] * len(columns)
        )
        return tabulate(
            body,
            headers=columns if opts.headers else (),
            tablefmt=style,
            colalign=align or None,
            disable_numparse=True,
        )

    return render


def _column(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
    cells, widths = _grid(columns, rows, types, opts)
    for i, w in enumerate(opts.widths[: len(widths)]):
        widths[i] = max(widths[i], abs(w))
    lines = []
    if opts.headers:
        lines.append("  ".join(_pad(c, w) for c, w in zip(columns, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(v, w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _drawn(chars: str) -> Callable[[list[str], list[Sequence[Any]], Any, Options], str]:
    """A bordered table; ``chars`` is the horizontal line, vertical line and the 9 corners
    and joints (top left, top joint, top right, middle left, cross, middle right, bottom...)."""
    h, v, tl, tj, tr, ml, mc, mr, bl, bj, br = chars

    def render(columns: list[str], rows: list[Sequence[Any]], types: Any, opts: Options) -> str:
        cells, widths = _grid(columns, rows, types, opts)

        def rule(left: str, mid: str, end: str) -> str:
            return left + mid.join(h * (w + 2) for w in widths) + end

        def line(values: Sequence[str], header: bool = False) -> str:
            # headers centred, values left-aligned, as DuckDB's table and box modes do
            parts = [x.center(w) if header else _pad(x, w) for x, w in zip(values, widths)]
            return v + v.join(f" {p} " for p in parts) + v

        out = [rule(tl, tj, tr)]
        if opts.headers:
            out += [line(columns, header=True), rule(ml, mc, mr)]
        out += [line(r) for r in cells]
        out.append(rule(bl, bj, br))
        return "\n".join(out)

    return render


_RENDERERS: dict[str, Callable[[list[str], list[Sequence[Any]], Any, Options], str | None]] = {
    "ascii": _ascii,
    "box": _drawn("─│┌┬┐├┼┤└┴┘"),
    "column": _column,
    "csv": _csv,
    "duckbox": lambda *a: None,  # handled in render()
    "html": _tabulate("html"),
    "insert": _insert,
    "json": _json,
    "jsonlines": _jsonlines,
    "latex": _tabulate("latex"),
    "line": lambda *a: None,  # handled in render()
    "list": _list,
    "markdown": _tabulate("pipe"),
    "quote": _quote,
    "table": _drawn("-|+++++++++"),
    "tabs": _tabs,
    "tcl": _tcl,
    "trash": lambda *a: None,
}
