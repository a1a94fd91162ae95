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
