"""Where a checkpoint comes from: a path that does not exist is reported as a path (never sent to the Hub),
a repo id is downloaded without code files unless asked, and shard-size strings mean what they say."""

from __future__ import annotations

import huggingface_hub
import pytest
from checkpoint_helpers import single_thread, tiny_model  # noqa: F401

import fastdllm
from fastdllm.models import checkpoint


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def test_a_relative_path_under_an_existing_folder_is_a_path(tmp_path, monkeypatch, no_download):
    """'ckpts/missing' is also a well-formed repo id; its existing parent folder says it is meant as a path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpts").mkdir()
    with pytest.raises(FileNotFoundError, match="'ckpts/missing' does not exist"):
        fastdllm.load_model("ckpts/missing", device="cpu")


def test_a_repo_id_is_downloaded_without_code_by_default(tmp_path, monkeypatch):
    calls = []

    def fake(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert checkpoint.resolve_folder("owner/some-model") == tmp_path
    assert calls[0][0] == "owner/some-model" and "*.py" not in calls[0][1] and "*.safetensors" in calls[0][1]
    checkpoint.resolve_folder("owner/some-model", trust_remote_code=True)
    assert "*.py" in calls[1][1]


@pytest.mark.parametrize("text, nbytes", [("40KB", 40_000), ("40KiB", 40_960), ("0.04MB", 40_000), ("0.00004GB", 40_000)])
def test_shard_size_strings(tmp_path, text, nbytes):
    model = tiny_model("llada")
    by_text = fastdllm.save_checkpoint(model, tmp_path / "a", max_shard_bytes=text)
    by_int = fastdllm.save_checkpoint(model, tmp_path / "b", max_shard_bytes=nbytes)
    names = sorted(p.name for p in by_text.glob("model*"))
    assert len(names) > 2 and names == sorted(p.name for p in by_int.glob("model*"))
    assert (by_text / "model.safetensors.index.json").read_text() == (by_int / "model.safetensors.index.json").read_text()
