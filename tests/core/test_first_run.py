"""First-run defects a new user hit: the checkpoint's stored decode settings are the defaults everywhere, and
a path or text passed where a model or token ids belong gets a message that names the value and the fix."""

from __future__ import annotations

import json
import re

import pytest
import torch

import fastdllm
from fastdllm.assets import tiny_model_path
from tests.conftest import tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def shipped():
    return fastdllm.load_model(tiny_model_path(), device="cpu")


def test_generate_uses_the_stored_decode_settings(shipped):
    stored = json.loads((tiny_model_path() / "fastdllm.json").read_text())["decode"]
    assert shipped.decode_defaults == stored == {"gen_length": 64, "block_length": 8}
    ids, mask = shipped.encode(["3 + 4 ="], chat=False)
    layouts = []
    result = fastdllm.generate(shipped, ids, attention_mask=mask, unmask="threshold",
                               callbacks=[lambda e: layouts.append(e.step.layout)])
    assert result.gen_length == 64 and layouts[0].block_length == 8
    assert fastdllm.DiffusionDecoder(shipped).config.block_length == 8
    # explicit arguments win; an explicit config is taken whole
    assert fastdllm.DiffusionDecoder(shipped, gen_length=16).config.gen_length == 16
    config = fastdllm.DecodeConfig(gen_length=32, block_length=16)
    assert fastdllm.DiffusionDecoder(shipped, config).config.block_length == 16


def test_a_model_without_stored_settings_uses_the_config_defaults():
    model = tiny_llada()
    assert model.decode_defaults == {}
    defaults = fastdllm.DecodeConfig()
    assert fastdllm.DiffusionDecoder(model).config.gen_length == defaults.gen_length


def test_stored_settings_round_trip_and_are_checked(tmp_path):
    model = tiny_llada()
    model.decode_defaults = {"gen_length": 16, "block_length": 4, "unmask": {"name": "threshold", "threshold": 0.8}}
    folder = fastdllm.save_checkpoint(model, tmp_path / "m", tokenizer=False)
    loaded = fastdllm.load_model(folder, device="cpu")
    assert loaded.decode_defaults == model.decode_defaults
    assert fastdllm.DiffusionDecoder(loaded).config.unmask == {"name": "threshold", "threshold": 0.8,
                                                                "confidence": "prob"}
    (folder / "fastdllm.json").write_text(json.dumps({"decode": {"gen_lenght": 16}}))
    with pytest.raises(ValueError, match=r"fastdllm.json: unknown decode options \['gen_lenght'\]"):
        fastdllm.load_model(folder, device="cpu")


@pytest.mark.parametrize("where", ["generate", "decoder"])
def test_a_path_in_place_of_the_model_says_load_it_first(where, tmp_path):
    call = (lambda m: fastdllm.generate(m, [[5, 6]])) if where == "generate" else fastdllm.DiffusionDecoder
    with pytest.raises(TypeError, match=r"got 'some/checkpoint' \(str\) where a model is expected; load it first: "
                                        r"model = fastdllm.load_model\('some/checkpoint'\)"):
        call("some/checkpoint")
    with pytest.raises(TypeError, match="load_model"):
        call(tmp_path)
    with pytest.raises(TypeError, match="dict is not a diffusion model"):
        call({"mask_token_id": 1})


@pytest.mark.parametrize("prompts, shown", [(["What is 2 + 3?"], "'What is 2 + 3?'"), ("hello", "'hello'"),
                                            ([["5", "6"]], "'5'")])
def test_text_in_place_of_token_ids_says_encode(prompts, shown):
    with pytest.raises(TypeError, match=rf"prompt_ids holds text \({re.escape(shown)}\), not token ids; encode it first: "
                                        r"ids, mask = model.encode\(prompts\)"):
        fastdllm.generate(tiny_llada(), prompts, gen_length=4, block_length=4)


def test_token_ids_still_work():
    result = fastdllm.generate(tiny_llada(), [torch.tensor([5, 6]), [7]], gen_length=4, block_length=4)
    assert result.sequences.shape == (2, 6)
