"""The wire format between cfdb and its worker processes, and the task-running rule both
the process pool and Ray workers follow.

Frames are an 8-byte big-endian length followed by a pickle.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from typing import IO, Any

_HEADER = struct.Struct(">Q")


def read_frame(stream: IO[bytes]) -> Any:
    """The next message on ``stream``, or ``None`` at end of file."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def write_frame(stream: IO[bytes], message: Any, *, dumps: Any = None) -> None:
    """Write one message (pickled with ``dumps``, default :func:`pickle.dumps`)."""
    payload = (dumps or _dumps)(message)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def run_task_chunk(fn: Any, shared: Any, task_id: int, chunk: list[Any]) -> tuple[Any, ...]:
    try:
        return ("ok", task_id, fn(shared, chunk))
    except Exception as first:  # reported to the parent, which names the failing task
        index, exc = -1, first
        if len(chunk) > 1:  # find the task that fails (only paid when one does)
            for i, task in enumerate(chunk):
                try:
                    fn(shared, [task])
                except Exception as again:
                    index, exc = i, again
                    break
        elif chunk:
            index = 0
        trace = "".join(traceback.format_exception(exc))
        return ("error", task_id, index, type(exc).__name__, str(exc), trace)
