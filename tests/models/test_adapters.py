"""The family adapters read the real configs: sizes, token ids, key maps (built on the meta device)."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from fastdllm.models import Dream, LLaDA, dream_config, llada_config


@pytest.mark.parametrize("cls, config, params, shift", [
    (LLaDA, llada_config(), 8.02e9, 0),
    (Dream, dream_config(), 7.62e9, 1),
])
def test_real_sizes(cls, config, params, shift):
    with torch.device("meta"):
        model = cls(config)
    assert model.logit_shift == shift
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.01)
    assert set(cls.hf_key_map(model.arch.n_layers).values()) == set(model.state_dict())


def test_dream_reads_qwen2_fields():
    with torch.device("meta"):
        model = Dream(dream_config())
    a = model.arch
    assert (a.d_model, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.mlp_hidden) == (3584, 28, 28, 4, 128, 18944)
    assert (a.vocab_size, a.rope_theta, a.norm_eps, a.qkv_bias) == (152064, 1e6, 1e-6, True)
    assert (model.mask_token_id, model.pad_token_id, model.end_token_ids) == (151666, 151643, (151643, 151645))
    assert model.net.layers[0].attn.q_proj.bias is not None and model.net.layers[0].attn.o_proj.bias is None
    keys = Dream.hf_key_map(28)
    assert len(keys) == 3 + 28 * 12
    assert keys["model.layers.27.self_attn.v_proj.bias"] == "net.layers.27.attn.v_proj.bias"


def test_dream_token_fields():
    assert Dream.tokens_from_hf({"eos_token_id": [7, 8], "pad_token_id": None}) == (151666, 7, (7, 8, 151645))
    assert Dream.tokens_from_hf({"end_token_ids": [3], "mask_token_id": 9}) == (9, 151643, (3,))


def test_dream_rope_layouts():
    new_layout = {k: v for k, v in dream_config(rope_theta=None).items() if k != "rope_theta"}
    new_layout["rope_parameters"] = {"rope_type": "default", "rope_theta": 123.0}
    assert Dream.arch_from_hf(new_layout).rope_theta == 123.0
    for bad in ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, {"rope_parameters": {"rope_type": "linear"}}):
        with pytest.raises(ValueError, match="only the default"):
            Dream.arch_from_hf(dream_config(**bad))
    for bad, word in (({"hidden_act": "gelu"}, "silu"), ({"use_sliding_window": True}, "sliding")):
        with pytest.raises(ValueError, match=word):
            Dream.arch_from_hf(dream_config(**bad))


def test_registered_names():
    assert fastdllm.model_adapters.get("dream") is fastdllm.Dream
    assert {"llada", "dream"} <= set(fastdllm.model_adapters.names())
