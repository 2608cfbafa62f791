"""Completion, syntax highlighting and the bottom toolbar of the interactive shell.

Completion looks at the statement being typed and offers what fits where the cursor is:
``alias.`` → that table's columns; the next word of a cfdb statement (``LOAD`` → ``DATASET``,
``INSTANCES``); generator names after ``USING``; option names inside ``WITH (``; model names
after ``PREDICT`` / ``DROP MODEL``, model kinds after ``AS`` in ``CREATE MODEL`` and after
``MODEL`` in grid statements; grid names after ``MATERIALIZE GRID`` / ``DROP GRID``; dataset
names after ``LOAD DATASET``; otherwise keywords, tables and columns. prompt_toolkit and
pygments are imported only here, for the interactive shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cfdb.lang import statement_keywords

if TYPE_CHECKING:
    from cfdb.shell.core import Shell

# fmt: off
#: Used when the database cannot list its own keywords.
FALLBACK_KEYWORDS = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "JOIN",
    "LEFT", "RIGHT", "FULL", "INNER", "OUTER", "CROSS", "USING", "ON", "AS", "AND", "OR", "NOT",
    "NULL", "IS", "IN", "BETWEEN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT",
    "UNION", "ALL", "EXCEPT", "INTERSECT", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE",
    "CREATE", "TABLE", "VIEW", "DROP", "ALTER", "ASC", "DESC", "CAST", "TRUE", "FALSE",
]
# fmt: on

_NAMES_SQL = (
    "SELECT table_name, 'table', NULL FROM duckdb_tables() "
    "UNION SELECT view_name, 'view', NULL FROM duckdb_views() WHERE NOT internal "
    "UNION SELECT column_name, 'column', table_name FROM duckdb_columns() WHERE NOT internal"
)
_KEYWORDS_SQL = "SELECT DISTINCT upper(keyword_name) FROM duckdb_keywords()"

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_DOTTED_RE = re.compile(rf"({_NAME})\.([A-Za-z0-9_$]*)$")
_TABLE_REF_RE = re.compile(
    rf"\b(?:FROM|JOIN|UPDATE|INTO)\s+((?:{_NAME}\.)*{_NAME})(?:\s+(?:AS\s+)?({_NAME}))?"
    rf"|,\s*((?:{_NAME}\.)*{_NAME})(?:\s+(?:AS\s+)?({_NAME}))?",
    re.IGNORECASE,
)
_WORDS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_ALIAS = frozenset(
    [
        "WHERE",
        "ON",
        "USING",
        "JOIN",
        "LEFT",
        "RIGHT",
        "INNER",
        "OUTER",
        "FULL",
        "CROSS",
        "NATURAL",
        "GROUP",
        "ORDER",
        "LIMIT",
        "HAVING",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "WINDOW",
        "QUALIFY",
        "SET",
        "VALUES",
        "SELECT",
        "AS",
        "POSITIONAL",
        "ASOF",
        "ANTI",
        "SEMI",
        "LATERAL",
    ]
)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _quote(name: str) -> str:
    return name if _IDENTIFIER_RE.match(name) else '"' + name.replace('"', '""') + '"'


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _option_names() -> dict[tuple[str, ...], list[str]]:
    """Statement prefix → the option names its ``WITH (...)`` takes."""
    from cfdb.engine.cfql_batch import BATCH_OPTIONS
    from cfdb.engine.handlers import grid, instances, models, scaling, valuate

    return {
        ("LOAD",): sorted(instances._OPTIONS),
        ("CREATE", "MODEL"): list(models._CFDB_OPTIONS),
        ("CREATE", "OR", "REPLACE", "MODEL"): list(models._CFDB_OPTIONS),
        ("FOREACH",): sorted(BATCH_OPTIONS),
        ("EXPLAIN", "FOREACH"): sorted(BATCH_OPTIONS),
        ("EXPLAIN", "PLAN", "FOREACH"): sorted(BATCH_OPTIONS),
        ("BEGIN", "BATCH"): sorted(BATCH_OPTIONS),
        ("EXPLAIN", "BEGIN", "BATCH"): sorted(BATCH_OPTIONS),
        ("EXPLAIN", "PLAN", "BEGIN", "BATCH"): sorted(BATCH_OPTIONS),
        ("MATERIALIZE", "GRID"): sorted(grid.RUN_OPTIONS),
        ("VALUATE",): list(valuate._OPTIONS),
        ("FIT", "SCALING", "LAWS"): sorted(scaling.FIT_OPTIONS),
        ("PLOT", "SCALING", "LAWS"): sorted(scaling.PLOT_OPTIONS),
    }


def statement_prefixes() -> list[tuple[str, ...]]:
    """The keyword sequences that start cfdb statements (``("LOAD", "DATASET")``, ...)."""
    from cfdb.lang.dialect import CfdbParser

    return sorted(CfdbParser.CFDB_STATEMENTS)


class Names:
    """What completion offers: keywords, and names read from the database after each input."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.keywords: list[str] = []
        self.names: list[tuple[str, str]] = []
        self.columns: dict[str, list[str]] = {}
        self.models: list[str] = []
        self.grids: list[str] = []

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            rel = self.shell.db.sql(sql)
            return rel.fetchall() if rel is not None else []
        except Exception as exc:
            if self.shell.debug:
                self.shell.show_error(exc)
            return []

    def load_keywords(self) -> None:
        """SQL keywords of the database plus cfdb's own (once per session)."""
        words = list(FALLBACK_KEYWORDS) + [r[0] for r in self._rows(_KEYWORDS_SQL)]
        cfdb_words = [w.upper() for w in statement_keywords()]
        self.keywords = _unique([*cfdb_words, *sorted(set(words) - set(cfdb_words))])

    def refresh(self) -> None:
        """Table, view, column, model and grid names (after each input)."""
        rows = self._rows(_NAMES_SQL)
        order = {"table": 0, "view": 1, "column": 2}
        self.names = sorted(
            {(str(n), str(k)) for n, k, _ in rows}, key=lambda nk: (order[nk[1]], nk[0].lower())
        )
        self.columns = {}
        for name, kind, table in rows:
            if kind == "column":
                self.columns.setdefault(str(table).lower(), []).append(str(name))
        tables = {n.lower() for n, k in self.names if k == "table"}
        self.models = (
            [r[0] for r in self._rows("SELECT Name FROM Models ORDER BY Name")]
            if ("models" in tables)
            else []
        )
        self.grids = (
            [r[0] for r in self._rows("SELECT Name FROM Grids ORDER BY Name")]
            if ("grids" in tables)
            else []
        )

    def table_names(self) -> list[str]:
        return [n for n, k in self.names if k in ("table", "view")]

    def general(self, word: str) -> Iterator[tuple[str, str, str]]:
        """(text to insert, shown text, kind) for every name or keyword ``word`` starts."""
        prefix = word.lower()
        seen: set[str] = set()
        for name, kind in self.names:
            if name.lower().startswith(prefix) and name not in seen:
                seen.add(name)
                yield _quote(name), name, kind
        lower = word.islower()
        for keyword in self.keywords:
            if keyword.lower().startswith(prefix) and keyword not in seen:
                seen.add(keyword)
                yield (keyword.lower() if lower else keyword), keyword, "keyword"

    # -- context ------------------------------------------------------------------------------
    def aliases(self, text: str) -> dict[str, str]:
        """alias (lower case) → table name, from the FROM / JOIN clauses of ``text``."""
        found: dict[str, str] = {}
        for m in _TABLE_REF_RE.finditer(text):
            table, alias = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            if table is None:
                continue
            table = _unquote(table.split(".")[-1])
            found.setdefault(table.lower(), table)
            if alias and alias.upper() not in _NOT_ALIAS:
                found[_unquote(alias).lower()] = table
        return found

    def complete(self, text: str, whole: str) -> Iterator[tuple[str, int, str, str]]:
        """(insert, start offset ≤ 0, shown, kind) for the cursor at the end of ``text``;
        ``whole`` is the entire buffer (aliases may be defined after the cursor)."""
        statement = text[text.rfind(";") + 1 :]
        word_m = _WORD_RE.search(statement)
        word = word_m.group() if word_m else ""
        dotted = _DOTTED_RE.search(statement)
        if dotted:
            table = self.aliases(whole).get(_unquote(dotted.group(1)).lower())
            part = dotted.group(2)
            if table is not None:
                for col in self.columns.get(table.lower(), []):
                    if col.lower().startswith(part.lower()):
                        yield _quote(col), -len(part), col, f"{table} column"
                return
        before = statement[: len(statement) - len(word)]
        words = [w.upper() for w in _WORDS_RE.findall(before)]
        special = list(self._special(words, before))
        lower = word.islower()
        for name, kind in special:
            if name.lower().startswith(word.lower()):
                insert = name.lower() if kind == "keyword" and lower else name
                yield insert, -len(word), name, kind
        # names of a kind that fits here replace the rest; the next word of a cfdb
        # statement comes first, then everything else
        if not word or any(kind != "keyword" for _, kind in special):
            return
        offered = {name for name, _ in special}
        for insert, shown, kind in self.general(word):
            if shown not in offered:
                yield insert, -len(word), shown, kind

    def _special(self, words: Sequence[str], before: str) -> Iterator[tuple[str, str]]:
        from cfdb.datasets import DATASETS
        from cfdb.generators.base import GENERATORS
        from cfdb.models.kinds import MODEL_KINDS

        last = words[-1] if words else ""
        tail = before.rstrip()
        if before and not before[-1].isspace() and before[-1] not in "(,":
            return  # the cursor is inside something else (a string, a dotted name, ...)
        # the next keyword of a cfdb statement
        prefixes = statement_prefixes()
        for prefix in prefixes:
            if len(prefix) > len(words) and tuple(words) == prefix[: len(words)]:
                yield prefix[len(words)], "keyword"
        if words[:2] == ["LOAD", "DATASET"] and len(words) == 2:
            yield from ((n, "dataset") for n in DATASETS.names())
        elif last == "USING" and not tail.endswith("("):
            yield from ((n, "generator") for n in GENERATORS.names())
        elif (words[:1] == ["PREDICT"] and len(words) == 1) or (
            words[:2] == ["DROP", "MODEL"] and words[2:] in ([], ["IF", "EXISTS"])
        ):
            yield from ((n, "model") for n in self.models)
        elif words[:2] in (["MATERIALIZE", "GRID"], ["DROP", "GRID"]) and (
            words[2:] in ([], ["IF", "EXISTS"])
        ):
            yield from ((n, "grid") for n in self.grids)
        elif (
            (last == "AS" and "MODEL" in words[:4] and words[0] == "CREATE")
            or (last == "MODEL" and words[:1] in (["CREATE"], ["WHATIF"]) and "GRID" in words[:4])
            or (last == "MODEL" and words[:1] == ["WHATIF"])
        ):
            yield from ((n, "model kind") for n in MODEL_KINDS.names())
        else:
            options = self._options(words, before)
            yield from ((n, "option") for n in options)

    def _options(self, words: Sequence[str], before: str) -> list[str]:
        """Option names when the cursor is inside ``WITH (`` at an option's name."""
        at = before.upper().rfind("WITH")
        if at < 0:
            return []
        inside = before[at + 4 :].lstrip()
        if not inside.startswith("(") or inside.count("(") <= inside.count(")"):
            return []
        if inside.rstrip()[-1:] not in ("(", ","):
            return []
        for prefix, names in sorted(_option_names().items(), key=lambda p: -len(p[0])):
            if tuple(words[: len(prefix)]) == prefix:
                return names
        return []


def make_completer(shell: Shell) -> Any:
    """A prompt_toolkit completer of dot-commands and their arguments, and of SQL and CFQL."""
    from prompt_toolkit.completion import Completer, Completion

    from cfdb.shell import modes
    from cfdb.shell.commands import COMMANDS

    class ShellCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Any]:
            text = document.text_before_cursor
            stripped = text.lstrip()
            if stripped.startswith(".") and "\n" not in stripped:
                yield from self._dot(stripped)
                return
            names = shell.completion
            if names is None:
                return
            for insert, start, shown, kind in names.complete(text, document.text):
                yield Completion(insert, start, display=shown, display_meta=kind)

        def _dot(self, text: str) -> Iterator[Any]:
            command, space, arg = text.partition(" ")
            if not space:
                for name, cmd in COMMANDS.items():
                    if name.startswith(command.lower()):
                        yield Completion(name, -len(command), display_meta=cmd.help)
                return
            names = shell.completion
            tables = names.table_names() if names is not None else []
            options: Sequence[str] = {
                ".schema": tables,
                ".tables": tables,
                ".dump": tables,
                ".indexes": tables,
                ".mode": modes.MODES,
                ".help": [n.lstrip(".") for n in COMMANDS],
            }.get(command.lower(), ())
            if COMMANDS.get(command.lower()) and "on|off" in COMMANDS[command.lower()].usage:
                options = ("on", "off")
            arg = arg.lstrip()
            for option in options:
                if option.lower().startswith(arg.lower()):
                    yield Completion(option, -len(arg))

    return ShellCompleter()


def make_lexer(shell: Shell) -> Any:
    """A lexer highlighting SQL and cfdb keywords (off with ``.highlight off``)."""
    try:
        from prompt_toolkit.lexers import DynamicLexer, PygmentsLexer
        from pygments.lexers.sql import SqlLexer
        from pygments.token import Keyword, Name
    except ImportError:
        return None

    cfdb_words = {w.upper() for w in statement_keywords()} | {
        "GENERATE",
        "USING",
        "SUBSETS",
        "METRIC",
        "EVALUATE",
        "UNITS",
        "SLICE",
    }

    class CfdbSqlLexer(SqlLexer):  # type: ignore[misc]
        """DuckDB SQL plus the words of cfdb's statements, as keywords."""

        name = "cfdb"

        def get_tokens_unprocessed(self, text: str, *args: Any) -> Iterator[Any]:
            for index, token, value in super().get_tokens_unprocessed(text, *args):
                if token in Name and value.upper() in cfdb_words:
                    token = Keyword
                yield index, token, value

    lexer = PygmentsLexer(CfdbSqlLexer)
    return DynamicLexer(lambda: lexer if shell.highlight else None)


def toolbar(shell: Shell) -> str:
    """The bottom toolbar: the database file and whether it is shared, an open batch or
    transaction, the timer, the mode and where output goes."""
    session = getattr(shell.db, "session", None)
    parts = [shell.name or ":memory:"]
    if shell.name:
        if shell.share and not shell.kept_reason:
            parts.append("shared while idle")
        elif shell.share:
            parts.append(f"locked ({shell.kept_reason})")
        else:
            parts.append("locked (.share off)")
    if session is not None and session.open_block is not None:
        parts.append("BATCH open")
    if shell.in_transaction:
        parts.append("transaction open")
    parts.append(f"timer {'on' if shell.timer else 'off'}")
    parts.append(f"mode {shell.mode}")
    if shell.output_name != "stdout":
        parts.append(f"output → {shell.output_name}")
    return " " + " │ ".join(parts)
