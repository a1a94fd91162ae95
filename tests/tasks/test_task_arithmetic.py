"""Tests for the arithmetic word-problem task."""

from __future__ import annotations

import random
import re

import pytest

from fastdllm.tasks import ArithmeticTask, Problem

EQUATION = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)\.$")
ADD = re.compile(r"^(?:She|He) (?:finds|gets|buys) (\d+) more\.$")
SUB = re.compile(r"^(?:She|He) (?:gives away|loses|sells) (\d+)\.$")
MUL = re.compile(r"^(?:She|He) multiplies them by (\d+)\.$")
WORD_MUL = {"doubles them.": 2, "triples them.": 3}


def interpret_prompt(prompt: str) -> tuple[int, list[tuple[str, int]]]:
    """Independent reading of the prompt: start value and (op, operand) list."""
    sentences = re.split(r"(?<=[.?]) ", prompt)
    start = re.fullmatch(r"[A-Z][a-z]+ has (\d+) [a-z]+\.", sentences[0])
    assert start is not None, sentences[0]
    assert re.fullmatch(r"How many [a-z]+ now\?", sentences[-1]), sentences[-1]
    ops: list[tuple[str, int]] = []
    for sentence in sentences[1:-1]:
        for op, pattern in (("+", ADD), ("-", SUB), ("*", MUL)):
            match = pattern.match(sentence)
            if match:
                ops.append((op, int(match.group(1))))
                break
        else:
            word = sentence.split(" ", 1)[1]
            assert word in WORD_MUL, f"unparsable sentence {sentence!r}"
            ops.append(("*", WORD_MUL[word]))
    return int(start.group(1)), ops


swapped_seen: set[bool] = set()


def check_problem(problem: Problem, task: ArithmeticTask) -> list[tuple[str, int]]:
    """Assert the response is a correct equation chain for the prompt."""
    start, ops = interpret_prompt(problem.prompt)
    *equations, final = problem.response.split(" ", len(ops))
    assert final == f"The answer is {problem.answer}."
    assert len(equations) == len(ops)
    value = start
    assert 1 <= start <= task.max_value
    for text, (op, k) in zip(equations, ops):
        match = EQUATION.match(text)
        assert match, text
        left, eq_op, right, result = match.groups()
        assert eq_op == op
        if op == "-":
            assert (int(left), int(right)) == (value, k)
        else:  # sums and products appear in either operand order
            assert sorted((int(left), int(right))) == sorted((value, k))
            swapped_seen.add((int(left), int(right)) == (k, value) and k != value)
        value = {"+": value + k, "-": value - k, "*": value * k}[op]
        assert int(result) == value
        assert 0 <= value <= task.max_value
        if op == "*":
            assert 2 <= k <= task.max_multiplier
        else:
            assert 1 <= k <= task.max_value
    assert problem.answer == str(value)
    assert problem.task == "arithmetic"
    return ops


def test_responses_are_correct_chains() -> None:
    task = ArithmeticTask()
    problems = task.generate("train", 2000, seed=0)
    op_counts, op_kinds = set(), set()
    swapped_seen.clear()
    for problem in problems:
        ops = check_problem(problem, task)
        op_counts.add(len(ops))
        op_kinds.update(op for op, _ in ops)
        assert task.score(problem.response, problem)
    assert op_counts == {2, 3, 4}
    assert op_kinds == {"+", "-", "*"}
    assert swapped_seen == {True, False}  # both operand orders occur


def test_difficulty_knobs() -> None:
    task = ArithmeticTask(min_ops=1, max_ops=2, max_value=50, max_multiplier=3)
    counts = {len(check_problem(p, task)) for p in task.generate("test", 300, seed=4)}
    assert counts == {1, 2}


def test_problems_are_not_trivial() -> None:
    """Guard against an accidental drift towards easy problems."""
    problems = ArithmeticTask().generate("train", 1000, seed=1)
    three_digit = sum(len(p.answer) == 3 for p in problems)
    assert three_digit > 500
    assert sum(p.response.count("=") for p in problems) / len(problems) > 2.7


def test_bad_knobs_raise() -> None:
    with pytest.raises(ValueError, match="min_ops"):
        ArithmeticTask(min_ops=3, max_ops=2)
    with pytest.raises(ValueError, match="max_value"):
        ArithmeticTask(max_value=1)
    with pytest.raises(ValueError, match="max_multiplier"):
        ArithmeticTask(max_multiplier=1)


def test_prompt_example_format() -> None:
    problem = ArithmeticTask().sample(random.Random(3))
    assert problem.prompt.endswith(" now?")
    assert problem.response.endswith(f"The answer is {problem.answer}.")


def test_score() -> None:
    task = ArithmeticTask()
    problem = Problem("p", "1+2=3. The answer is 3.", "3", "arithmetic")
    assert task.score("1+2=3. The answer is 3.", problem)
    assert not task.score("junk 3", problem)  # strict by default: the answer sentence is required
    assert task.score("junk 3", problem, scorer="lenient")
    assert not task.score("1+2=4. The answer is 4.", problem)
    assert not task.score("no number here", problem)
    assert not task.score("The answer is 33.", problem)
