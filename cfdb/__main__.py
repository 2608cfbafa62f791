"""``python -m cfdb``: the same as the ``cfdb`` command."""

from __future__ import annotations

from cfdb.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
