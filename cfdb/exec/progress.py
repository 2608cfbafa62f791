"""A progress bar for long runs: done/total, cells per second and time left (rich)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Shows ``description: done/total, rate, ETA`` on stderr when it is a terminal.

    Args:
        description: what is being done ("grid g").
        total: how many items there are.
        unit: what an item is called ("cells").
        enabled: force on/off; ``None`` shows the bar only on a terminal.
    """

    def __init__(
        self, description: str, total: int, unit: str = "cells", enabled: bool | None = None
    ) -> None:
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        show = sys.stderr.isatty() if enabled is None else enabled
        if show and total > 0:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, rate=f"0.0 {unit}/s")
        self.unit = unit

    def advance(self, n: int, elapsed: float) -> None:
        """Record ``n`` more items done, ``elapsed`` seconds after the start."""
        self.done += n
        if self._bar is not None:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            self._bar.update(self._task, advance=n, rate=f"{rate:.1f} {self.unit}/s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
