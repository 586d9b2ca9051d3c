"""A tiny generic registry: the only public keys for policies, adapters, tasks and metrics.

Registries fill lazily: a name may point at ``"module:attribute"`` (:meth:`Registry.register_lazy`), and
loaders (:meth:`Registry.add_loader`) run once, on the first lookup. So importing a package parses no
YAML and imports no heavy module, and a registry never has to import the modules that register into it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps short names to objects (classes or factories), with "did you mean" errors.

    >>> POLICIES = Registry("memory policy")
    >>> @POLICIES.register("full")
    ... class FullPolicy: ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._loaders: list[Callable[[], object]] = []

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``name`` as ``"package.module:attribute"``, imported on the first :meth:`get` of it."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._lazy[name] = target

    def add_loader(self, loader: Callable[[], object]) -> None:
        """Run ``loader`` (which registers entries) once, before the next lookup of any name."""
        self._loaders.append(loader)

    def _load(self) -> None:
        while self._loaders:  # popped first: a loader may look names up itself
            self._loaders.pop(0)()

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a name may be registered once."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            self._lazy.pop(name, None)
            return obj

        return decorator

    def register_class(self, name: str) -> Callable[[T], T]:
        """Class decorator: set the class's ``name`` attribute to ``name`` and register it under it."""

        def decorator(cls: T) -> T:
            cls.name = name
            return self.register(name)(cls)

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. a plugin or a test's toy entry) and return what it held."""
        self.get(name)  # a clear error for unknown names
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise :class:`UnknownNameError`."""
        self._load()
        if name in self._lazy and name not in self._entries:
            module, _, attribute = self._lazy[name].partition(":")
            obj = getattr(importlib.import_module(module), attribute)
            self._entries.setdefault(name, obj)  # importing the module may have registered it already
            self._lazy.pop(name, None)
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(names)
            raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Valid names: {valid}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
