"""One registry type for everything sdeval looks up by name: metrics, judges, preference scorers, pipelines.

An entry is an object, or a lazy `"module:object"` string imported on first use, so a registry can name its
built-ins without importing them (and without the import cycle that importing them would make). Third-party
packages add entries through an entry point group (`sdeval.metrics`, `sdeval.judges`, `sdeval.scorers`,
`sdeval.pipelines`): each entry point's name is the registry name and its value the lazy `module:object`, so a
plugin is imported only when its entry is used. Built-ins and explicit registrations win over a plugin of the same
name (a warning says so).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

from sdeval.core.errors import SdevalError
from sdeval.core.suggest import did_you_mean

T = TypeVar("T")

#: Every installed entry point, read once for every registry, and the sys.path it was read for.
_ENTRY_POINTS: tuple[tuple[str, ...], Any] | None = None


def _read_entry_points(fresh: bool = False) -> Any:
    """The installed entry points (`importlib.metadata.entry_points()`), read again when sys.path has changed."""
    global _ENTRY_POINTS
    path = tuple(sys.path)
    if fresh or _ENTRY_POINTS is None or _ENTRY_POINTS[0] != path:
        from importlib.metadata import entry_points  # read only when a registry is first used

        _ENTRY_POINTS = (path, entry_points())
    return _ENTRY_POINTS[1]


def load_object(target: str) -> object:
    """The object a `module:object` (or `module:object.attribute`) string names."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SdevalError(f"{target!r} is not a 'module:object' reference")
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind, in registration order; plugins of `group` after them.

    `what` names the kind in errors (`unknown metric 'x'`); `check(name, obj)` runs once on each object as it
    becomes available (registered, or imported from its lazy reference) and raises where it is not one.
    """

    def __init__(self, what: str, group: str | None = None, check: Callable[[str, T], None] | None = None) -> None:
        self.what = what
        self.group = group
        self._check = check
        self._entries: dict[str, T | str] = {}  # explicit registrations: objects or lazy references
        self._plugins: dict[str, str] = {}  # the group's entry points at the last scan
        self._loaded: dict[str, T] = {}
        self._scanned: tuple[str, ...] | None = None  # sys.path at the last scan

    def register(self, name: str, obj: T | str) -> T | str:
        """Add `obj` (or a lazy `module:object` reference) under `name`, which must be new."""
        if name in self._entries and self._entries[name] is not obj and self._loaded.get(name) is not obj:
            raise ValueError(f"{self.what} {name!r} is already registered")
        if not isinstance(obj, str) and self._check is not None:
            self._check(name, obj)
        self._entries[name] = obj
        self._loaded.pop(name, None)
        if not isinstance(obj, str):
            self._loaded[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove an explicit registration (tests that register their own)."""
        self._entries.pop(name, None)
        self._loaded.pop(name, None)

    def load_entry_points(self, group: str | None = None) -> None:
        """Read the entry points of `group` (default: this registry's) from the installed distributions afresh."""
        _read_entry_points(fresh=True)
        self._read(group or self.group)

    def _read(self, group: str | None) -> None:
        self._scanned = tuple(sys.path)
        if group is None:
            return
        found: dict[str, str] = {}
        for point in _read_entry_points().select(group=group):
            if point.name in self._entries:
                warnings.warn(
                    f"entry point {point.name} = {point.value} in group {group}: {self.what} {point.name!r} is "
                    "built in; the entry point is ignored",
                    stacklevel=3,
                )
            else:
                found.setdefault(point.name, point.value)
        for name, value in self._plugins.items():
            if found.get(name) != value:
                self._loaded.pop(name, None)
        self._plugins = found

    def _scan(self) -> None:
        # A new sys.path may hold new distributions: read the group again (cheap to compare, costly to read).
        if self.group is not None and self._scanned != tuple(sys.path):
            self._read(self.group)

    def names(self) -> list[str]:
        """Every name, in registration order, plugins last; nothing is imported."""
        self._scan()
        return [*self._entries, *(name for name in self._plugins if name not in self._entries)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The entry `name`, imported on first use; SdevalError naming the closest known name when there is none."""
        self._scan()
        if name in self._loaded:
            return self._loaded[name]
        known = self.names()
        if name not in known:
            raise SdevalError(f"unknown {self.what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
        target = self._entries[name] if name in self._entries else self._plugins[name]
        if not isinstance(target, str):
            return target
        try:
            obj = cast(T, load_object(target))
        except (ImportError, AttributeError) as err:
            raise SdevalError(f"{self.what} {name!r}: cannot load {target}: {err}") from err
        if self._check is not None:
            self._check(name, obj)
        self._loaded[name] = obj
        return obj

    def find(self, name: str) -> T | None:
        """The entry `name`, or None where there is none."""
        return self.get(name) if name in self else None

    def items(self) -> list[tuple[str, T]]:
        """Every (name, entry), each imported, in `names()` order."""
        return [(name, self.get(name)) for name in self.names()]

    def values(self) -> list[T]:
        """Every entry, each imported, in `names()` order."""
        return [self.get(name) for name in self.names()]

    def loaded(self) -> list[T]:
        """The entries imported so far (nothing more is imported)."""
        return list(self._loaded.values())
