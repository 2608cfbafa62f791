"""The ``cfdb serve FILE`` command: argument parsing and running the server with uvicorn.

Imports of the web stack happen in :func:`cmd_serve`, so ``cfdb`` without the ``serve``
extra still parses its arguments and says what to install.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the subparsers ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="web explorer of a database (grids, counterfactuals, data values, SQL)",
        description="Serve a local web explorer of FILE and print its URL. The file is "
        "opened read-only for each request, so other processes can keep writing to it.",
    )
    serve.add_argument("file", metavar="FILE", help="the cfdb database file")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default: %(default)s, this machine only)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (default: %(default)s; 0 picks a free one)",
    )
    serve.add_argument(
        "--read-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the SQL box cannot write (default); --no-read-only runs its statements through "
        "cfdb, writes included",
    )
    serve.add_argument("--debug", action="store_true", help="log tracebacks of internal errors")
    serve.set_defaults(func=cmd_serve)
    return serve


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def cmd_serve(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        import uvicorn

        from cfdb.serve.app import create_app
    except ModuleNotFoundError as exc:
        print(
            f"cfdb: cfdb serve needs the serve extra ({exc.name} is missing): "
            "pip install 'cfdb[serve]'",
            file=err,
        )
        return 1
    if not os.path.isfile(args.file):
        print(f"cfdb: {args.file}: no such file", file=err)
        return 1
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"cfdb: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=err)
        return 1
    # Bound to this machine: only requests that name it (no DNS rebinding from a web page).
    local = args.host in ("127.0.0.1", "localhost")
    allowed = ["127.0.0.1", "localhost"] if local else None
    app = create_app(args.file, read_only=args.read_only, allowed_hosts=allowed)
    config = uvicorn.Config(
        app, log_level="info" if args.debug else "warning", access_log=args.debug
    )
    server = uvicorn.Server(config)
    mode = "read-only" if args.read_only else "read-write"
    print(f"cfdb: serving {args.file} ({mode}) at {url_of(sock)}  (Ctrl-C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
