"""Name registries for policies and model adapters, with did-you-mean errors (as lm-eval's)."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists close matches and every registered name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps short names (``"dual"``, ``"threshold"``, ``"llada"``) to classes of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@caches.register("dual")``. Sets ``cls.name``."""

        def add(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to "
                    f"{self._entries[name].__qualname__}; pick another name"
                )
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return add

    def get(self, name: str) -> type[T]:
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(sorted(self._entries))}."
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, type[T]]]:
        return iter(sorted(self._entries.items()))

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
