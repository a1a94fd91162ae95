"""Name registries for everything nameable (cache and unmask policies, confidence measures, tasks,
model families), with did-you-mean errors (as lm-eval's) and a base-class check at registration."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists close matches and every registered name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RegistrationError(TypeError, ValueError):
    """A class that cannot be registered under a name (wrong base, wrong config base, name taken)."""


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    """Maps short names (``"dual"``, ``"threshold"``, ``"llada"``) to classes of one kind.

    ``base``: registered classes must subclass it; when ``base`` has a nested ``Config`` class, so
    must theirs. Registering the same qualified class name again replaces the entry (a notebook
    cell run twice, a module reload); a different class under a taken name is refused. An unknown
    name triggers one load of the installed plugins (``fastdllm.plugins``) before the error.
    """

    def __init__(self, kind: str, base: type | None = None, *, set_name: bool = True) -> None:
        self.kind, self.base, self.set_name = kind, base, set_name
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@cache_policies.register("dual")``. Sets ``cls.name`` (unless ``set_name=False``)."""

        def add(cls: type[T]) -> type[T]:
            self._check(name, cls)
            if self.set_name:
                cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return add

    def unregister(self, name: str) -> type[T]:
        """Remove and return the class registered under ``name`` (tests, notebooks)."""
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries.pop(name)

    def _check(self, name: str, cls: Any) -> None:
        where = f"{self.kind} {name!r}"
        if not isinstance(name, str) or not name.strip():
            raise RegistrationError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if not isinstance(cls, type):
            raise RegistrationError(f"{where}: register a class (use it as a class decorator), got {cls!r}")
        base = self.base
        if base is not None and not issubclass(cls, base):
            raise RegistrationError(f"{where}: {cls.__qualname__} does not subclass {base.__qualname__}; "
                                    f"derive it from {base.__module__}.{base.__qualname__}")
        base_config = getattr(base, "Config", None) if base is not None else None
        if isinstance(base_config, type) and not issubclass(getattr(cls, "Config", base_config), base_config):
            bad = cls.Config  # type: ignore[attr-defined]
            raise RegistrationError(
                f"{where}: {cls.__qualname__}.Config derives from {bad.__mro__[1].__qualname__}, not from "
                f"{base.__qualname__}.Config; write `class Config({base.__qualname__}.Config): ...` "  # type: ignore[union-attr]
                f"(it carries the fields every {self.kind} takes: {', '.join(base_config.model_fields) or 'none'})")
        old = self._entries.get(name)
        if old is not None and qualified_name(old) != qualified_name(cls):
            raise RegistrationError(f"{where} is already registered to {qualified_name(old)}; pick another name "
                                    f"for {qualified_name(cls)}")

    def get(self, name: str) -> type[T]:
        if name in self._entries:
            return self._entries[name]
        from fastdllm.plugins import load_plugins

        load_plugins()  # an installed plugin may provide it (entry points load once)
        if name in self._entries:
            return self._entries[name]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(sorted(self._entries))}."

    @property
    def entries(self) -> dict[str, type[T]]:
        """The live name → class dict (read it; register through ``register``)."""
        return self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, type[T]]]:
        return iter(sorted(self._entries.items()))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def describe_fields(config_cls: Any) -> list[tuple[str, str, Any]]:
    """(name, type, default) for each field of a pydantic config class, for ``fastdllm ls``."""
    rows = []
    for field_name, info in config_cls.model_fields.items():
        ann = info.annotation
        text = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
        rows.append((field_name, text, info.default))
    return rows
