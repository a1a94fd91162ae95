"""``DiffusionLM.use_fp8_weights()`` on the CPU: the fp8 copies serve exactly the few-row products (a cached step)
and nothing else (a refresh's keys and values come from the bf16 weights), they follow projection fusion, and a weight changed in place
after its copy was made is refused rather than silently served stale. On the CPU the copies are used dequantized,
the numbers the GPU kernel computes (``tests/models/test_triton_kernels.py`` checks the kernel against them)."""

from __future__ import annotations

import copy

import pytest
import torch

import fastdllm
from fastdllm.kernels import fp8_weights

L, P, BLOCK = 40, 8, 8  # a 40-row refresh (more than the 32 rows fp8 serves), then a block step of 8 (+1) rows
# (the refresh's last layer runs its queries, MLP and the LM head on the block's 8 rows only: those use fp8)


@pytest.fixture
def every_width(monkeypatch):
    """Tiny models' weights are narrow: let every projection get an fp8 copy."""
    monkeypatch.setattr(fp8_weights, "MIN_FP8_COLUMNS", 1)


def _tiny(family: str):
    cls = fastdllm.model_adapters.get(family)
    torch.manual_seed(0)
    return cls(cls.tiny_config()).eval()


def _forwards(model, store=None):
    """(refresh logits, store after it, cached-step logits) on a fixed canvas."""
    gen = torch.Generator().manual_seed(1)
    canvas = torch.randint(3, 60, (1, L), generator=gen)
    canvas[:, P:] = model.mask_token_id
    pos = torch.arange(L)[None]
    store = model.new_kv_store(1, L) if store is None else store
    with torch.no_grad():
        refresh = model.forward_step(canvas, 0, L, store, pos, None, P, P + BLOCK)
        kept = copy.deepcopy(store)
        step = model.forward_step(canvas, P - model.logit_shift, P + BLOCK, store, pos, None, P, P + BLOCK)
    return refresh, kept, step


def _rounded(model):
    """A copy whose projection and LM-head weights are their fp8 copies, dequantized."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for module in out.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(fp8_weights.dequantize_rows(*fp8_weights.quantize_rows(module.weight), module.weight.dtype))
    return out


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_fp8_copies_serve_the_few_row_products_only(every_width, family):
    model = _tiny(family)
    plain, rounded = copy.deepcopy(model), _rounded(model)
    model.use_fp8_weights()
    try:
        assert len(model.net._fp8_weights) == 7 * model.arch.n_layers + 1  # q, k, v, o, gate, up, down; LM head
        refresh, store, step = _forwards(model)
        plain_refresh, plain_store, plain_step = _forwards(plain)
        # the refresh's keys/values come from 40-row products: the bf16 weights, bit for bit
        assert torch.equal(store.keys, plain_store.keys) and torch.equal(store.values, plain_store.values)
        _, _, rounded_step = _forwards(rounded, None)
        # the cached step on the same store: the fp8 copies, i.e. the rounded weights
        with torch.no_grad():
            pos = torch.arange(L)[None]
            canvas = torch.randint(3, 60, (1, L), generator=torch.Generator().manual_seed(1))
            canvas[:, P:] = model.mask_token_id
            want = rounded.forward_step(canvas, P - model.logit_shift, P + BLOCK, copy.deepcopy(store), pos, None, P, P + BLOCK)
        assert torch.equal(step, want)
        assert not torch.equal(step, plain_step)  # the rounding is there
        assert torch.equal(_forwards(copy.deepcopy(model))[2], step)  # a copy makes its own fp8 copies
        model.use_fp8_weights(False)
        assert not model.net._fp8_weights and not fp8_weights._REGISTRY
        assert torch.equal(_forwards(model)[2], plain_step)
    finally:
        model.use_fp8_weights(False)


def test_fp8_copies_follow_fusion_and_refuse_stale_weights(every_width):
    model = _tiny("llada").use_fp8_weights()
    try:
        model.fuse_projections()
        attn = model.net.layers[0].attn
        assert fp8_weights.lookup(attn.qkv_weight) is not None  # the fused matrix got its copy
        assert fp8_weights.lookup(attn.q_proj.weight) is None  # its row views are not what the layers pass
        assert len(model.net._fp8_weights) == 4 * model.arch.n_layers + 1
        _forwards(model)
        with torch.no_grad():
            model.net.lm_head.weight.mul_(2)  # changed in place after the copy was made
        with pytest.raises(RuntimeError, match="use_fp8_weights"):
            _forwards(model)
        model.use_fp8_weights()  # new copies
        _forwards(model)
    finally:
        model.use_fp8_weights(False)
