"""A worker process of the process pool: ``python -m cfdb.exec.worker``.

The worker is a fresh interpreter whose ``__main__`` is this module, so it never imports the
user's script (no ``if __name__ == "__main__":`` guard needed, and it works from stdin, a
shell or a notebook). Work arrives as data over its stdin and results leave over a private
copy of its stdout; the process's own fd 1 is pointed at stderr, so a ``print`` in user code
cannot corrupt the protocol.

Frames are described in :mod:`cfdb.exec.wire`. Messages from the parent:

* ``("hello", sys_path)``: once, the parent's ``sys.path`` (modules the parent can import by
  name, the worker can too);
* ``("state", key, payload)``: ``cloudpickle`` of ``(fn, shared)``, kept until the next
  ``state`` message: a grid's data or a fitted model crosses the pipe once per worker;
* ``("task", task_id, key, chunk)``: run ``fn(shared, chunk)``;
* ``("stop",)``.

Replies: ``("ready", pid)``, ``("ok", task_id, results)``, ``("error", task_id, index,
type_name, message, traceback_text)``. ``index`` is the position in the chunk of the task that
failed (a failing chunk is re-run task by task to find it), or ``-1``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Any

from cfdb.exec.wire import read_frame, run_task_chunk, write_frame


def main() -> None:
    """Serve tasks until the parent says stop or closes the pipe."""
    # Ctrl-C goes to the parent, which decides; the worker is also in its own session.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox = os.fdopen(os.dup(0), "rb")
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in user code goes to stderr
    sys.stdout = sys.stderr
    fn: Any = None
    shared: Any = None
    key: Any = None
    while True:
        message = read_frame(inbox)
        if message is None or message[0] == "stop":
            return
        kind = message[0]
        if kind == "hello":
            for entry in reversed(message[1]):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            write_frame(outbox, ("ready", os.getpid()))
        elif kind == "state":
            import cloudpickle  # noqa: F401  (registers what cloudpickled payloads need)

            key = message[1]
            fn, shared = pickle.loads(message[2])
        elif kind == "task":
            _, task_id, task_key, chunk = message
            if task_key != key:
                reply: tuple[Any, ...] = ("error", task_id, -1, "RuntimeError", "stale state", "")
            else:
                reply = run_task_chunk(fn, shared, task_id, chunk)
            try:
                write_frame(outbox, reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                write_frame(
                    outbox,
                    ("error", task_id, -1, type(exc).__name__, f"unpicklable result: {exc}", ""),
                )


if __name__ == "__main__":
    main()
