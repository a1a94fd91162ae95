"""Shared fixtures: tiny random LLaDA-architecture models (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

import fastdllm

VOCAB = 64
MASK_ID = 63
EOS_ID = 1
EOT_ID = 2


def spread_init(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Random weights large enough that masked positions get distinct, confident-ish predictions
    (default init makes every masked position predict the same token)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if "embed" in name else std))
            elif "bias" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def tiny_llada(seed: int = 0, **overrides) -> fastdllm.LLaDA:
    cfg = fastdllm.llada_config(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=64, vocab_size=VOCAB,
                                max_sequence_length=256, mask_token_id=MASK_ID, eos_token_id=EOS_ID,
                                pad_token_id=EOS_ID, eot_token_id=EOT_ID, rope_theta=10000.0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return spread_init(fastdllm.LLaDA(cfg), seed)


def random_prompts(batch: int, lengths: list[int] | None = None, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = lengths or [6] * batch
    return [torch.randint(3, MASK_ID, (n,), generator=gen).tolist() for n in lengths]


@pytest.fixture
def llada():
    return tiny_llada()
