"""Multi-step arithmetic word problems with a chain-of-equations response.

Example::

    prompt:   "Mia has 123 shells. She finds 45 more. She gives away 67.
               She triples them. How many shells now?"
    response: "123+45=168. 168-67=101. 3*101=303. The answer is 303."
    answer:   "303"

Every operand and every intermediate result stays in ``0..max_value``; the
operands are drawn directly from the range that keeps the result in bounds.
Sums and products are written in a random operand order (``45+123`` or ``123+45``),
so several responses are correct and the first operand of each such step is
genuinely uncertain: decoding order matters, as it does in natural language.

Scorers (:meth:`ArithmeticTask.scorers`): ``"strict"`` (the default) wants the trained answer
sentence, well formed, as the response's last sentence and the only one mentioning an answer:
``"... The answer is 303."``; ``"The answer answer 303."`` or a trailing fragment is wrong.
``"lenient"`` (alias ``"gsm8k"``) is GSM8K-style extraction: the number after the last
"The answer is", else the last number. :meth:`ArithmeticTask.check_chain` checks the steps.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from fastdllm.tasks.base import Problem, Task
from fastdllm.tasks.extraction import extract_gsm8k

NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "She"), ("Ben", "He"), ("Ava", "She"), ("Leo", "He"),
    ("Zoe", "She"), ("Sam", "He"), ("Ivy", "She"), ("Max", "He"),
)
OBJECTS: tuple[str, ...] = (
    "shells", "coins", "apples", "stamps", "cards", "marbles", "books", "pens",
)
ADD_TEMPLATES: tuple[str, ...] = ("{p} finds {k} more.", "{p} gets {k} more.", "{p} buys {k} more.")
SUB_TEMPLATES: tuple[str, ...] = ("{p} gives away {k}.", "{p} loses {k}.", "{p} sells {k}.")
MUL_TEMPLATES: dict[int, tuple[str, ...]] = {
    2: ("{p} doubles them.", "{p} multiplies them by 2."),
    3: ("{p} triples them.", "{p} multiplies them by 3."),
}
MUL_GENERIC = ("{p} multiplies them by {k}.",)
QUESTION = "How many {obj} now?"
# the strict answer: the response's last sentence, preceded by nothing or a space
ANSWER_SENTENCE = re.compile(r"(?:^|(?<= ))The answer is (\d+)\.$")
ANSWER_WORD = re.compile(r"answer", re.IGNORECASE)


class ArithmeticTask(Task):
    """Word problems with ``min_ops..max_ops`` operations among ``+ - *``.

    Args:
        min_ops: Fewest operations per problem (>= 1).
        max_ops: Most operations per problem (>= min_ops).
        max_value: Largest start value, operand and intermediate result.
        max_multiplier: Largest multiplier for ``*`` (multipliers are 2..this).
    """

    name = "arithmetic"
    default_scorer = "strict"
    scorer_aliases = {"gsm8k": "lenient"}

    def __init__(
        self,
        min_ops: int = 2,
        max_ops: int = 4,
        max_value: int = 999,
        max_multiplier: int = 9,
    ) -> None:
        if min_ops < 1 or max_ops < min_ops:
            raise ValueError(
                f"Need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}."
            )
        if max_value < 2:
            raise ValueError(f"max_value must be >= 2, got {max_value}.")
        if max_multiplier < 2:
            raise ValueError(f"max_multiplier must be >= 2, got {max_multiplier}.")
        self.min_ops = min_ops
        self.max_ops = max_ops
        self.max_value = max_value
        self.max_multiplier = max_multiplier

    def draw(self, rng: random.Random) -> Problem:
        """Draw one problem (split ignored)."""
        randint = rng.randint
        name, pronoun = NAMES[randint(0, len(NAMES) - 1)]
        obj = OBJECTS[randint(0, len(OBJECTS) - 1)]
        top = self.max_value
        value = randint(1, top)
        sentences = [f"{name} has {value} {obj}."]
        steps: list[str] = []
        for _ in range(randint(self.min_ops, self.max_ops)):
            ops = []
            if value < top:
                ops.append("+")
            if value > 0:
                ops.append("-")
                if 2 * value <= top:
                    ops.append("*")
            op = ops[randint(0, len(ops) - 1)]
            if op == "+":
                k = randint(1, top - value)
                result = value + k
                template = ADD_TEMPLATES[randint(0, len(ADD_TEMPLATES) - 1)]
            elif op == "-":
                k = randint(1, value)
                result = value - k
                template = SUB_TEMPLATES[randint(0, len(SUB_TEMPLATES) - 1)]
            else:
                k = randint(2, min(self.max_multiplier, top // value))
                result = value * k
                choices = MUL_TEMPLATES.get(k, MUL_GENERIC)
                template = choices[randint(0, len(choices) - 1)]
            sentences.append(template.format(p=pronoun, k=k))
            # + and * are written in either operand order: several correct responses, as in natural
            # language, so a model's confidence is split until it has committed to one of them
            if op != "-" and randint(0, 1):
                steps.append(f"{k}{op}{value}={result}.")
            else:
                steps.append(f"{value}{op}{k}={result}.")
            value = result
        sentences.append(QUESTION.format(obj=obj))
        answer = str(value)
        steps.append(f"The answer is {answer}.")
        return Problem(
            prompt=" ".join(sentences),
            response=" ".join(steps),
            answer=answer,
            task=self.name,
        )

    def extract(self, response: str) -> str | None:
        """GSM8K-style: number after the last "The answer is", else last number."""
        return extract_gsm8k(response)

    def scorers(self) -> dict[str, Callable[[str, Problem], bool]]:
        """``strict`` (the answer sentence, well formed) and ``lenient`` (GSM8K-style extraction)."""
        return {"strict": self.score_strict, "lenient": self.score_extracted}

    def score_strict(self, response: str, problem: Problem) -> bool:
        """True iff the response ends with ``"The answer is N."`` (N the reference, digits only) and
        mentions "answer" nowhere else."""
        text = response.strip()  # spacing inside the sentence must be the trained one
        match = ANSWER_SENTENCE.search(text)
        return (match is not None and len(ANSWER_WORD.findall(text)) == 1
                and match.group(1) == self.normalize_answer(problem.answer))

    def check_chain(self, response: str, problem: Problem) -> bool | None:
        """True iff every step ``a op b = c.`` of the response is correct arithmetic on the previous
        result and the prompt's operand (either order for + and *), one step per operation;
        ``None`` when the prompt is not in the task's wording (nothing to check against)."""
        from fastdllm.tasks.arithmetic_chain import chain_is_correct, parse_problem

        parsed = parse_problem(problem.prompt)
        if parsed is None:
            return None
        return chain_is_correct(response, *parsed)

    def normalize_answer(self, answer: str) -> str:
        """Strip whitespace, thousands commas and a trailing period."""
        return answer.strip().replace(",", "").rstrip(".")

    def __repr__(self) -> str:
        return (
            f"ArithmeticTask(min_ops={self.min_ops}, max_ops={self.max_ops}, "
            f"max_value={self.max_value}, max_multiplier={self.max_multiplier})"
        )
