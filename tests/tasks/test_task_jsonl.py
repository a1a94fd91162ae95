"""Tests for the bring-your-own-data JSONL task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fastdllm.tasks import JsonlTask, get_task


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_happy_path(tmp_path: Path) -> None:
    rows = [
        {"prompt": "2+2?", "answer": "4", "response": "2+2=4. The answer is 4."},
        {"prompt": "big?", "answer": 1234},
        {"prompt": "held out", "answer": "7", "split": "test"},
    ]
    path = write(tmp_path / "mine.jsonl", [json.dumps(r) for r in rows] + [""])
    task = JsonlTask(path)
    assert task.name == "jsonl:mine" and len(task) == 3
    train = task.generate("train", 10, seed=0)
    assert [p.prompt for p in train] == ["2+2?", "big?"]
    assert train[1].answer == "1234" and train[1].response == "1234"
    assert [p.prompt for p in task.generate("test", 10, seed=0)] == ["2+2?", "big?", "held out"]
    assert task.generate("train", 1, seed=0) == train[:1]
    assert task.score("so the answer is 1,234.", train[1])
    assert not task.score("The answer is 1235.", train[1])
    assert task.split_of("held out") == "test"
    assert task.sample(random.Random(0), "train").prompt in {"2+2?", "big?"}


def test_exact_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", [json.dumps({"prompt": "Sort: 2 1", "answer": "1  2"})])
    task = JsonlTask(path, extract="exact")
    problem = task.generate("test", 1, seed=0)[0]
    assert task.score(" 1 2\n", problem)
    assert not task.score("The answer is 1 2", problem)
    with pytest.raises(ValueError, match="extract"):
        JsonlTask(path, extract="fuzzy")  # type: ignore[arg-type]


def test_get_task_gives_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "g.jsonl", [json.dumps({"prompt": "p", "answer": "1"})])
    task = get_task(str(path), extract="exact")
    assert isinstance(task, JsonlTask) and task.extract_mode == "exact"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        JsonlTask(tmp_path / "nope.jsonl")


def test_bad_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "b.jsonl", ['{"prompt": "a", "answer": "1"}', "", "{oops"])
    with pytest.raises(ValueError, match=r"b\.jsonl:3: invalid JSON"):
        JsonlTask(path)


@pytest.mark.parametrize("field", ["prompt", "answer"])
def test_missing_field_names_field_and_line(tmp_path: Path, field: str) -> None:
    record = {"prompt": "a", "answer": "1"}
    del record[field]
    path = write(tmp_path / "m.jsonl", ['{"prompt": "x", "answer": "2"}', json.dumps(record)])
    with pytest.raises(ValueError, match=rf"m\.jsonl:2: missing required field '{field}'"):
        JsonlTask(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"prompt": ["a"], "answer": "1"}', "field 'prompt' must be a string"),
        ('{"prompt": "a", "answer": "1", "split": "dev"}', "field 'split'"),
    ],
)
def test_bad_records(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "r.jsonl", [line])
    with pytest.raises(ValueError, match=message):
        JsonlTask(path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no records"):
        JsonlTask(write(tmp_path / "empty.jsonl", ["", "  "]))


def test_split_without_records(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", [json.dumps({"prompt": "p", "answer": "1", "split": "test"})])
    with pytest.raises(ValueError, match="no records with split 'train'"):
        JsonlTask(path).sample(random.Random(0))


# ---- scoring picked from the answers' form (issue 11) ---------------------------------------------------


def test_auto_scores_number_answers_gsm8k_style(tmp_path: Path) -> None:
    path = write(tmp_path / "n.jsonl", [json.dumps({"prompt": "a", "answer": "-1,234.5"}),
                                        json.dumps({"prompt": "b", "answer": 7})])
    task = JsonlTask(path)
    assert task.extract_mode == "gsm8k" and task.resolve_scorer() == "gsm8k"
    assert task.resolve_scorer("strict") == task.resolve_scorer("lenient") == "gsm8k"
    problem = task.generate("test", 2)[1]
    assert task.score("so 3 then 7", problem) and task.score("The answer is 7.", problem, scorer="lenient")
    assert not task.score("The answer is 8.", problem)


def test_auto_scores_word_answers_exactly(tmp_path: Path) -> None:
    path = write(tmp_path / "w.jsonl", [json.dumps({"prompt": "a", "answer": "12"}),
                                        json.dumps({"prompt": "capital of France?", "answer": "Paris 2"})])
    task = JsonlTask(path)
    assert task.extract_mode == "exact" and task.resolve_scorer() == "exact"
    problem = task.generate("test", 2)[1]
    assert task.score("Paris  2", problem)
    # gsm8k-style extraction would compare last numbers and take this wrong output as right
    assert not task.score("Lyon 2", problem) and not task.score("Lyon 2", problem, scorer="lenient")


def test_gsm8k_is_refused_when_answers_are_not_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "w.jsonl", [json.dumps({"prompt": "a", "answer": "12"}),
                                        json.dumps({"prompt": "b", "answer": "Paris 2"})])
    with pytest.raises(ValueError, match=r"w\.jsonl.*1 of 2 answers are not numbers \(record 2: 'Paris 2'\).*"
                                         r"extract='exact'"):
        JsonlTask(path, extract="gsm8k")
    assert JsonlTask(path, extract="exact").score("Paris 2", JsonlTask(path).problems[1])


def test_unknown_jsonl_scorer(tmp_path: Path) -> None:
    task = JsonlTask(write(tmp_path / "n.jsonl", [json.dumps({"prompt": "a", "answer": "1"})]))
    with pytest.raises(ValueError, match="no scorer 'exact'.*gsm8k"):
        task.resolve_scorer("exact")
