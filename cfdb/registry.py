"""Registry: one name -> plugin table per pluggable kind (model kinds, generators, ...).

Built-ins register exactly as third parties do; third parties may also register through the
entry-point group given to the registry (``cfdb.models``, ``cfdb.generators``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from cfdb.errors import CfdbPluginError

T = TypeVar("T")


class Registry(Generic[T]):
    """A table of plugins of one kind, keyed by a short lower-case name.

    Args:
        kind: what the plugins are, for error messages ("model kind", "generator").
        entry_point_group: the ``importlib.metadata`` group loaded on first lookup.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded_entry_points = entry_point_group is None

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; a duplicate name raises :class:`CfdbPluginError`."""
        key = name.lower()
        if key in self._items:
            raise CfdbPluginError(f"{self.kind} {name!r} is already registered")
        self._items[key] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda item: self.register(name, item)

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.entry_point_group or ""):
            if ep.name.lower() not in self._items:
                self.register(ep.name, ep.load())

    def get(self, name: str) -> T:
        """The plugin called ``name``; unknown names raise with the list of known ones."""
        self._load_entry_points()
        try:
            return self._items[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise CfdbPluginError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
