"""The shell's former module name, kept for imports: see :mod:`cfdb.shell`."""

from __future__ import annotations

from cfdb.shell import Shell, first_word, is_blank, show_exception, split_units
from cfdb.shell.complete import make_completer

__all__ = ["Shell", "first_word", "is_blank", "make_completer", "show_exception", "split_units"]
