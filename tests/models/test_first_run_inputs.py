"""First-run defects: an empty prompt text and a truncated ``.safetensors`` shard each get one clear error
(naming the row or the file, and the fix) instead of garbage or a raw traceback."""

from __future__ import annotations

import re

import pytest
from checkpoint_helpers import single_thread, tiny_model, tiny_tokenizer  # noqa: F401

import fastdllm
from fastdllm.cli import main


@pytest.fixture
def llada_with_tokenizer():
    model = tiny_model("llada")
    model.tokenizer = tiny_tokenizer("llada")
    return model


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("prompts, rows", [("", "[0]"), (["hello", "  \n"], "[1]"), (["", "a", "\t"], "[0, 2]")])
def test_empty_prompt_text_is_refused_naming_the_row(llada_with_tokenizer, prompts, rows, chat):
    with pytest.raises(ValueError, match="empty prompt text at rows " + re.escape(rows)):
        llada_with_tokenizer.encode(prompts, chat=chat)


def test_non_empty_prompts_still_encode(llada_with_tokenizer):
    ids, mask = llada_with_tokenizer.encode(["hello world", "a"])
    assert ids.shape == mask.shape and mask[1].sum() < mask[0].sum()


def test_cli_refuses_an_empty_prompt_in_one_line(capsys):
    assert main(["generate", ""]) != 0
    err = capsys.readouterr().err.strip()
    assert "empty" in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.fixture
def truncated_folder(tmp_path):
    folder = fastdllm.save_checkpoint(tiny_model("dream"), tmp_path / "ckpt", max_shard_bytes=40_000)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) >= 2
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])  # an interrupted download
    return folder, shards[1]


def test_truncated_shard_is_named_with_the_fix(truncated_folder):
    folder, shard = truncated_folder
    with pytest.raises(ValueError) as info:
        fastdllm.load_model(folder, device="cpu")
    message = str(info.value)
    assert str(shard) in message and "truncated" in message and "re-download" in message and "re-save" in message


def test_header_only_fragment_is_named(truncated_folder):
    folder, shard = truncated_folder
    shard.write_bytes(b"\x10\x00")  # not even a header length
    with pytest.raises(ValueError, match=shard.name):
        fastdllm.load_model(folder, device="cpu")


def test_cli_reports_a_truncated_shard_in_one_line(truncated_folder, capsys):
    folder, shard = truncated_folder
    assert main(["generate", "--model", str(folder), "hello"]) != 0
    err = capsys.readouterr().err.strip()
    assert shard.name in err and "Traceback" not in err and len(err.splitlines()) == 1
