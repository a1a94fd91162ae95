"""Model families come from the registry: each declares the config.json it reads (architectures, model_type)
and a tiny config; the loader finds a family through them, so a third family is one adapter class."""

from __future__ import annotations

import json

import pytest
import torch
from checkpoint_helpers import FAMILIES, single_thread, tiny_model  # noqa: F401

import fastdllm
from fastdllm.models.checkpoint import adapter_for


@pytest.mark.parametrize("family", FAMILIES)
def test_every_registered_family_declares_its_config(family):
    cls = fastdllm.model_adapters.get(family)
    config = cls.tiny_config()
    assert cls.architectures and cls.matches(config) and adapter_for(config) is cls
    model = cls(config)
    assert (model.vocab_size, model.mask_token_id, model.pad_token_id, model.arch.n_layers) == (64, 63, 1, 2)
    assert set(model.end_token_ids) >= {1, 2}
    assert cls.tiny_config(n_layers=3) != config  # overrides pass through
    others = [c for n, c in fastdllm.model_adapters if n != family]
    assert not any(o.matches(config) for o in others)  # one family per config


@pytest.mark.parametrize("family", FAMILIES)
def test_family_found_by_architectures_alone(family):
    cls = fastdllm.model_adapters.get(family)
    config = {k: v for k, v in cls.tiny_config().items() if k != "model_type"}
    assert adapter_for(config) is cls
    with pytest.raises(ValueError, match="not a supported family"):
        adapter_for({"architectures": ["GPT2LMHeadModel"]})


def test_a_third_family_is_one_class(tmp_path):
    """A family registered outside the loader (here a LLaDA variant under another model_type and architecture)
    saves, loads by its own config.json and decodes, with no edit to the loader."""

    @fastdllm.model_adapters.register("test-third")
    class Third(fastdllm.LLaDA):
        architectures = ("ThirdForDiffusion",)
        model_types = ("third-dlm",)

        @classmethod
        def tiny_config(cls, **overrides):
            cfg = fastdllm.LLaDA.tiny_config(**overrides)
            return {**cfg, "model_type": "third-dlm", "architectures": ["ThirdForDiffusion"]}

    try:
        torch.manual_seed(0)
        model = Third(Third.tiny_config())
        folder = fastdllm.save_checkpoint(model, tmp_path / "third", tokenizer=False)
        assert json.loads((folder / "config.json").read_text())["model_type"] == "third-dlm"
        loaded = fastdllm.load_model(folder, device="cpu")
        assert type(loaded) is Third and loaded.name == "test-third"
        result = fastdllm.generate(loaded, [[5, 6, 7]], gen_length=8, block_length=4, unmask="fixed")
        assert result.generated.shape == (1, 8)
    finally:
        fastdllm.model_adapters.unregister("test-third")
