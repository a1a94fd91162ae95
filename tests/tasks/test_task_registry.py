"""Tests for the task registry and mixtures."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest

from fastdllm.tasks import (
    TASKS,
    ArithmeticTask,
    SortingTask,
    UnknownTaskError,
    get_task,
    iter_mixture,
    sample_mixture,
)


def test_get_task_by_name() -> None:
    assert set(TASKS) == {"arithmetic", "sorting"}
    task = get_task("arithmetic", max_ops=3)
    assert isinstance(task, ArithmeticTask) and task.max_ops == 3
    assert isinstance(get_task("Sorting"), SortingTask)
    assert get_task(task) is task


def test_unknown_name_suggests() -> None:
    with pytest.raises(KeyError, match="Did you mean 'arithmetic'"):
        get_task("arithmatic")
    with pytest.raises(ValueError, match="Available: arithmetic, sorting"):
        get_task("zzz")
    with pytest.raises(UnknownTaskError) as info:
        get_task("sortin")
    assert str(info.value).startswith("Unknown task 'sortin'. Did you mean 'sorting'?")


def test_bad_kwargs() -> None:
    with pytest.raises(TypeError, match="'sorting'"):
        get_task("sorting", max_ops=3)


def test_sample_mixture_weights() -> None:
    tasks = [ArithmeticTask(), SortingTask()]
    rng = random.Random(0)
    counts = Counter(sample_mixture(rng, tasks, [3, 1]).task for _ in range(4000))
    assert 0.70 < counts["arithmetic"] / 4000 < 0.80
    only = Counter(sample_mixture(rng, tasks, [0, 1]).task for _ in range(200))
    assert only == Counter({"sorting": 200})


def test_iter_mixture_deterministic_and_train_only() -> None:
    tasks = [ArithmeticTask(), SortingTask()]
    first = list(islice(iter_mixture(tasks, seed=3), 300))
    assert first == list(islice(iter_mixture(tasks, seed=3), 300))
    assert first != list(islice(iter_mixture(tasks, seed=4), 300))
    assert {p.task for p in first} == {"arithmetic", "sorting"}
    assert all(tasks[0].split_of(p.prompt) == "train" for p in first)


@pytest.mark.parametrize(
    ("tasks", "weights", "error", "message"),
    [
        ([], None, ValueError, "empty"),
        ([ArithmeticTask()], [1, 2], ValueError, "2 weights for 1 tasks"),
        ([ArithmeticTask()], [-1], ValueError, "weights must be >= 0"),
        (["arithmetic"], None, TypeError, "get_task"),
    ],
)
def test_mixture_errors(tasks, weights, error, message) -> None:
    with pytest.raises(error, match=message):
        sample_mixture(random.Random(0), tasks, weights)
