"""Named registries: one place where each SAE architecture, analysis or report section is added.

A registration records where it was made, so registering a name twice is refused at import time with
both locations. Registries are cheap to import; what an entry points to may be loaded lazily.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Generic, TypeVar

from sae_store.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, in the order they were registered."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._where: dict[str, str] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` as ``name``; refused (ConfigError) if the name is taken, naming both places."""
        caller = traceback.extract_stack(limit=3)[0]
        where = f"{caller.filename}:{caller.lineno}"
        if name in self._items:
            raise ConfigError(
                f"{self.what} {name!r} is registered twice: at {self._where[name]} and at {where}; "
                "give the new one another name"
            )
        self._items[name] = item
        self._where[name] = where
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a toy entry)."""
        self._items.pop(name, None)
        self._where.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.what} {name!r}; registered: {self.names()}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)
