"""Dream (Dream-org/Dream-v0-*-7B): Qwen2.5 blocks run bidirectionally, config in Qwen2 field names.

Dream was adapted from an autoregressive model, so the logits at position i predict the token at
position i+1: ``logit_shift = 1``. ``DiffusionLM.forward_step``/``forward`` and the cache policies
(which recompute position ``block_start - 1``) handle the shift; nothing else needs to know.
"""

from __future__ import annotations

from typing import Any

from fastdllm.models.base import DiffusionLM, model_adapters
from fastdllm.models.transformer import ArchConfig

DREAM_MASK_ID = 151666  # <|mask|>
DREAM_EOS_ID = 151643  # <|endoftext|>, also pad
DREAM_IM_END_ID = 151645  # <|im_end|>, ends a chat turn


def _need(cfg: dict[str, Any], key: str) -> Any:
    if cfg.get(key) is None:
        raise ValueError(f"Dream config.json lacks the field {key!r}; a Dream (Qwen2-style) config has hidden_size, "
                         "intermediate_size, num_hidden_layers, num_attention_heads, vocab_size, "
                         "max_position_embeddings, ...")
    return cfg[key]


def _id_list(value: Any) -> list[int]:
    """An id field that may be an int, a list of ints or missing (``None``)."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _rope_theta(cfg: dict[str, Any]) -> float:
    """``rope_theta`` (transformers 4 layout) or ``rope_parameters.rope_theta`` (transformers 5 layout);
    only the default (unscaled) RoPE is supported."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling")
    for spec in (params, scaling or {}):
        kind = spec.get("rope_type", spec.get("type", "default"))
        if kind != "default":
            raise ValueError(f"Dream config has RoPE type {kind!r}; only the default (unscaled) RoPE is supported, "
                             "as in Dream-v0 (rope_scaling: null)")
    theta = cfg.get("rope_theta", params.get("rope_theta"))
    return float(theta if theta is not None else 10000.0)


@model_adapters.register("dream")
class Dream(DiffusionLM):
    """Qwen2 blocks (GQA, q/k/v biases, no o_proj bias), bidirectional, with a logit shift of one:
    token i is predicted from the hidden state at i-1."""

    logit_shift = 1
    architectures = ("DreamModel",)
    model_types = ("dream",)

    @classmethod
    def tiny_config(cls, **overrides: Any) -> dict[str, Any]:
        return dream_config(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 64,
                               "max_position_embeddings": 128, "rope_theta": 5000.0, "mask_token_id": 63,
                               "eos_token_id": 1, "pad_token_id": 1, "bos_token_id": 1, "im_end_token_id": 2,
                               **overrides})

    @classmethod
    def arch_from_hf(cls, cfg: dict[str, Any]) -> ArchConfig:
        if cfg.get("tie_word_embeddings", False):
            raise ValueError("Dream config has tie_word_embeddings=true; this adapter needs a separate lm_head.weight "
                             "(Dream-v0 has tie_word_embeddings=false). Untie the weights and set it to false")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"Dream config has hidden_act={cfg['hidden_act']!r}; only 'silu' (SwiGLU) is supported")
        if cfg.get("use_sliding_window", False):
            raise ValueError("Dream config has use_sliding_window=true; only full attention is supported "
                             "(set use_sliding_window to false)")
        hidden, n_heads = _need(cfg, "hidden_size"), _need(cfg, "num_attention_heads")
        return ArchConfig(
            vocab_size=_need(cfg, "vocab_size"),
            d_model=hidden,
            n_layers=_need(cfg, "num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            head_dim=cfg.get("head_dim") or hidden // n_heads,
            mlp_hidden=_need(cfg, "intermediate_size"),
            max_sequence_length=_need(cfg, "max_position_embeddings"),
            rope_theta=_rope_theta(cfg),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            qkv_bias=True,  # Qwen2 always has q/k/v biases
        )

    @classmethod
    def tokens_from_hf(cls, cfg: dict[str, Any]) -> tuple[int, int, tuple[int, ...]]:
        mask = cfg.get("mask_token_id")
        mask = DREAM_MASK_ID if mask is None else int(mask)
        eos = _id_list(cfg.get("eos_token_id")) or [DREAM_EOS_ID]
        pad = cfg.get("pad_token_id")
        pad = eos[0] if pad is None else int(pad)
        im_end = cfg.get("im_end_token_id")
        ends = _id_list(cfg.get("end_token_ids")) or [*eos, DREAM_IM_END_ID if im_end is None else int(im_end)]
        return mask, pad, tuple(dict.fromkeys(ends))

    @classmethod
    def reference_config(cls) -> dict[str, Any]:
        return dream_config()

    @classmethod
    def hf_key_map(cls, n_layers: int) -> dict[str, str]:
        keys = {"model.embed_tokens.weight": "net.embed.weight", "model.norm.weight": "net.norm.weight",
                "lm_head.weight": "net.lm_head.weight"}
        names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "mlp_norm.weight",
                 "self_attn.o_proj.weight": "attn.o_proj.weight"}
        for proj in ("q_proj", "k_proj", "v_proj"):
            for part in ("weight", "bias"):
                names[f"self_attn.{proj}.{part}"] = f"attn.{proj}.{part}"
        for proj in ("gate_proj", "up_proj", "down_proj"):
            names[f"mlp.{proj}.weight"] = f"mlp.{proj}.weight"
        for i in range(n_layers):
            for theirs, ours in names.items():
                keys[f"model.layers.{i}.{theirs}"] = f"net.layers.{i}.{ours}"
        return keys


def dream_config(**overrides: Any) -> dict[str, Any]:
    """A Dream ``config.json`` dict; defaults are Dream-v0-7B's, overrides make tiny test models.

    Besides the Qwen2 fields, ``im_end_token_id`` (default 151645) sets the end-of-turn token, and
    ``end_token_ids`` replaces the whole list of tokens that end an answer.
    """
    cfg = {
        "model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
        "max_position_embeddings": 131072, "rope_theta": 1000000.0, "rope_scaling": None, "rms_norm_eps": 1e-6,
        "hidden_act": "silu", "tie_word_embeddings": False, "use_sliding_window": False,
        "attention_dropout": 0.0, "mask_token_id": DREAM_MASK_ID, "bos_token_id": DREAM_EOS_ID,
        "eos_token_id": DREAM_EOS_ID, "pad_token_id": DREAM_EOS_ID,
    }
    if "num_attention_heads" in overrides and "num_key_value_heads" not in overrides:
        overrides["num_key_value_heads"] = overrides["num_attention_heads"]
    cfg.update(overrides)
    return cfg
