"""The options every parallel statement accepts: ``executor``, ``n_jobs``, ``address``.

One checker for all of them (MATERIALIZE GRID, CFQL generation, VALUATE, ...), so the same
bad value gets the same message everywhere. Errors are :class:`~cfdb.errors.CfdbDataError`
with ``option`` set to the offending option's name, so a handler can point at it in the
statement (``err.located(script, *node.param(err.option).span)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cfdb.errors import CfdbDataError

#: The option names, lower case.
EXEC_OPTIONS = ("executor", "n_jobs", "address")


def _bad(option: str, message: str, hint: str | None = None) -> CfdbDataError:
    err = CfdbDataError(message, hint=hint)
    err.option = option  # type: ignore[attr-defined]
    return err


def check_n_jobs(value: Any, option: str = "n_jobs") -> int:
    """``value`` as a worker count: a positive integer, or -1 for one per core."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
        raise _bad(
            option,
            f"n_jobs must be a positive integer or -1 (one per core), not {value!r}",
            hint="e.g. WITH (n_jobs = 2)",
        )
    return value


def check_executor(value: Any) -> str:
    """``value`` as a registered executor name (lower case)."""
    from cfdb.exec.base import EXECUTORS

    names = sorted(EXECUTORS.names())
    if not isinstance(value, str) or value.lower() not in names:
        raise _bad(
            "executor",
            f"executor must be one of {', '.join(repr(n) for n in names)}, not {value!r}",
        )
    return value.lower()


def check_address(value: Any) -> str | None:
    """``value`` as a cluster address: ``'auto'``, ``'host:port'`` or ``'ray://host:port'``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(
            "address",
            f"address must be a string such as 'auto' or 'host:6379', not {value!r}",
        )
    return value.strip()


@dataclass(frozen=True)
class ExecOptions:
    """Where a statement's heavy work runs.

    Attributes:
        executor: a name in :data:`cfdb.exec.EXECUTORS` (``local``, ``process``, ``ray``).
        n_jobs: parallel workers (``-1``: one per core, or the cluster's CPUs).
        address: the cluster to join (Ray), if any.
    """

    executor: str = "local"
    n_jobs: int = 1
    address: str | None = None

    def make(self) -> Any:
        """The executor these options describe."""
        from cfdb.exec.base import make_executor

        return make_executor(self.executor, self.n_jobs, self.address)


def exec_options(*sources: Mapping[str, Any] | None, default_n_jobs: int = 1) -> ExecOptions:
    """Checked options from ``sources``, the first that sets a key wins (statement options,
    then e.g. a grid's stored options, then the connection's defaults).

    Raises:
        CfdbDataError: a bad value, with ``option`` naming the option.
    """

    def pick(key: str) -> Any:
        for source in sources:
            if source is not None and source.get(key) is not None:
                return source[key]
        return None

    executor = pick("executor")
    n_jobs = pick("n_jobs")
    return ExecOptions(
        executor=check_executor(executor) if executor is not None else "local",
        n_jobs=check_n_jobs(n_jobs) if n_jobs is not None else default_n_jobs,
        address=check_address(pick("address")),
    )


def located_exec_options(
    script: str,
    span_of: Callable[[str], tuple[int, int]],
    *sources: Mapping[str, Any] | None,
    default_n_jobs: int = 1,
) -> ExecOptions:
    """:func:`exec_options` for a statement: a bad value is located at its option in
    ``script`` (``span_of(option)`` gives its span)."""
    try:
        return exec_options(*sources, default_n_jobs=default_n_jobs)
    except CfdbDataError as err:
        raise err.located(script, *span_of(err.option)) from None  # type: ignore[attr-defined]
