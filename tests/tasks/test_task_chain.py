"""The chain metric: every step of an arithmetic response is correct and follows from the problem."""

from __future__ import annotations

import pytest

from fastdllm.tasks import ArithmeticTask, Problem
from fastdllm.tasks.arithmetic_chain import parse_problem, response_steps

from test_task_arithmetic import interpret_prompt

TASK = ArithmeticTask()
# start 38; ops: + 37, * 2, - 50
PROMPT = "Ben has 38 coins. He finds 37 more. He doubles them. He sells 50. How many coins now?"
PROBLEM = Problem(PROMPT, "38+37=75. 75*2=150. 150-50=100. The answer is 100.", "100", "arithmetic")


def test_parse_problem_agrees_with_an_independent_reading() -> None:
    for problem in TASK.generate("test", 500, seed=7) + ArithmeticTask(1, 6, 99, 3).generate("train", 300, seed=1):
        assert parse_problem(problem.prompt) == interpret_prompt(problem.prompt)
    assert parse_problem(PROMPT) == (38, [("+", 37), ("*", 2), ("-", 50)])


def test_every_reference_response_has_a_correct_chain() -> None:
    for problem in TASK.generate("train", 1000, seed=11):
        assert TASK.check_chain(problem.response, problem) is True


@pytest.mark.parametrize(("output", "ok"), [
    ("38+37=75. 75*2=150. 150-50=100. The answer is 100.", True),
    ("37+38=75. 2*75=150. 150-50=100. The answer is 100.", True),  # either order for + and *
    ("38+37=75. 75*2=150. 150-50=100. The answer answer 100.", True),  # a broken answer sentence is not a step
    ("38+37=75. 75*2=150. 150-50=100.", True),
    (" 38 + 37 = 75. 75*2=150. 150-50=100. The answer is 100.", True),  # spacing inside a step tolerated
    ("38+37=75. 75*2=150. 50-150=100. The answer is 100.", False),  # - is not commutative
    ("38+37=76. 76*2=152. 152-52=100. The answer is 100.", False),  # wrong sum, right final number
    ("38+37=75. 75*2=150. 150-50=99. The answer is 100.", False),  # wrong last step
    ("38+37=75. 74*2=148. 148-48=100. The answer is 100.", False),  # correct arithmetic, not the previous result
    ("38+37=75. 75*3=225. 225-125=100. The answer is 100.", False),  # not the prompt's operand
    ("38+37=75. 75+75=150. 150-50=100. The answer is 100.", False),  # right value, wrong operation
    ("38+37=75. 150-50=100. The answer is 100.", False),  # a step missing
    ("38+37=75. 75*2=150. 150-50=100. 100+0=100. The answer is 100.", False),  # an extra step
    ("38+37=75. 75*2=150 150-50=100. The answer is 100.", False),  # a step without its period
    ("38+37=75. 7**2=150. 150-50=100. The answer is 100.", False),  # junk between steps
    ("The answer is 100.", False),
    ("", False),
])
def test_chain(output: str, ok: bool) -> None:
    assert TASK.check_chain(output, PROBLEM) is ok


def test_chain_is_none_for_prompts_in_other_wording() -> None:
    reworded = Problem("Ben starts with 38 coins and finds 37 more. How many coins does he have?", "", "75",
                       "arithmetic")
    assert parse_problem(reworded.prompt) is None
    assert TASK.check_chain("38+37=75. The answer is 75.", reworded) is None
    other_object = Problem(PROMPT.replace("coins", "pebbles"), "", "100", "arithmetic")
    assert TASK.check_chain(PROBLEM.response, other_object) is None


def test_response_steps() -> None:
    assert response_steps("1+2=3. 3*4=12. The answer is 12.") == [(1, "+", 2, 3), (3, "*", 4, 12)]
    assert response_steps("1+2=3. x 3*4=12.") == [(1, "+", 2, 3)]  # the first letter ends the steps
    assert response_steps("1+2=3. 4") is None


def test_subtraction_keeps_its_operand_order():
    # the generator never subtracts more than there is; a hand-written problem may, and "8-5=3." does not follow
    problem = Problem("Ben has 5 coins. He sells 8. How many coins now?", "", "-3", "arithmetic")
    assert parse_problem(problem.prompt) == (5, [("-", 8)])
    assert TASK.check_chain("8-5=3. The answer is 3.", problem) is False
