"""Sort a short list of small integers ascending.

Example::

    prompt:   "Sort: 34 12 89 5 61 7"
    response: "5 7 12 34 61 89"
    answer:   "5 7 12 34 61 89"

Each output number depends on the whole input, so answer tokens are strongly
coupled: a good stress test for parallel decoding.

Scorers: ``"strict"`` (the default) wants the response to be exactly the sorted numbers separated
by single spaces, the format the task trains (whitespace runs collapsed, nothing else);
``"lenient"`` (alias ``"extract"``) also accepts commas, a trailing period and a leading
"The answer is".
"""

from __future__ import annotations

import random
from collections.abc import Callable

from fastdllm.tasks.base import Problem, Task
from fastdllm.tasks.extraction import ANSWER_MARKER, extract_exact


class SortingTask(Task):
    """Sort ``min_len..max_len`` numbers drawn from ``0..max_value`` (duplicates allowed).

    Args:
        min_len: Fewest numbers to sort (>= 2).
        max_len: Most numbers to sort (>= min_len).
        max_value: Largest number (>= 1).
    """

    name = "sorting"
    default_scorer = "strict"
    scorer_aliases = {"extract": "lenient"}

    def __init__(self, min_len: int = 6, max_len: int = 12, max_value: int = 99) -> None:
        if min_len < 2 or max_len < min_len:
            raise ValueError(
                f"Need 2 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}."
            )
        if max_value < 1:
            raise ValueError(f"max_value must be >= 1, got {max_value}.")
        self.min_len = min_len
        self.max_len = max_len
        self.max_value = max_value

    def draw(self, rng: random.Random) -> Problem:
        """Draw one problem (split ignored)."""
        randint = rng.randint
        top = self.max_value
        numbers = [randint(0, top) for _ in range(randint(self.min_len, self.max_len))]
        answer = " ".join(map(str, sorted(numbers)))
        return Problem(
            prompt="Sort: " + " ".join(map(str, numbers)),
            response=answer,
            answer=answer,
            task=self.name,
        )

    def extract(self, response: str) -> str | None:
        """Whitespace-normalised response (text after a last "The answer is",
        commas treated as spaces, trailing period dropped); ``None`` if empty."""
        markers = list(ANSWER_MARKER.finditer(response))
        if markers:
            response = response[markers[-1].end():]
        return extract_exact(response.replace(",", " ").strip().rstrip("."))

    def scorers(self) -> dict[str, Callable[[str, Problem], bool]]:
        """``strict`` (exactly the sorted numbers) and ``lenient`` (:meth:`extract`'s normalisation)."""
        return {"strict": self.score_strict, "lenient": self.score_extracted}

    def score_strict(self, response: str, problem: Problem) -> bool:
        """True iff the whitespace-normalised response is exactly the reference list."""
        return " ".join(response.split()) == self.normalize_answer(problem.answer)

    def normalize_answer(self, answer: str) -> str:
        """Whitespace-normalised reference answer."""
        return " ".join(answer.split())

    def __repr__(self) -> str:
        return (
            f"SortingTask(min_len={self.min_len}, max_len={self.max_len}, "
            f"max_value={self.max_value})"
        )
