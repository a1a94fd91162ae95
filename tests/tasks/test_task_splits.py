"""Determinism and train/test separation, shared by all generated tasks."""

from __future__ import annotations

import random

import pytest

from fastdllm.tasks import ArithmeticTask, SortingTask
from fastdllm.tasks.base import hash_fraction

TASKS = [ArithmeticTask(), SortingTask()]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_same_seed_same_problems(task) -> None:
    assert task.generate("test", 200, seed=7) == task.generate("test", 200, seed=7)
    assert task.generate("train", 200, seed=7) != task.generate("train", 200, seed=8)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_splits_disjoint_and_consistent(task) -> None:
    train = task.generate("train", 3000, seed=0)
    test = task.generate("test", 2000, seed=0)
    assert len({p.prompt for p in train}) == 3000  # de-duplicated
    assert {p.prompt for p in train}.isdisjoint(p.prompt for p in test)
    assert all(task.split_of(p.prompt) == "train" for p in train)
    assert all(task.split_of(p.prompt) == "test" for p in test)


def test_split_fraction_is_about_ten_percent() -> None:
    task = ArithmeticTask()
    rng = random.Random(0)
    draws = [task.draw(rng) for _ in range(20000)]
    share = sum(task.split_of(p.prompt) == "test" for p in draws) / len(draws)
    assert 0.08 < share < 0.12


def test_small_space_split_by_construction() -> None:
    """In a 100-prompt space, sampling exhausts both splits; they never meet."""
    task = SortingTask(min_len=2, max_len=2, max_value=9)
    rng = random.Random(0)
    train = {task.sample(rng, "train").prompt for _ in range(3000)}
    test = {task.sample(rng, "test").prompt for _ in range(3000)}
    assert test and train.isdisjoint(test)
    assert len(train | test) == 100
    with pytest.raises(ValueError, match="distinct test"):
        task.generate("test", len(test) + 1, seed=0)


def test_hash_is_stable_across_runs() -> None:
    """The split must never depend on PYTHONHASHSEED or the Python version."""
    assert hash_fraction("Sort: 1 2") == 0.51616777238283


def test_bad_split_and_n() -> None:
    task = ArithmeticTask()
    with pytest.raises(ValueError, match="'valid'"):
        task.generate("valid", 3, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        task.generate("train", -1, seed=0)
    with pytest.raises(ValueError, match="split"):
        task.sample(random.Random(0), "dev")  # type: ignore[arg-type]


def test_streaming_speed() -> None:
    """sample() feeds training; it must stay fast (target >= 20k/s, loose bound here)."""
    import time

    task = ArithmeticTask()
    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(5000):
        task.sample(rng)
    assert 5000 / (time.perf_counter() - start) > 5000
