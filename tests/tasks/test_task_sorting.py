"""Tests for the sorting task."""

from __future__ import annotations

import pytest

from fastdllm.tasks import Problem, SortingTask


def test_sorting_is_correct() -> None:
    task = SortingTask()
    lengths = set()
    for problem in task.generate("train", 1000, seed=0):
        assert problem.prompt.startswith("Sort: ")
        numbers = [int(x) for x in problem.prompt[len("Sort: "):].split(" ")]
        lengths.add(len(numbers))
        assert all(0 <= x <= 99 for x in numbers)
        assert problem.answer == " ".join(str(x) for x in sorted(numbers))
        assert problem.response == problem.answer
        assert task.score(problem.response, problem)
    assert lengths == set(range(6, 13))


def test_extract_and_score() -> None:
    task = SortingTask()
    problem = Problem("Sort: 3 1 2", "1 2 3", "1 2 3", "sorting")
    assert task.extract("  1   2\n3 ") == "1 2 3"
    assert task.extract("The answer is 1, 2, 3.") == "1 2 3"
    assert task.extract("   ") is None
    assert task.score(" 1 2  3", problem)
    assert not task.score("1 3 2", problem)
    assert not task.score("1 2", problem)


def test_bad_knobs_raise() -> None:
    with pytest.raises(ValueError, match="min_len"):
        SortingTask(min_len=1)
    with pytest.raises(ValueError, match="max_value"):
        SortingTask(max_value=0)
