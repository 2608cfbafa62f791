"""Ctrl-C while a statement runs: cancel it within a moment, whatever it is doing.

Python runs a SIGINT handler only between bytecodes of the main thread, so while the main
thread waits inside DuckDB (a long join, say) a plain ``KeyboardInterrupt`` arrives only when
the query ends by itself. The signal module's wakeup file descriptor is written by the C-level
handler at once, though: a watcher thread reads it and calls the database's ``interrupt()``,
which DuckDB checks between vectors, so the query stops and raises in the main thread. The
Python-level handler still raises ``KeyboardInterrupt`` for work done in Python (cfdb's own
statements, model training, rendering rows).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress


@contextmanager
def cancel_on_sigint(interrupt: Callable[[], None]) -> Iterator[None]:
    """While the block runs, Ctrl-C calls ``interrupt()`` (from a watcher thread) and raises
    ``KeyboardInterrupt`` in the main thread. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def watch() -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return  # the writer was closed: the statement is over
            if signal.SIGINT in data:
                with suppress(Exception):
                    interrupt()

    previous_handler = signal.signal(signal.SIGINT, handler)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="cfdb-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        writer.close()
        watcher.join(timeout=5)
        reader.close()
