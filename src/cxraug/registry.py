"""A tiny name -> object registry shared by classifiers, augmentation policies, generators and metrics."""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, Literal, TypeVar

from cxraug.errors import CxraugError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps registry names (e.g. ``"resnet18"``) to classes or factories."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise CxraugError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def choices(self) -> Any:
        """``Literal[<every name>]``: a command-line option of this type lists the names in ``--help``."""
        return Literal[tuple(self.names())]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
