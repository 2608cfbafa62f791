"""The interactive shell (``cfdb shell``): running scripts, dot-commands, output modes,
completion, Ctrl-C cancellation and the session state kept while the file is shared.

Modules: :mod:`~cfdb.shell.core` (the runner and the loop), :mod:`~cfdb.shell.commands`
(dot-commands), :mod:`~cfdb.shell.modes` (output modes), :mod:`~cfdb.shell.complete`
(completion, highlighting, toolbar), :mod:`~cfdb.shell.cancel` (Ctrl-C) and
:mod:`~cfdb.shell.state` (what survives releasing the file). See docs/shell.md.
"""

from __future__ import annotations

from cfdb.shell.core import (
    CONTINUATION,
    PROMPT,
    Shell,
    Unit,
    first_word,
    is_blank,
    show_exception,
    split_units,
)

__all__ = [
    "CONTINUATION",
    "PROMPT",
    "Shell",
    "Unit",
    "first_word",
    "is_blank",
    "show_exception",
    "split_units",
]
