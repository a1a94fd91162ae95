"""Text in, text out through a loaded checkpoint's tokenizer and chat template."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import (DREAM_TEMPLATE, EOS, END_TURN, FAMILIES, single_thread,  # noqa: F401
                                tiny_model, tiny_tokenizer)

import fastdllm

EXPECTED_CHAT = {
    "llada": "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "dream": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, tmp_path_factory):
    family = request.param
    folder = fastdllm.save_checkpoint(tiny_model(family, seed=3), tmp_path_factory.mktemp(family),
                                      tokenizer=tiny_tokenizer(family), max_shard_bytes=50_000)
    assert (folder / "tokenizer.json").exists()
    return family, fastdllm.load_model(folder, device="cpu")


def test_encode_applies_template_and_left_pads(loaded):
    family, model = loaded
    tok = model.tokenizer
    ids, mask = model.encode(["a", "bb c"], chat=True)
    assert ids.shape == mask.shape and ids.shape[0] == 2 and mask.dtype == torch.bool
    for row, m, text in zip(ids, mask, ["a", "bb c"]):
        assert tok.decode(row[m].tolist()) == EXPECTED_CHAT[family].format(text)
    short = (~mask[0]).sum()
    assert short == 2 and not mask[0, :short].any() and mask[0, short:].all() and mask[1].all()
    assert (ids[0, :short] == model.pad_token_id).all()
    raw, raw_mask = model.encode("hello world", chat=False)
    assert tok.decode(raw[0].tolist()) == "hello world" and raw_mask.all()


def test_decode_cuts_at_first_end_token(loaded):
    family, model = loaded
    tok = model.tokenizer
    hello, world, a = (tok.convert_tokens_to_ids(w) for w in ("hello", "world", "a"))
    generated = torch.tensor([[hello, tok.convert_tokens_to_ids(" "), world, END_TURN, a, EOS],
                              [a, EOS, world, world, END_TURN, END_TURN],
                              [hello, hello, hello, hello, hello, hello]])
    assert model.decode(generated) == ["hello world", "a", "hellohellohellohellohellohello"]
    assert set(model.end_token_ids) == {EOS, END_TURN}


def test_generate_from_text(loaded):
    _, model = loaded
    ids, mask = model.encode(["a", "hello world ."])
    result = fastdllm.generate(model, ids, attention_mask=mask, cache="dual", unmask="threshold",
                               gen_length=8, block_length=4)
    texts = result.texts
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts == model.decode(result.generated)
    assert model.decode(result) == texts  # a GenerationResult
    assert model.decode(result.sequences, prompt_length=result.prompt_length) == texts  # whole [B, P+G] rows


def test_hand_written_folder_with_tokenizer_files(tmp_path):
    """A folder laid out by hand (real key names, 2 shards + index) plus the tokenizer files transformers
    writes: the public loader gives a model whose text APIs work."""
    from checkpoint_helpers import random_hf_weights, tiny_config, write_hf_folder

    for family in FAMILIES:
        cfg = tiny_config(family)
        folder = write_hf_folder(tmp_path / family, family, random_hf_weights(family, cfg, seed=2), cfg)
        tiny_tokenizer(family).save_pretrained(str(folder))
        model = fastdllm.load_model(folder, device="cpu")
        ids, mask = model.encode(["hello world", "a"])
        assert model.tokenizer.decode(ids[0][mask[0]].tolist()) == EXPECTED_CHAT[family].format("hello world")
        assert mask[1, 0].item() is False and mask[1, -1].item() is True


def test_folder_without_tokenizer(tmp_path):
    folder = fastdllm.save_checkpoint(tiny_model("dream"), tmp_path)
    assert not (folder / "tokenizer.json").exists()
    model = fastdllm.load_model(folder, device="cpu")
    assert model.tokenizer is None
    with pytest.raises(RuntimeError, match="no tokenizer.*tokenizer.json"):
        model.encode("a")
    with pytest.raises(RuntimeError, match="no tokenizer"):
        model.decode(torch.tensor([[1, 2]]))
    result = fastdllm.generate(model, torch.tensor([[5, 6, 7]]), gen_length=4, block_length=4)
    with pytest.raises(RuntimeError, match="no tokenizer"):
        result.texts


def test_tokenizer_without_chat_template(tmp_path):
    tok = tiny_tokenizer("dream")
    tok.chat_template = None
    model = fastdllm.load_model(fastdllm.save_checkpoint(tiny_model("dream"), tmp_path, tokenizer=tok), device="cpu")
    with pytest.raises(RuntimeError, match="chat=False"):
        model.encode("a")
    assert model.encode("a", chat=False)[0].tolist() == [[tok.convert_tokens_to_ids("a")]]


def test_broken_tokenizer_files_are_reported(tmp_path):
    folder = fastdllm.save_checkpoint(tiny_model("llada"), tmp_path, tokenizer=tiny_tokenizer("llada"))
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="tokenizer files .* could not be loaded.*trust_remote_code"):
        fastdllm.load_model(folder, device="cpu")


def test_custom_code_tokenizer_falls_back_to_qwen2(tmp_path):
    """Dream ships a ``DreamTokenizer`` (custom code, a copy of Qwen2's byte-level BPE) with vocab.json and
    merges.txt: without trust_remote_code the loader uses transformers' ``Qwen2Tokenizer`` on those files."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(["hello world", "a bb c"] * 5, trainer=trainer)
    folder = fastdllm.save_checkpoint(tiny_model("dream"), tmp_path)
    backend.model.save(str(folder))  # vocab.json, merges.txt
    n = backend.get_vocab_size()
    specials = {"<|endoftext|>": n, "<|im_start|>": n + 1, "<|im_end|>": n + 2, "<|mask|>": n + 3}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DreamTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|mask|>", "bos_token": None,
        "chat_template": DREAM_TEMPLATE, "added_tokens_decoder": {
            str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                     "single_word": False} for t, i in specials.items()}}))
    with pytest.warns(UserWarning, match="Qwen2Tokenizer"):
        model = fastdllm.load_model(folder, device="cpu")
    tok = model.tokenizer
    assert (tok.mask_token_id, tok.eos_token_id) == (n + 3, n)
    ids, _ = model.encode("hello world")
    assert tok.decode(ids[0].tolist()) == "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n"
