"""Core types of the task suite: :class:`Problem` and the abstract :class:`Task`.

A task draws problems from a (usually huge) space and splits that space into
``train`` and ``test`` by a stable hash of the prompt text, so the two splits
never overlap, whatever seeds are used to generate them.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

# Rejection sampling gives up after this many draws for a single problem.
_MAX_TRIES_PER_SAMPLE = 10_000


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    Attributes:
        prompt: The question shown to the model.
        response: Full target text the model is trained to produce.
        answer: Final answer string (what :meth:`Task.extract` should return).
        task: Name of the task that produced the problem.
    """

    prompt: str
    response: str
    answer: str
    task: str


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def hash_fraction(text: str) -> float:
    """Map ``text`` to a stable pseudo-random number in [0, 1) (blake2b)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Task(ABC):
    """Abstract verifiable task.

    Subclasses implement :meth:`draw` (one problem, split ignored) and
    :meth:`extract`; splitting, sampling, generation and scoring are shared.

    Scoring goes through named scorers (:meth:`scorers`): the base class has one,
    ``"extract"`` (the answer :meth:`extract` finds equals the reference), which the
    names ``"strict"`` and ``"lenient"`` also reach. The built-in tasks add a strict
    scorer (the answer in the exact format the task trains) and make it the default.
    """

    name: str = "task"
    #: Fraction of the prompt-hash space assigned to the test split.
    test_fraction: float = 0.1
    #: The scorer :meth:`score` uses when none is named.
    default_scorer: str = "extract"
    #: Other names accepted for a scorer (``alias -> name in scorers()``).
    scorer_aliases: ClassVar[dict[str, str]] = {"strict": "extract", "lenient": "extract"}

    # ----------------------------------------------------------- abstract API
    @abstractmethod
    def draw(self, rng: random.Random) -> Problem:
        """Draw one problem from the whole space, ignoring the split."""

    @abstractmethod
    def extract(self, response: str) -> str | None:
        """Extract the final answer from a model response, or ``None``."""

    # ------------------------------------------------------------ shared API
    def normalize_answer(self, answer: str) -> str:
        """Canonical form of a reference answer before comparison."""
        return answer.strip()

    def split_of(self, prompt: str) -> Split:
        """Return the split (``"train"``/``"test"``) a prompt belongs to."""
        return "test" if hash_fraction(prompt) < self.test_fraction else "train"

    def sample(self, rng: random.Random, split: Split = "train") -> Problem:
        """Draw one problem of ``split`` (rejection sampling; fast streaming).

        Duplicates across calls are possible; use :meth:`generate` for a
        de-duplicated, seeded list.
        """
        check_split(split)
        for _ in range(_MAX_TRIES_PER_SAMPLE):
            problem = self.draw(rng)
            if self.split_of(problem.prompt) == split:
                return problem
        raise RuntimeError(
            f"Task {self.name!r} drew {_MAX_TRIES_PER_SAMPLE} problems without "
            f"hitting split {split!r}; the problem space is too small. "
            "Widen the task's difficulty settings."
        )

    def generate(self, split: Split, n: int, seed: int) -> list[Problem]:
        """Return ``n`` distinct problems of ``split``, deterministic in ``seed``."""
        check_split(split)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}.")
        rng = random.Random(f"{self.name}/{split}/{seed}")
        problems: list[Problem] = []
        seen: set[str] = set()
        budget = 50 * n + 1000
        while len(problems) < n and budget > 0:
            budget -= 1
            problem = self.draw(rng)
            if problem.prompt in seen or self.split_of(problem.prompt) != split:
                continue
            seen.add(problem.prompt)
            problems.append(problem)
        if len(problems) < n:
            raise ValueError(
                f"Task {self.name!r} found only {len(problems)} distinct {split} "
                f"problems, {n} requested; ask for fewer or widen the task's "
                "difficulty settings."
            )
        return problems

    def scorers(self) -> dict[str, Callable[[str, Problem], bool]]:
        """The task's scorers by name; each maps ``(response, problem)`` to correct or not."""
        return {"extract": self.score_extracted}

    def resolve_scorer(self, scorer: str | None = None) -> str:
        """The scorer's name in :meth:`scorers` (``None`` gives the default; aliases resolved).

        Raises:
            ValueError: the task has no scorer of that name (the message lists the names it has).
        """
        if scorer is None:
            return self.default_scorer
        name = self.scorer_aliases.get(scorer, scorer)
        if name not in self.scorers():
            known = sorted({*self.scorers(), *self.scorer_aliases})
            raise ValueError(f"Task {self.name!r} has no scorer {scorer!r}; choose one of {', '.join(known)}.")
        return name

    def score(self, response: str, problem: Problem, scorer: str | None = None) -> bool:
        """True iff ``response`` answers ``problem`` correctly under ``scorer`` (default: the task's default)."""
        return bool(self.scorers()[self.resolve_scorer(scorer)](response, problem))

    def score_extracted(self, response: str, problem: Problem) -> bool:
        """True iff the answer :meth:`extract` finds in ``response`` matches the reference."""
        predicted = self.extract(response)
        return predicted is not None and predicted == self.normalize_answer(problem.answer)

    def check_chain(self, response: str, problem: Problem) -> bool | None:
        """Whether the response's intermediate steps are right; ``None`` for tasks without steps."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
