"""The shell's dot-commands, with the names, arguments and meanings of DuckDB's CLI.

Every command is one function ``(shell, args, raw) -> bool`` registered in :data:`COMMANDS`
with its usage line and one line of help; ``.help`` and the docs list them from there.
Differences to DuckDB's CLI are few and deliberate: ``.bail`` is on by default (a cfdb script
stops at its first error), ``.share on|off`` is cfdb's own (releasing the file while idle),
and ``.dump`` / ``.schema`` include cfdb's catalog tables, which are ordinary tables.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfdb import format as fmt
from cfdb.errors import CfdbCatalogError
from cfdb.shell import modes

if TYPE_CHECKING:
    from cfdb.shell.core import Shell


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Callable[[Shell, list[str], str], bool]


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str) -> Callable[[Any], Any]:
    def add(fn: Callable[[Shell, list[str], str], bool]) -> Callable[[Shell, list[str], str], bool]:
        COMMANDS[name] = Command(f"{name} {usage}".strip(), help, fn)
        return fn

    return add


def run_command(shell: Shell, line: str) -> bool:
    """Run one dot-command line (``.name args...``)."""
    name, _, raw = line.strip().partition(" ")
    name, raw = name.lower(), raw.strip()
    cmd = COMMANDS.get(name)
    if cmd is None:
        return shell.fail(f"unknown command {name}; enter .help for the list")
    try:
        args = shlex.split(raw)
    except ValueError as exc:
        return shell.fail(f"{name}: {exc}")
    return cmd.run(shell, args, raw)


def _usage(shell: Shell, name: str, extra: str = "") -> bool:
    return shell.fail(f"usage: {COMMANDS[name].usage}{extra}")


def _switch(shell: Shell, name: str, args: list[str]) -> bool | None:
    """The on/off argument of ``name`` (None after printing the usage)."""
    if len(args) == 1 and args[0].lower() in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        return args[0].lower() in ("on", "1", "true", "yes")
    _usage(shell, name)
    return None


def _set_flag(attr: str, name: str) -> Callable[[Shell, list[str], str], bool]:
    def run(shell: Shell, args: list[str], raw: str) -> bool:
        value = _switch(shell, name, args)
        if value is None:
            return False
        setattr(shell, attr, value)
        return True

    return run


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rows(shell: Shell, sql: str) -> list[tuple[Any, ...]]:
    rel = shell.db.sql(sql)
    return rel.fetchall() if rel is not None else []


def _unescape(text: str) -> str:
    return text.encode("utf-8").decode("unicode_escape")


# -- help and leaving --------------------------------------------------------------------------
@command(".help", "?PATTERN?", "show this help, or the commands matching PATTERN")
def _help(shell: Shell, args: list[str], raw: str) -> bool:
    names = [n for n in COMMANDS if not args or args[0].lstrip(".").lower() in n]
    width = max(len(COMMANDS[n].usage) for n in COMMANDS) + 2
    lines = [f"{COMMANDS[n].usage:<{width}}{COMMANDS[n].help}" for n in names]
    if not args:
        lines = [
            "Statements end with ';' and may span several lines. Plain SQL goes to DuckDB;",
            "cfdb adds statements such as LOAD DATASET adult; CREATE MODEL m AS",
            "logistic_regression TRAIN ON (SELECT ...); PREDICT m ON (SELECT ...).",
            "",
            *lines,
            "",
            f"Modes: {' '.join(modes.MODES)}.",
            "Tab completes keywords, tables, columns (alias.col too), models, grids, generators",
            "and options; Ctrl-C cancels the statement being typed or running; Ctrl-D leaves.",
        ]
        if shell.share:
            lines += [
                "",
                "Sharing is on: the file is released after each input, so other programs can",
                "open it while the shell waits (e.g. duckdb -readonly FILE); temporary tables,",
                "SET options, attached files, macros and prepared statements are kept and",
                "re-applied. .share off keeps one connection and the lock instead.",
            ]
    shell.print("\n".join(lines))
    return True


@command(".quit", "", "exit this program (also Ctrl-D)")
def _quit(shell: Shell, args: list[str], raw: str) -> bool:
    shell.done = True
    return True


@command(".exit", "?CODE?", "exit this program with return code CODE")
def _exit(shell: Shell, args: list[str], raw: str) -> bool:
    if args and not args[0].lstrip("-").isdigit():
        return _usage(shell, ".exit")
    shell.exit_code = int(args[0]) if args else 0
    shell.done = True
    return True


# -- output ------------------------------------------------------------------------------------
@command(".mode", "?MODE? ?TABLE?", "set the output mode (see Modes in .help); TABLE for insert")
def _mode(shell: Shell, args: list[str], raw: str) -> bool:
    if not args:
        shell.print(f"current output mode: {shell.mode}")
        return True
    mode = args[0].lower()
    if mode not in modes.MODES:
        return shell.fail(f"mode should be one of: {' '.join(modes.MODES)}")
    shell.mode = mode
    if mode == "insert":
        shell.options.table = args[1] if len(args) > 1 else "table"
    if mode == "tabs":
        shell.options.separator = None
    return True


@command(".headers", "on|off", "turn display of headers on or off (not for duckbox)")
def _headers(shell: Shell, args: list[str], raw: str) -> bool:
    value = _switch(shell, ".headers", args)
    if value is None:
        return False
    shell.options.headers = value
    return True


@command(".nullvalue", "STRING", "use STRING in place of NULL values")
def _nullvalue(shell: Shell, args: list[str], raw: str) -> bool:
    if len(args) != 1:
        return _usage(shell, ".nullvalue")
    shell.options.nullvalue = args[0]
    return True


@command(".separator", "COL ?ROW?", "change the column and row separators (list, csv modes)")
def _separator(shell: Shell, args: list[str], raw: str) -> bool:
    if not 1 <= len(args) <= 2:
        return _usage(shell, ".separator")
    shell.options.separator = _unescape(args[0])
    if len(args) == 2:
        shell.options.row_separator = _unescape(args[1])
    return True


@command(".width", "NUM1 NUM2 ...", "set minimum column widths for column mode")
def _width(shell: Shell, args: list[str], raw: str) -> bool:
    try:
        shell.options.widths = [int(a) for a in args]
    except ValueError:
        return _usage(shell, ".width")
    return True


@command(".maxrows", "COUNT", "rows shown by duckbox and line modes (default 40; 0: all)")
def _maxrows(shell: Shell, args: list[str], raw: str) -> bool:
    if not args:
        shell.print(str(shell.max_rows))
        return True
    if len(args) != 1 or not args[0].isdigit():
        return _usage(shell, ".maxrows", " (a number, 0 for all rows)")
    shell.max_rows = int(args[0])
    return True


@command(".maxwidth", "COUNT", "width duckbox tables must fit (0: the terminal's width)")
def _maxwidth(shell: Shell, args: list[str], raw: str) -> bool:
    if len(args) != 1 or not args[0].isdigit():
        return _usage(shell, ".maxwidth")
    shell.max_width = int(args[0])
    return True


@command(".columns", "", "column-wise rendering of query results (one line per column)")
def _columns(shell: Shell, args: list[str], raw: str) -> bool:
    shell.options.transpose = True
    return True


@command(".rows", "", "row-wise rendering of query results (default)")
def _rows_cmd(shell: Shell, args: list[str], raw: str) -> bool:
    shell.options.transpose = False
    return True


@command(".output", "?FILE?", "send output to FILE, or back to standard output without FILE")
def _output(shell: Shell, args: list[str], raw: str) -> bool:
    return shell.redirect(args[0] if args else None)


@command(".once", "FILE", "send the output of the next statement only to FILE")
def _once(shell: Shell, args: list[str], raw: str) -> bool:
    if len(args) != 1:
        return _usage(shell, ".once")
    return shell.redirect(args[0], once=True)


@command(".excel", "", "show the output of the next statement in a spreadsheet (as CSV)")
def _excel(shell: Shell, args: list[str], raw: str) -> bool:
    fd, path = tempfile.mkstemp(prefix="cfdb-", suffix=".csv")
    os.close(fd)
    previous = shell.mode
    if not shell.redirect(path, once=True):
        return False
    shell.mode = "csv"

    def opened(name: str) -> None:
        shell.mode = previous
        opener = ["open"] if platform.system() == "Darwin" else [shutil.which("xdg-open") or ""]
        if sys.platform == "win32":
            os.startfile(name)  # type: ignore[attr-defined]
        elif opener[0]:
            subprocess.Popen([*opener, name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            shell.print(f"no spreadsheet program found; the result is in {name}")

    shell._after_once = opened
    return True


@command(".print", "STRING...", "print literal STRING")
def _print(shell: Shell, args: list[str], raw: str) -> bool:
    shell.print(" ".join(args))
    return True


@command(".echo", "on|off", "print each command before it runs")
def _echo(shell: Shell, args: list[str], raw: str) -> bool:
    return _set_flag("echo", ".echo")(shell, args, raw)


@command(".timer", "on|off", "print the time each statement takes")
def _timer(shell: Shell, args: list[str], raw: str) -> bool:
    return _set_flag("timer", ".timer")(shell, args, raw)


@command(".changes", "on|off", "show the number of rows changed by SQL")
def _changes(shell: Shell, args: list[str], raw: str) -> bool:
    return _set_flag("changes", ".changes")(shell, args, raw)


@command(".bail", "on|off", "stop a script at its first error (cfdb's default: on)")
def _bail(shell: Shell, args: list[str], raw: str) -> bool:
    return _set_flag("bail", ".bail")(shell, args, raw)


@command(".highlight", "on|off", "syntax highlighting of SQL and CFQL while typing")
def _highlight(shell: Shell, args: list[str], raw: str) -> bool:
    return _set_flag("highlight", ".highlight")(shell, args, raw)


@command(".prompt", "MAIN ?CONTINUE?", "replace the prompts")
def _prompt(shell: Shell, args: list[str], raw: str) -> bool:
    if not 1 <= len(args) <= 2:
        return _usage(shell, ".prompt")
    shell.prompt = args[0]
    if len(args) == 2:
        shell.continuation = args[1]
    return True


@command(".show", "", "show the current values of the settings above")
def _show(shell: Shell, args: list[str], raw: str) -> bool:
    o = shell.options
    items = [
        ("echo", "on" if shell.echo else "off"),
        ("headers", "on" if o.headers else "off"),
        ("mode", shell.mode),
        ("nullvalue", f'"{o.nullvalue}"'),
        ("output", shell.output_name),
        ("colseparator", f'"{o.separator or "|"}"'),
        ("rowseparator", '"' + o.row_separator.encode("unicode_escape").decode() + '"'),
        ("width", " ".join(str(w) for w in o.widths)),
        ("filename", shell.name or ":memory:"),
        ("maxrows", str(shell.max_rows)),
        ("timer", "on" if shell.timer else "off"),
        ("bail", "on" if shell.bail else "off"),
        ("share", "on" if shell.share else "off"),
    ]
    shell.print("\n".join(f"{k:>12}: {v}".rstrip() for k, v in items))
    return True


# -- files, the system -------------------------------------------------------------------------
@command(".read", "FILE", "run the statements of a script file")
def _read(shell: Shell, args: list[str], raw: str) -> bool:
    if len(args) != 1:
        return _usage(shell, ".read")
    path = os.path.expanduser(args[0])
    try:
        script = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return shell.fail(f"cannot read {path}: {exc.strerror or exc}")
    return shell.run_script(script, source=path)


@command(".cd", "DIRECTORY", "change the working directory to DIRECTORY")
def _cd(shell: Shell, args: list[str], raw: str) -> bool:
    if len(args) != 1:
        return _usage(shell, ".cd")
    try:
        os.chdir(os.path.expanduser(args[0]))
    except OSError as exc:
        return shell.fail(f"cannot change to {args[0]}: {exc.strerror or exc}")
    return True


def _system(shell: Shell, args: list[str], raw: str) -> bool:
    if not raw:
        return _usage(shell, ".shell")
    done = subprocess.run(raw, shell=True, capture_output=True, text=True, check=False)
    if done.stdout:
        shell.print(done.stdout.rstrip("\n"))
    if done.stderr:
        shell.err.out(done.stderr.rstrip("\n"), highlight=False)
    if done.returncode:
        return shell.fail(f"system command returns {done.returncode}")
    return True


command(".shell", "CMD ARGS...", "run CMD ARGS... in a system shell")(_system)
command(".system", "CMD ARGS...", "run CMD ARGS... in a system shell")(_system)


@command(".open", "?--readonly? ?--new? ?FILE?", "close this database and open FILE instead")
def _open(shell: Shell, args: list[str], raw: str) -> bool:
    from cfdb.api import connect

    flags = {a for a in args if a.startswith("--")}
    files = [a for a in args if not a.startswith("--")]
    if flags - {"--readonly", "--new"} or len(files) > 1:
        return _usage(shell, ".open")
    path = files[0] if files else None
    if path and "--new" in flags and os.path.exists(path):
        os.unlink(path)
    session = shell.db.session
    old = (session.store.path, session.store.read_only, session.allow_pickle)
    shell.db.close()  # first: DuckDB refuses a second connection to the same file
    try:
        db = connect(path, read_only="--readonly" in flags, allow_pickle=old[2])
    except Exception:
        shell.db = connect(old[0], read_only=old[1], allow_pickle=old[2])
        shell._attach_state()
        raise
    shell.db, shell.name = db, path
    shell.in_transaction = False
    shell._attach_state()
    return True


@command(".import", "?--skip N? FILE TABLE", "import CSV data from FILE into TABLE")
def _import(shell: Shell, args: list[str], raw: str) -> bool:
    skip = 0
    if len(args) >= 2 and args[0] == "--skip":
        if not args[1].isdigit():
            return _usage(shell, ".import")
        skip, args = int(args[1]), args[2:]
    args = [a for a in args if a not in ("--csv", "--ascii")]
    if len(args) != 2:
        return _usage(shell, ".import")
    path, table = args
    if not os.path.exists(path):
        return shell.fail(f"cannot open {path}")
    options = [f"skip = {skip}"]
    if shell.mode in ("list", "tabs", "csv") and shell.options.separator:
        options.append(f"delim = {_literal(shell.options.separator)}")
    elif shell.mode == "tabs":
        options.append("delim = '\t'")
    source = f"read_csv({_literal(path)}, {', '.join(options)})"
    exists = _rows(
        shell,
        "SELECT count(*) FROM duckdb_tables() WHERE lower(table_name) = lower("
        f"{_literal(table)}) AND database_name IN (current_database(), 'temp')",
    )[0][0]
    if exists:
        shell.db.sql(f"INSERT INTO {_ident(table)} SELECT * FROM {source}")
    else:
        shell.db.sql(f"CREATE TABLE {_ident(table)} AS SELECT * FROM {source}")
    return True


# -- the catalog -------------------------------------------------------------------------------
_IN_SESSION = "database_name IN (current_database(), 'temp')"


@command(".tables", "?PATTERN?", "list names of tables and views matching LIKE pattern")
def _tables(shell: Shell, args: list[str], raw: str) -> bool:
    where = f" AND name ILIKE {_literal(args[0])}" if args else ""
    names = [
        r[0]
        for r in _rows(
            shell,
            f"SELECT name FROM (SELECT table_name AS name FROM duckdb_tables() WHERE {_IN_SESSION}"
            f" UNION SELECT view_name FROM duckdb_views() WHERE NOT internal AND {_IN_SESSION})"
            f" WHERE true{where} ORDER BY lower(name), name",
        )
    ]
    if names:
        shell.print(fmt.render_names(names, shell.width))
    return True


@command(".indexes", "?TABLE?", "show names of indexes (of tables matching LIKE pattern)")
def _indexes(shell: Shell, args: list[str], raw: str) -> bool:
    where = f" AND table_name ILIKE {_literal(args[0])}" if args else ""
    names = [
        r[0]
        for r in _rows(
            shell,
            f"SELECT index_name FROM duckdb_indexes() WHERE {_IN_SESSION}{where} "
            "ORDER BY index_name",
        )
    ]
    if names:
        shell.print("\n".join(names))
    return True


@command(".databases", "", "list names and files of attached databases")
def _databases(shell: Shell, args: list[str], raw: str) -> bool:
    rows = _rows(
        shell,
        "SELECT database_name, coalesce(path, ''), readonly FROM duckdb_databases() "
        "WHERE NOT internal ORDER BY database_oid",
    )
    shell.print("\n".join(f"{n}: {p} {'r/o' if ro else 'r/w'}" for n, p, ro in rows))
    return True


def schema_ddl(shell: Shell, pattern: str | None = None) -> list[tuple[str, str, str]]:
    """(kind, name, CREATE statement) of the tables, views, macros, indexes and sequences
    of the session (name matching the LIKE ``pattern``), in creation order."""
    like = f" AND name ILIKE {_literal(pattern)}" if pattern else ""
    sql = (
        "SELECT kind, name, ddl FROM ("
        f"SELECT 1 AS k, 'sequence' AS kind, sequence_name AS name, sql AS ddl, 0 AS oid "
        f"FROM duckdb_sequences() WHERE {_IN_SESSION} AND NOT temporary "
        f"UNION ALL SELECT 2, 'table', table_name, sql, table_oid FROM duckdb_tables() "
        f"WHERE {_IN_SESSION} "
        f"UNION ALL SELECT 3, 'macro', function_name, "
        "'CREATE ' || CASE WHEN database_name = 'temp' THEN 'TEMP ' ELSE '' END || 'MACRO ' || "
        "function_name || '(' || array_to_string(parameters, ', ') || ') AS ' || "
        "CASE WHEN function_type = 'table_macro' THEN 'TABLE ' ELSE '' END || "
        "macro_definition || ';', function_oid FROM duckdb_functions() "
        f"WHERE {_IN_SESSION} AND NOT internal AND function_type IN ('macro', 'table_macro') "
        f"UNION ALL SELECT 4, 'view', view_name, sql, view_oid FROM duckdb_views() "
        f"WHERE {_IN_SESSION} AND NOT internal "
        f"UNION ALL SELECT 5, 'index', index_name, sql, index_oid FROM duckdb_indexes() "
        f"WHERE {_IN_SESSION}) WHERE ddl IS NOT NULL{like} ORDER BY k, oid"
    )
    return [(k, n, d) for k, n, d in _rows(shell, sql)]


@command(".schema", "?PATTERN?", "show the CREATE statements of objects matching LIKE PATTERN")
def _schema(shell: Shell, args: list[str], raw: str) -> bool:
    items = schema_ddl(shell, args[0] if args else None)
    if args and not items:
        raise CfdbCatalogError(f"nothing named like {args[0]!r}", hint="see .tables")
    if items:
        shell.print("\n".join(ddl for _, _, ddl in sorted(items, key=lambda i: i[1].lower())))
    return True


@command(".dump", "?TABLE?", "render database content as SQL (TABLE: a LIKE pattern)")
def _dump(shell: Shell, args: list[str], raw: str) -> bool:
    items = schema_ddl(shell, args[0] if args else None)
    lines = ["BEGIN TRANSACTION;"]
    for kind, name, ddl in items:
        lines.append(ddl)
        if kind != "table":
            continue
        rel = shell.db.sql(f"SELECT * FROM {_ident(name)}")
        if rel is None:
            continue
        for row in rel.fetchall():
            values = ",".join(modes.sql_literal(v) for v in row)
            lines.append(f"INSERT INTO {_ident(name)} VALUES({values});")
    lines.append("COMMIT;")
    shell.print("\n".join(lines))
    return True


# -- cfdb's own --------------------------------------------------------------------------------
@command(".share", "?on|off?", "release the file while the shell waits (keeps the session's state)")
def _share(shell: Shell, args: list[str], raw: str) -> bool:
    if not args:
        state = "on" if shell.share else "off"
        extra = f" (the file is kept locked: {shell.kept_reason})" if shell.kept_reason else ""
        shell.print(f"share: {state}{extra}")
        return True
    value = _switch(shell, ".share", args)
    if value is None:
        return False
    if value and shell.db.session.store.path is None:
        return shell.fail("an in-memory database cannot be shared")
    shell.share = value
    return True


@command(".version", "", "show the versions of cfdb and DuckDB")
def _version(shell: Shell, args: list[str], raw: str) -> bool:
    from cfdb import __version__

    duck = _rows(shell, "SELECT version()")[0][0]
    shell.print(f"cfdb {__version__}, DuckDB {duck}")
    return True
