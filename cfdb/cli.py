"""The ``cfdb`` command: argument parsing and the ``shell``, ``run`` and ``demo`` commands.

``cfdb [shell] [FILE] [-c SQL]`` opens the shell (interactive on a terminal, otherwise it runs
``-c`` or standard input as a script); ``cfdb run SCRIPT.sql [--db FILE]`` runs a script file;
``cfdb demo [--db FILE]`` runs the bundled demo. Exit status: 0 on success, 1 when a statement
fails, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from cfdb import __version__
from cfdb.api import Database, connect
from cfdb.shell import Shell, show_exception
from cfdb.shell.modes import MODES

COMMANDS = ("shell", "run", "demo", "serve")

#: The history file of the interactive shell, unless ``CFDB_HISTORY`` names another one.
DEFAULT_HISTORY = "~/.cfdb_history"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfdb",
        description="What-if analysis of machine-learning models in SQL, on DuckDB.",
        epilog="Without a command, cfdb runs 'shell': 'cfdb FILE' opens FILE in the shell.",
    )
    parser.add_argument("--version", action="version", version=f"cfdb {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")

    shell = sub.add_parser(
        "shell",
        help="interactive SQL shell (or run -c SQL / standard input)",
        description="Open a database in the interactive shell. With -c, or when standard "
        "input is not a terminal, run the statements and exit (status 1 on error).",
    )
    shell.add_argument("file", nargs="?", metavar="FILE", help="database file (default: in-memory)")
    shell.add_argument("-c", "--command", metavar="SQL", help="run these statements and exit")
    _common(shell)
    shell.add_argument(
        "--keep-lock",
        action="store_true",
        help="keep the file open (and locked) between statements, as .share off does; by "
        "default the shell releases it after each input so other processes can open the file "
        "(the session's temporary tables, settings and macros are kept either way)",
    )
    shell.add_argument(
        "--mode",
        metavar="MODE",
        choices=MODES,
        help=f"output mode, as .mode MODE ({', '.join(MODES)}; default: duckbox)",
    )
    shell.set_defaults(func=cmd_shell)

    run = sub.add_parser(
        "run",
        help="run a SQL script file",
        description="Run the statements of a script file, printing each result. Stops at "
        "the first error (exit status 1).",
    )
    run.add_argument("script", metavar="SCRIPT", help="the script file ('-' for standard input)")
    run.add_argument("--db", metavar="FILE", help="database file (default: in-memory)")
    _common(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="load the Adult data, train models, show predictions",
        description="Run the bundled demo on a database file.",
    )
    demo.add_argument(
        "--db", metavar="FILE", default="demo.duckdb", help="database file (default: %(default)s)"
    )
    demo.add_argument("--debug", action="store_true", help="show tracebacks with errors")
    demo.set_defaults(func=cmd_demo)

    from cfdb.serve.command import add_parser as add_serve  # imports no web stack

    add_serve(sub)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read-only", action="store_true", help="open the database read-only")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading models stored as pickles (runs code from the file)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks with errors")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "shell")
    args = build_parser().parse_args(args_list)
    if getattr(args, "debug", False):
        os.environ["CFDB_DEBUG"] = "1"  # errors from worker processes carry their traceback
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _errors() -> Console:
    return Console(stderr=True, highlight=False)


def _is_file(path: str | None) -> bool:
    return path is not None and path != ":memory:"


def _open(path: str | None, args: argparse.Namespace) -> Database | None:
    try:
        return connect(path, read_only=args.read_only, allow_pickle=args.allow_pickle)
    except Exception as exc:
        show_exception(exc, _errors(), debug=args.debug)
        return None


def cmd_shell(args: argparse.Namespace) -> int:
    db = _open(args.file, args)
    if db is None:
        return 1
    shell = Shell(db, debug=args.debug, name=args.file)
    if args.mode:
        shell.mode = args.mode
    try:
        if args.command is not None:
            return 0 if shell.run_script(args.command) else 1
        if not sys.stdin.isatty():
            return 0 if shell.run_script(sys.stdin.read()) else 1
        shell.share = _is_file(args.file) and not args.keep_lock
        history = os.environ.get("CFDB_HISTORY", DEFAULT_HISTORY) or None
        plain = os.environ.get("TERM", "") in ("", "dumb", "unknown") or not sys.stdout.isatty()
        return shell.repl(history=history, plain=plain)
    finally:
        shell.db.close()  # .open may have replaced the database


def cmd_run(args: argparse.Namespace) -> int:
    source = "<stdin>" if args.script == "-" else args.script
    try:
        script = sys.stdin.read() if args.script == "-" else Path(args.script).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _errors().out(f"cfdb: cannot read {source}: {reason}", style="red", highlight=False)
        return 1
    db = _open(args.db, args)
    if db is None:
        return 1
    try:
        return 0 if Shell(db, debug=args.debug).run_script(script, source=source) else 1
    finally:
        db.close()


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from cfdb.demo import run as run_demo
    except ModuleNotFoundError as exc:
        if exc.name != "cfdb.demo":
            raise
        _errors().out("cfdb: the demo is not part of this installation", style="red")
        return 1
    try:
        run_demo(args.db, Console())
    except Exception as exc:
        show_exception(exc, _errors(), debug=args.debug)
        return 1
    return 0
