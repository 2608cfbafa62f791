"""Statement handlers: one function per cfdb statement node, looked up by the node's name.

A handler takes ``(session, node, statement)`` and returns a pyarrow Table (a summary shown to
the user), a DuckDB relation, or ``None``. It runs inside the statement's transaction. Errors it
raises should carry the span of the part at fault (``node.span("name")`` etc.).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Handlers(dict[str, Callable[..., Any]]):
    """The handler table, filled on first lookup: handler modules import the heavy libraries
    (scikit-learn, pandas, scipy), so ``import cfdb`` and plain SQL do not pay for them."""

    loaded = False

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        # every module, even when this key is registered: a module imported on its own (the
        # grid handlers, say) would otherwise hide the hooks other modules add to it (the
        # MARGINAL design's preparer)
        if not _Handlers.loaded:
            load_all()
        return super().get(key, default)


HANDLERS: dict[str, Callable[..., Any]] = _Handlers()


def load_all() -> None:
    """Import every handler module (each registers its statements)."""
    from cfdb.engine.handlers import (  # noqa: F401  (registers handlers)
        cfql,
        grid,
        instances,
        models,
        scaling,
        valuate,
    )

    _Handlers.loaded = True


def handles(
    node_type: type, *, transactional: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the handler of ``node_type``.

    Args:
        node_type: the statement node class.
        transactional: run the handler inside one transaction (the default). Long work that
            commits progress as it goes (so an interruption loses nothing finished) opts out
            and manages its own transactions, e.g. with ``session.store.transaction()`` per
            batch of results.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.transactional = transactional  # type: ignore[attr-defined]
        HANDLERS[node_type.__name__] = fn
        return fn

    return register
