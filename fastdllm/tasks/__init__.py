"""Synthetic, verifiable tasks for training and evaluating tiny diffusion LMs.

Use :func:`get_task` to build a task by name (``"arithmetic"``, ``"sorting"``)
or from a ``.jsonl`` path, and :func:`sample_mixture`/:func:`iter_mixture` to
stream training problems from several tasks.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from fastdllm.core.registry import Registry
from fastdllm.tasks.arithmetic import ArithmeticTask
from fastdllm.tasks.base import Problem, Split, Task
from fastdllm.tasks.extraction import extract_gsm8k, extract_last_number
from fastdllm.tasks.jsonl import JsonlTask
from fastdllm.tasks.mixture import iter_mixture, sample_mixture
from fastdllm.tasks.sorting import SortingTask

#: Task classes by name; register more with ``@fastdllm.tasks.tasks.register("name")`` (a plugin can).
tasks: Registry[Task] = Registry("task", base=Task, set_name=False)
tasks.register("arithmetic")(ArithmeticTask)
tasks.register("sorting")(SortingTask)
TASKS: dict[str, type[Task]] = tasks.entries  # the live name -> class view


class UnknownTaskError(KeyError, ValueError):
    """Raised by :func:`get_task` for an unknown name (both a KeyError and a ValueError)."""

    def __str__(self) -> str:  # KeyError would otherwise repr-quote the message
        return str(self.args[0]) if self.args else ""


def get_task(name: str | Path | Task, **kwargs: Any) -> Task:
    """Build a task from a registry name or a ``.jsonl`` path.

    Args:
        name: A key of :data:`TASKS`, a path ending in ``.jsonl`` (gives a
            :class:`JsonlTask`), or an already-built :class:`Task` (returned as is).
        **kwargs: Passed to the task's constructor (e.g. ``max_ops=3``).

    Raises:
        UnknownTaskError: unknown name; the message suggests the closest names.
        TypeError: ``kwargs`` the task's constructor does not accept.
    """
    if isinstance(name, Task):
        if kwargs:
            raise TypeError(f"Got a built task {name!r}; kwargs {kwargs} cannot apply to it.")
        return name
    text = str(name)
    if text.lower().endswith(".jsonl"):
        return JsonlTask(text, **kwargs)
    key = text.strip().lower()
    if key not in TASKS:
        from fastdllm.plugins import load_plugins

        load_plugins()  # an installed plugin may register it
    if key not in TASKS:
        close = difflib.get_close_matches(key, TASKS, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTaskError(
            f"Unknown task {text!r}.{hint} Available: {', '.join(sorted(TASKS))}, "
            "or a path ending in '.jsonl'."
        )
    try:
        return TASKS[key](**kwargs)
    except TypeError as err:
        raise TypeError(f"Bad arguments {kwargs} for task {key!r}: {err}") from err


__all__ = [
    "TASKS",
    "ArithmeticTask",
    "JsonlTask",
    "Problem",
    "SortingTask",
    "Split",
    "Task",
    "UnknownTaskError",
    "extract_gsm8k",
    "extract_last_number",
    "get_task",
    "iter_mixture",
    "sample_mixture",
]
