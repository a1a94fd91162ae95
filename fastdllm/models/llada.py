"""LLaDA (GSAI-ML/LLaDA-8B-*): the config fields and checkpoint keys of ``modeling_llada.py``."""

from __future__ import annotations

from typing import Any

from fastdllm.models.base import DiffusionLM, model_adapters
from fastdllm.models.transformer import ArchConfig

LLADA_MASK_ID = 126336
LLADA_EOS_ID = 126081  # <|endoftext|>, also pad
LLADA_EOT_ID = 126348  # <|eot_id|>


def _need(cfg: dict[str, Any], key: str) -> Any:
    if key not in cfg:
        raise ValueError(f"LLaDA config.json lacks the field {key!r}; a LLaDA config has d_model, n_layers, "
                         "n_heads, mlp_hidden_size, vocab_size, max_sequence_length, ...")
    return cfg[key]


@model_adapters.register("llada")
class LLaDA(DiffusionLM):
    """Bidirectional Llama-style blocks: ``ff_proj`` is the gate, ``up_proj`` the up projection, ``ff_out``
    (inside a block) the down projection; no biases; RoPE half-split in fp32; no logit shift."""

    logit_shift = 0
    architectures = ("LLaDAModelLM",)
    model_types = ("llada",)

    @classmethod
    def tiny_config(cls, **overrides: Any) -> dict[str, Any]:
        return llada_config(**{"d_model": 32, "n_layers": 2, "n_heads": 4, "mlp_hidden_size": 64, "vocab_size": 64,
                               "max_sequence_length": 128, "rope_theta": 10000.0, "mask_token_id": 63,
                               "eos_token_id": 1, "pad_token_id": 1, "bos_token_id": 3, "eot_token_id": 2,
                               **overrides})

    @classmethod
    def arch_from_hf(cls, cfg: dict[str, Any]) -> ArchConfig:
        d_model, n_heads = _need(cfg, "d_model"), _need(cfg, "n_heads")
        if cfg.get("include_bias", False) or cfg.get("weight_tying", False):
            raise ValueError("LLaDA configs with include_bias or weight_tying are not supported (LLaDA-8B has neither)")
        return ArchConfig(
            vocab_size=cfg.get("embedding_size") or _need(cfg, "vocab_size"),
            d_model=d_model,
            n_layers=_need(cfg, "n_layers"),
            n_heads=n_heads,
            n_kv_heads=cfg.get("n_kv_heads") or n_heads,
            head_dim=d_model // n_heads,
            mlp_hidden=_need(cfg, "mlp_hidden_size"),
            max_sequence_length=_need(cfg, "max_sequence_length"),
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
            qkv_bias=False,
        )

    @classmethod
    def tokens_from_hf(cls, cfg: dict[str, Any]) -> tuple[int, int, tuple[int, ...]]:
        mask = cfg.get("mask_token_id", LLADA_MASK_ID)
        eos = cfg.get("eos_token_id", LLADA_EOS_ID)
        pad = cfg.get("pad_token_id", eos)
        ends = cfg.get("end_token_ids") or [eos, cfg.get("eot_token_id", LLADA_EOT_ID)]
        return mask, pad, tuple(dict.fromkeys(ends))

    @classmethod
    def reference_config(cls) -> dict[str, Any]:
        return llada_config()

    @classmethod
    def hf_key_map(cls, n_layers: int) -> dict[str, str]:
        t = "model.transformer"
        keys = {f"{t}.wte.weight": "net.embed.weight", f"{t}.ln_f.weight": "net.norm.weight",
                f"{t}.ff_out.weight": "net.lm_head.weight"}
        names = {"attn_norm": "attn_norm", "ff_norm": "mlp_norm", "q_proj": "attn.q_proj", "k_proj": "attn.k_proj",
                 "v_proj": "attn.v_proj", "attn_out": "attn.o_proj", "ff_proj": "mlp.gate_proj",
                 "up_proj": "mlp.up_proj", "ff_out": "mlp.down_proj"}
        for i in range(n_layers):
            for theirs, ours in names.items():
                keys[f"{t}.blocks.{i}.{theirs}.weight"] = f"net.layers.{i}.{ours}.weight"
        return keys


def llada_config(**overrides: Any) -> dict[str, Any]:
    """A LLaDA ``config.json`` dict; defaults are LLaDA-8B's, overrides make tiny test models."""
    cfg = {
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": 4096, "n_layers": 32,
        "n_heads": 32, "n_kv_heads": 32, "mlp_hidden_size": 12288, "vocab_size": 126464,
        "embedding_size": 126464, "max_sequence_length": 4096, "rope": True, "rope_theta": 500000.0,
        "layer_norm_type": "rms", "rms_norm_eps": 1e-5, "include_bias": False, "weight_tying": False,
        "block_type": "llama", "activation_type": "silu", "mask_token_id": LLADA_MASK_ID,
        "eos_token_id": LLADA_EOS_ID, "pad_token_id": LLADA_EOS_ID, "bos_token_id": 126080,
    }
    if "n_heads" in overrides and "n_kv_heads" not in overrides:
        overrides["n_kv_heads"] = overrides["n_heads"]
    if "vocab_size" in overrides and "embedding_size" not in overrides:
        overrides["embedding_size"] = overrides["vocab_size"]
    cfg.update(overrides)
    return cfg
