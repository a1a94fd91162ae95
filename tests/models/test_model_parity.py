"""Model parity: each adapter, loaded from a hand-written HF checkpoint folder, matches transformers'
``LlamaForCausalLM`` (LLaDA) / ``Qwen2ForCausalLM`` (Dream) run bidirectionally, fp32; and the cached
``forward_step`` matches the plain ``forward``."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import (FAMILIES, hf_logits, hf_oracle, padded_batch, random_hf_weights,
                                single_thread, tiny_config, tiny_model, write_hf_folder)  # noqa: F401

import fastdllm
from fastdllm.core.kv_store import NoStore

ATOL = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, tmp_path_factory):
    """(family, our model loaded from a hand-written 2-shard folder, the HF oracle on the same tensors)."""
    family = request.param
    cfg = tiny_config(family)
    weights = random_hf_weights(family, cfg, seed=1)
    folder = write_hf_folder(tmp_path_factory.mktemp(f"hand-{family}"), family, weights, cfg, shards=2)
    model = fastdllm.load_model(folder, device="cpu", dtype=torch.float32)
    return family, model, hf_oracle(family, cfg, weights)


@pytest.mark.parametrize("lengths", [[9, 9, 9], [9, 4, 6], [3, 11]], ids=["no-padding", "padded", "padded-2"])
def test_logits_match_transformers(loaded, lengths):
    family, model, oracle = loaded
    ids, real = padded_batch(lengths, seed=len(lengths))
    ours = model.forward(ids, real)  # [B, L, V]: row i predicts the token at position i
    theirs = hf_logits(oracle, ids, real)  # [B, L, V]: Dream's row i predicts position i + 1
    assert model.logit_shift == (1 if family == "dream" else 0)
    if family == "dream":
        ours, theirs, real = ours[:, 1:], theirs[:, :-1], real[:, :-1]  # same hidden states
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=0)
    assert theirs[real].std() > 0.5  # non-degenerate weights


def test_dream_forward_applies_the_shift():
    """Dream's ``forward`` row i is the LM head of hidden state i-1 (row 0 repeats row 1)."""
    model = tiny_model("dream", seed=3)
    ids, real = padded_batch([7], seed=3)
    logits = model.forward(ids, real)
    torch.testing.assert_close(logits[:, 0], logits[:, 1])
    h = model.net.hidden(ids, 0, 7, NoStore(), torch.arange(7)[None], None)  # [1, 7, d]
    torch.testing.assert_close(logits[:, 1:], model.net.lm_head(h[:, :-1]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padded", [False, True])
def test_forward_step_matches_forward(family, padded):
    """A refresh with the store, then partial recomputes (prefix-like and dual-like windows) on the same
    canvas, give the plain forward's logits."""
    model = tiny_model(family, seed=4)
    shift = model.logit_shift
    ids, real = padded_batch([14, 9] if padded else [14, 14], seed=5)
    ids[:, 10:] = model.mask_token_id  # a masked "generated" region [10, 14)
    B, L = ids.shape
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)
    key_mask = real if padded else None
    full = model.forward(ids, real if padded else None)  # [B, L, V]
    store = model.new_kv_store(B, L)
    with torch.no_grad():
        refresh = model.forward_step(ids, 0, L, store, position_ids, key_mask, 10, 14)
        torch.testing.assert_close(refresh, full[:, 10:14], atol=ATOL, rtol=0)
        nostore = model.forward_step(ids, 0, L, NoStore(), position_ids, key_mask, 10, 14)
        torch.testing.assert_close(nostore, full[:, 10:14], atol=ATOL, rtol=0)
        for start, end in [(10 - shift, L), (10 - shift, 12), (8, 13)]:  # prefix, dual, other window
            logits_end = min(end + shift, L)
            partial = model.forward_step(ids, start, end, store, position_ids, key_mask, 10, logits_end)
            torch.testing.assert_close(partial, full[:, 10:logits_end], atol=ATOL, rtol=0)
