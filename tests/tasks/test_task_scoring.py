"""Named scorers: strict by default (the trained answer format), lenient GSM8K-style by name."""

from __future__ import annotations

import random

import pytest

from fastdllm.tasks import ArithmeticTask, Problem, SortingTask, Task, get_task

ARITH = Problem("Mia has 2 apples. She finds 5 more. How many apples now?", "2+5=7. The answer is 7.", "7",
                "arithmetic")


@pytest.mark.parametrize(("output", "strict", "lenient"), [
    ("2+5=7. The answer is 7.", True, True),
    ("The answer is 7.", True, True),  # the answer sentence alone is well formed (the chain metric judges steps)
    ("  2+5=7. The answer is 7.  ", True, True),  # surrounding whitespace is not the answer's form
    ("2+5=7. The answer answer 7.", False, True),  # issue 14: a doubled word, lenient takes the last number
    ("2+5=7. The answer is 7", False, True),  # no closing period
    ("2+5=7. The answer is 7. 7", False, True),  # a trailing fragment after the answer sentence
    ("2+5=7. The answer is 7.7.", False, False),
    ("2+5=7. the answer is 7.", False, True),  # the trained sentence is capitalised
    ("2+5=7. The answer is  7.", False, True),  # a doubled space inside the sentence
    ("2+5=7. The answer is 07.", False, False),  # leading zero: not the trained number
    ("2+5=7.The answer is 7.", False, True),  # glued to the previous step
    ("The answer is 6. The answer is 7.", False, True),  # two answer sentences
    ("The answer is 17.", False, False),
    ("2+5=7.", False, True),
    ("", False, False),
])
def test_arithmetic_strict_and_lenient(output: str, strict: bool, lenient: bool) -> None:
    task = ArithmeticTask()
    assert task.score(output, ARITH) is strict  # strict is the default
    assert task.score(output, ARITH, scorer="strict") is strict
    assert task.score(output, ARITH, scorer="lenient") is lenient
    assert task.score(output, ARITH, scorer="gsm8k") is lenient  # the lenient scorer's other name


def test_every_reference_response_is_strictly_correct() -> None:
    task = ArithmeticTask()
    for problem in task.generate("test", 300, seed=3):
        assert task.score(problem.response, problem)
        wrong = problem.response.replace(f"is {problem.answer}.", f"is {int(problem.answer) + 1}.")
        assert not task.score(wrong, problem) and not task.score(wrong, problem, "lenient")


@pytest.mark.parametrize(("output", "strict", "lenient"), [
    ("1 2 3", True, True),
    ("1  2\n3", True, True),  # whitespace runs collapse
    ("1, 2, 3", False, True),
    ("1 2 3.", False, True),
    ("The answer is 1 2 3", False, True),
    ("1 2 3 3", False, False),
    ("3 2 1", False, False),
])
def test_sorting_strict_and_lenient(output: str, strict: bool, lenient: bool) -> None:
    task = SortingTask()
    problem = Problem("Sort: 3 1 2", "1 2 3", "1 2 3", "sorting")
    assert task.score(output, problem) is strict
    assert task.score(output, problem, scorer="lenient") is lenient
    assert task.score(output, problem, scorer="extract") is lenient
    assert task.check_chain(output, problem) is None  # no intermediate steps to check


def test_unknown_scorer_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"no scorer 'exactish'.*gsm8k, lenient, strict"):
        ArithmeticTask().score("The answer is 7.", ARITH, scorer="exactish")
    with pytest.raises(ValueError, match="no scorer 'gsm8k'"):
        SortingTask().resolve_scorer("gsm8k")  # sorting answers are not numbers


def test_default_scorers() -> None:
    assert get_task("arithmetic").resolve_scorer() == "strict"
    assert get_task("sorting").resolve_scorer() == "strict"
    assert get_task("arithmetic").resolve_scorer("gsm8k") == "lenient"


class WordTask(Task):
    """A task that only implements draw/extract (as a plugin might)."""

    name = "words"

    def draw(self, rng: random.Random) -> Problem:
        return Problem("say a word", "cat", "cat", self.name)

    def extract(self, response: str) -> str | None:
        return response.strip() or None


def test_a_task_with_only_extract_scores_by_extraction_under_every_name() -> None:
    task, problem = WordTask(), Problem("say a word", "cat", "cat", "words")
    assert task.resolve_scorer() == "extract"
    for scorer in (None, "strict", "lenient", "extract"):
        assert task.score(" cat ", problem, scorer) is True
        assert task.score("dog", problem, scorer) is False
    assert task.check_chain("cat", problem) is None
