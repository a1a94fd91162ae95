"""Tests for the BPE tokenizer builder (train, save, reload with AutoTokenizer)."""

from __future__ import annotations


import pytest
from transformers import AutoTokenizer

from fastdllm.models.tokenizer_builder import SPECIAL_TOKENS, build_tokenizer, save_tokenizer
from fastdllm.tasks import ArithmeticTask

EXPECTED_CHAT = (
    "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


@pytest.fixture(scope="module")
def problems():
    return ArithmeticTask().generate("train", 300, seed=0)


@pytest.fixture(scope="module")
def reloaded(problems, tmp_path_factory):
    texts = [t for p in problems for t in (p.prompt, p.response)]
    folder = save_tokenizer(build_tokenizer(texts, vocab_size=384), tmp_path_factory.mktemp("tok"))
    return AutoTokenizer.from_pretrained(folder)


def test_special_token_ids(reloaded) -> None:
    assert SPECIAL_TOKENS == {
        "<|startoftext|>": 0, "<|endoftext|>": 1, "<|eot_id|>": 2,
        "<|mdm_mask|>": 3, "<|start_header_id|>": 4, "<|end_header_id|>": 5,
    }
    for token, idx in SPECIAL_TOKENS.items():
        assert reloaded.convert_tokens_to_ids(token) == idx
        assert reloaded.encode(token, add_special_tokens=False) == [idx]
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == (0, 1, 1)
    assert reloaded.mask_token_id == 3
    assert reloaded.padding_side == "left"
    assert len(reloaded) <= 384


def test_digits_are_single_tokens(reloaded) -> None:
    for text in ("0123456789", "x 987 + 65=1052.", "303"):
        ids = reloaded.encode(text, add_special_tokens=False)
        digit_ids = [i for i in ids if reloaded.decode([i]).strip().isdigit()]
        assert [reloaded.decode([i]) for i in digit_ids] == [c for c in text if c.isdigit()]
    assert len({reloaded.convert_tokens_to_ids(str(d)) for d in range(10)}) == 10


def test_round_trip(reloaded, problems) -> None:
    for text in [problems[0].prompt, problems[0].response, "Odd  text\twith ünïcode & 12,345!"]:
        ids = reloaded.encode(text, add_special_tokens=False)
        assert reloaded.decode(ids) == text
    assert reloaded.encode("hi", add_special_tokens=True)[0] != SPECIAL_TOKENS["<|startoftext|>"]


def test_chat_template(reloaded) -> None:
    messages = [{"role": "user", "content": "hi"}]
    text = reloaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == EXPECTED_CHAT
    no_prompt = reloaded.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert no_prompt == EXPECTED_CHAT[: EXPECTED_CHAT.index("<|start_header_id|>assistant")]
    multi = reloaded.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
         {"role": "assistant", "content": "A"}], tokenize=False,
    )
    assert multi == (
        "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
    )
    ids = reloaded(text, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [0, 4] and ids.count(0) == 1


def test_prompts_are_short(reloaded, problems) -> None:
    lengths = [len(reloaded.encode(p.prompt, add_special_tokens=False)) for p in problems]
    assert max(lengths) <= 60
    assert sum(lengths) / len(lengths) <= 45


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="vocab_size must be >= 262"):
        build_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(TypeError, match="must yield str"):
        build_tokenizer(["abc", 5])  # type: ignore[list-item]
