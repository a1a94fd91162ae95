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


# ---- decoder-level helpers (tests/core, tests/caches, tests/samplers) --------------------------------


class RecordingModel:
    """Wraps a model that implements the decoder contract (``fastdllm.core.model_api.DiffusionModel``).

    Counts ``forward_step`` calls and records the ``(start, end, logits_start, logits_end)`` of each;
    with ``keep=True`` also keeps a copy of the canvas and the returned logits. ``forbid_mask=True``
    sets the mask token's logit to -inf, as a trained model would never predict it (the tiny random
    models do, now and then). Every other attribute is the wrapped model's.
    """

    def __init__(self, model, *, keep: bool = False, forbid_mask: bool = False) -> None:
        self.model, self.keep, self.forbid_mask = model, keep, forbid_mask
        self.calls: list[tuple[int, int, int, int]] = []
        self.canvases: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    @property
    def forwards(self) -> int:
        return len(self.calls)

    def forward_step(self, canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        logits = self.model.forward_step(canvas, start, end, store, position_ids, key_mask, logits_start, logits_end)
        if self.forbid_mask:
            logits = logits.clone()
            logits[..., self.model.mask_token_id] = float("-inf")
        self.calls.append((start, end, logits_start, logits_end))
        if self.keep:
            self.canvases.append(canvas.clone())
            self.logits.append(logits.clone())
        return logits


def mask_free_llada(seed: int = 0, **overrides) -> RecordingModel:
    """``tiny_llada`` that never predicts the mask token, wrapped to record its forwards."""
    return RecordingModel(tiny_llada(seed, **overrides), forbid_mask=True)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models run fastest on one intra-op thread (and far faster when the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def empty_plan():
    """The process-wide GEMM plan (``fastdllm.kernels.gemm_plan``) emptied before and after the test."""
    from fastdllm.kernels import gemm_plan

    gemm_plan.clear()
    yield
    gemm_plan.clear()


@pytest.fixture
def ran(monkeypatch):
    """The backends ``gemm_plan.run`` was asked for, in order (it still computes)."""
    from fastdllm.kernels import gemm_plan

    calls: list[str] = []
    real = gemm_plan.run

    def spy(backend, x, weight, bias=None):
        calls.append(backend)
        return real(backend, x, weight, bias)

    monkeypatch.setattr(gemm_plan, "run", spy)
    return calls
