"""A small, loud plug-in registry (one per kind: datasets, models, pruning methods).

Registration is explicit (one import line per plug-in in the package's ``__init__``),
a duplicate name is an error, and an unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunelab.errors import PrunelabError

T = TypeVar("T")


class UnknownNameError(PrunelabError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def add(self, obj: T) -> T:
        """Register an object under its own ``name`` attribute (method and metric objects)."""
        return self.register(obj.name)(obj)  # type: ignore[attr-defined]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def values(self) -> list[T]:
        """The entries, sorted by name like ``names()``."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
