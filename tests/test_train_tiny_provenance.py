"""``experiments/train_tiny.py`` records the commit of its code and a sha256 of the training data it generated."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_tiny.py"
SMALL = ["--examples", "200", "--workers", "1", "--hash-data-only", "--wandb-mode", "disabled"]


@pytest.fixture(scope="module")
def train_tiny():
    spec = importlib.util.spec_from_file_location("train_tiny_provenance_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_data_hash_is_deterministic_and_follows_the_data(train_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDLLM_COMMIT", "0123abc")
    first = train_tiny.main(["--out", str(tmp_path / "a"), *SMALL])
    again = train_tiny.main(["--out", str(tmp_path / "b"), *SMALL])
    other_seed = train_tiny.main(["--out", str(tmp_path / "c"), *SMALL, "--seed", "1"])
    assert first["commit"] == "0123abc" and first["commit_source"] == "FASTDLLM_COMMIT"
    assert len(first["data_sha256"]) == 64
    assert again["data_sha256"] == first["data_sha256"] and again["tokenizer_sha256"] == first["tokenizer_sha256"]
    assert other_seed["data_sha256"] != first["data_sha256"]
    written = json.loads((tmp_path / "a" / "data_hash.json").read_text())
    assert written["data_sha256"] == first["data_sha256"] and written["examples"] == 200
    assert not (tmp_path / "a" / "model.safetensors").exists()  # no training in --hash-data-only


def test_data_hash_covers_rows_and_prompt_lengths(train_tiny):
    canvas = torch.arange(12, dtype=torch.int16).reshape(3, 4)  # [N, P+G]
    lengths = torch.tensor([1, 2, 3], dtype=torch.int16)  # [N]
    base = train_tiny.data_sha256(canvas, lengths)
    changed = canvas.clone()
    changed[2, 3] += 1
    assert train_tiny.data_sha256(changed, lengths) != base
    assert train_tiny.data_sha256(canvas, torch.tensor([1, 2, 4], dtype=torch.int16)) != base
    assert train_tiny.data_sha256(canvas.t().contiguous().t(), lengths) == base  # layout does not matter


def test_commit_from_git_without_the_variable(train_tiny, monkeypatch):
    monkeypatch.delenv("FASTDLLM_COMMIT", raising=False)
    info = train_tiny.code_commit()
    if info["commit"] is None:
        pytest.skip("no git checkout here")
    assert info["commit_source"] == "git rev-parse HEAD" and len(info["commit"]) == 40
    assert isinstance(info["commit_dirty"], bool)
