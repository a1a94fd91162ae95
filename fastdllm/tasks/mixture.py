"""Weighted mixtures of tasks for streaming training data."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from fastdllm.tasks.base import Problem, Split, Task


def _check(tasks: Sequence[Task], weights: Sequence[float] | None) -> list[float]:
    """Validate a task list and weights; return the weights (uniform if ``None``)."""
    if not tasks:
        raise ValueError("tasks is empty; pass at least one Task.")
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(
                f"Expected Task instances, got {type(task).__name__} {task!r}; "
                "build tasks with fastdllm.tasks.get_task(name)."
            )
    if weights is None:
        return [1.0] * len(tasks)
    weights = [float(w) for w in weights]
    if len(weights) != len(tasks):
        raise ValueError(
            f"Got {len(weights)} weights for {len(tasks)} tasks; pass one weight per task."
        )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}.")
    return weights


def sample_mixture(
    rng: random.Random,
    tasks: Sequence[Task],
    weights: Sequence[float] | None = None,
    split: Split = "train",
) -> Problem:
    """Pick a task with probability proportional to its weight, then sample from it."""
    weights = _check(tasks, weights)
    task = tasks[0] if len(tasks) == 1 else rng.choices(tasks, weights=weights)[0]
    return task.sample(rng, split)


def iter_mixture(
    tasks: Sequence[Task],
    weights: Sequence[float] | None = None,
    seed: int = 0,
    split: Split = "train",
) -> Iterator[Problem]:
    """Endless deterministic stream of mixture problems (see :func:`sample_mixture`)."""
    weights = _check(tasks, weights)
    rng = random.Random(f"mixture/{split}/{seed}")
    tasks = list(tasks)
    while True:
        task = tasks[0] if len(tasks) == 1 else rng.choices(tasks, weights=weights)[0]
        yield task.sample(rng, split)
