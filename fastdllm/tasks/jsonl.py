"""Bring-your-own-data task loaded from a JSON Lines file.

Each non-blank line is an object ``{"prompt": str, "answer": str|number,
"response": str (optional), "split": "train"|"test" (optional)}``.
A missing ``response`` defaults to the answer itself.

Scoring follows the answers' form: ``extract="auto"`` (the default) scores GSM8K-style (the number
after the last "The answer is", else the last number) when every reference answer is a number,
and by exact (whitespace-normalised) match otherwise. ``extract="gsm8k"`` on a file whose answers
are not all numbers is refused: comparing last numbers would mark wrong outputs right.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Literal

from fastdllm.tasks.base import SPLITS, Problem, Split, Task, check_split
from fastdllm.tasks.extraction import extract_exact, extract_gsm8k, is_number, normalize_whitespace

ExtractMode = Literal["auto", "gsm8k", "exact"]


def _text_field(record: dict, field: str, line: int, path: Path) -> str:
    """Return ``record[field]`` as a string, numbers converted; raise on other types."""
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f"{path}:{line}: field {field!r} must be a string, got "
            f"{type(value).__name__} {value!r}."
        )
    return value if isinstance(value, str) else str(value)


def load_jsonl_records(path: Path, task_name: str) -> list[tuple[Problem, str | None]]:
    """Parse ``path`` into ``(problem, split_or_None)`` pairs with line-numbered errors."""
    if not path.is_file():
        raise FileNotFoundError(
            f"JSONL task file not found: {str(path)!r}. Check the path (relative paths "
            f"are resolved from {str(Path.cwd())!r})."
        )
    records: list[tuple[Problem, str | None]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({err.msg}).") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{line_no}: each line must be a JSON object, got "
                    f"{type(record).__name__}."
                )
            for field in ("prompt", "answer"):
                if field not in record:
                    raise ValueError(
                        f"{path}:{line_no}: missing required field {field!r} "
                        f"(found fields: {sorted(record)})."
                    )
            prompt = _text_field(record, "prompt", line_no, path)
            answer = _text_field(record, "answer", line_no, path)
            response = _text_field(record, "response", line_no, path) if "response" in record else answer
            split = record.get("split")
            if split is not None and split not in SPLITS:
                raise ValueError(
                    f"{path}:{line_no}: field 'split' must be 'train' or 'test', got {split!r}."
                )
            records.append((Problem(prompt, response, answer, task_name), split))
    if not records:
        raise ValueError(f"JSONL task file {str(path)!r} contains no records.")
    return records


def _scoring_mode(extract: str, problems: list[Problem], path: Path) -> ExtractMode:
    """``extract`` resolved against the answers: ``auto`` picks by their form; ``gsm8k`` needs numbers."""
    if extract == "exact":
        return "exact"
    not_numbers = [(i, p.answer) for i, p in enumerate(problems) if not is_number(p.answer)]
    if extract == "auto":
        return "exact" if not_numbers else "gsm8k"
    if not_numbers:
        i, answer = not_numbers[0]
        raise ValueError(
            f"{path}: extract='gsm8k' compares the last number of the output, but {len(not_numbers)} of "
            f"{len(problems)} answers are not numbers (record {i + 1}: {answer!r}), so wrong outputs would "
            "score as right. Use extract='exact' (or 'auto', which picks exact for such files)."
        )
    return "gsm8k"


class JsonlTask(Task):
    """Problems read from a JSONL file.

    Args:
        path: The ``.jsonl`` file.
        extract: ``"auto"`` (``"gsm8k"`` when every answer is a number, else ``"exact"``),
            ``"gsm8k"`` (number after "The answer is", else last number; every answer must be a
            number) or ``"exact"`` (whitespace-normalised full response). The mode is the task's
            scorer (``scorer="strict"``/``"lenient"`` name it too).
        name: Task name; defaults to ``"jsonl:<file stem>"``.

    Records with a ``split`` field belong to that split only; records without
    one belong to every split. :meth:`generate` returns the first ``n`` records
    of the split in file order (``seed`` is unused).
    """

    def __init__(
        self, path: str | Path, extract: ExtractMode = "auto", name: str | None = None
    ) -> None:
        if extract not in ("auto", "gsm8k", "exact"):
            raise ValueError(f"extract must be 'auto', 'gsm8k' or 'exact', got {extract!r}.")
        self.path = Path(path)
        self.name = name or f"jsonl:{self.path.stem}"
        records = load_jsonl_records(self.path, self.name)
        self.extract_mode: ExtractMode = _scoring_mode(extract, [p for p, _ in records], self.path)
        self.problems: list[Problem] = [problem for problem, _ in records]
        self._by_split: dict[str, list[Problem]] = {
            s: [p for p, sp in records if sp in (None, s)] for s in SPLITS
        }
        self._split_of_prompt = {p.prompt: sp for p, sp in records if sp is not None}

    def draw(self, rng: random.Random) -> Problem:
        """A uniformly random record (split ignored)."""
        return self.problems[rng.randrange(len(self.problems))]

    def sample(self, rng: random.Random, split: Split = "train") -> Problem:
        """A uniformly random record of ``split``."""
        check_split(split)
        pool = self._by_split[split]
        if not pool:
            raise ValueError(f"{str(self.path)!r} has no records with split {split!r}.")
        return pool[rng.randrange(len(pool))]

    def generate(self, split: Split, n: int, seed: int = 0) -> list[Problem]:
        """The first ``n`` records of ``split`` in file order (fewer if the file is short)."""
        check_split(split)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}.")
        return self._by_split[split][:n]

    def split_of(self, prompt: str) -> Split:
        """The record's ``split`` field if it has one, else the prompt-hash split."""
        return self._split_of_prompt.get(prompt) or super().split_of(prompt)

    @property
    def default_scorer(self) -> str:  # type: ignore[override]
        return self.extract_mode

    @property
    def scorer_aliases(self) -> dict[str, str]:  # type: ignore[override]
        return {"strict": self.extract_mode, "lenient": self.extract_mode}

    def scorers(self):
        """One scorer, named by the extraction mode (``gsm8k`` or ``exact``)."""
        return {self.extract_mode: self.score_extracted}

    def extract(self, response: str) -> str | None:
        """Extract with the configured mode (``gsm8k`` or ``exact``)."""
        if self.extract_mode == "exact":
            return extract_exact(response)
        return extract_gsm8k(response)

    def normalize_answer(self, answer: str) -> str:
        """Canonical reference answer for the configured mode."""
        if self.extract_mode == "exact":
            return normalize_whitespace(answer)
        return extract_gsm8k(answer) or answer.strip()

    def __len__(self) -> int:
        return len(self.problems)

    def __repr__(self) -> str:
        return f"JsonlTask(path={str(self.path)!r}, extract={self.extract_mode!r}, n={len(self)})"
