"""Zero staleness: right after a refresh every cache policy sees exactly what `none` sees; with a refresh at
every step every cache policy decodes exactly what `none` decodes; and between refreshes prefix/dual do
read stale keys/values (so the equalities above are not vacuous)."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts, tiny_llada
from fastdllm.core.kv_store import NoStore
from fastdllm.core.model_api import left_pad

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4
PROMPTS = random_prompts(3, [7, 4, 5], seed=1)  # different lengths: left padding in the batch
CACHES = {
    "none": "none",
    "prefix": "prefix",
    "dual": "dual",
    "refresh-interval/prefix": {"name": "refresh-interval", "interval": 2, "reuse": "prefix"},
    "refresh-interval/dual": {"name": "refresh-interval", "interval": 3, "reuse": "dual"},
}
UNMASKS = {
    "fixed": {"name": "fixed", "steps": 6},
    "threshold": {"name": "threshold", "threshold": 0.3},
    "factor": {"name": "factor", "factor": 2.5},
}


def canvas_masks(prompts, model, gen_length):
    """Position ids and key mask of the canvas, as the decoder builds them (for the reference forward)."""
    _, prompt_mask = left_pad(prompts, None, model.pad_token_id, model.device)
    real = torch.cat([prompt_mask, torch.ones((prompt_mask.shape[0], gen_length), dtype=torch.bool)], 1)
    return (real.long().cumsum(-1) - 1).clamp_min(0), real


def fresh_logits(model, canvas, prompts, logits_start, logits_end):
    """`none`'s logits for the block on this canvas: a full forward without any store."""
    position_ids, real = canvas_masks(prompts, model, GEN)
    with torch.inference_mode():
        logits = model.forward_step(canvas, 0, canvas.shape[1], NoStore(), position_ids, real,
                                    logits_start, logits_end)
        logits[..., model.mask_token_id] = float("-inf")  # as the recording wrapper does
    return logits


def run(cache, unmask="threshold", prompts=PROMPTS):
    model = mask_free_llada()
    model.keep = True
    result = fastdllm.generate(model, prompts, gen_length=GEN, block_length=BLOCK, cache=cache, unmask=unmask)
    return model, result


@pytest.mark.parametrize("cache", list(CACHES), ids=list(CACHES))
def test_refresh_logits_equal_none(cache):
    model, result = run(CACHES[cache], UNMASKS["threshold"])
    L = result.sequences.shape[1]
    refreshes = [i for i, call in enumerate(model.calls) if call[:2] == (0, L)]
    assert len(refreshes) == result.refresh_forwards >= GEN // BLOCK  # at least step 0 of every block
    block_starts = {model.calls[i][2] for i in refreshes}
    assert len(block_starts) == GEN // BLOCK
    for i in refreshes:
        _, _, ls, le = model.calls[i]
        expected = fresh_logits(model, model.canvases[i], PROMPTS, ls, le)
        torch.testing.assert_close(model.logits[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cache", [c for c in CACHES if c != "none"])
def test_first_forward_equals_none_first_forward(cache):
    """Step 0 of block 0: same canvas for every policy, so the logits must match `none`'s directly."""
    reference, _ = run("none")
    model, _ = run(CACHES[cache])
    torch.testing.assert_close(model.logits[0], reference.logits[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reuse", ["prefix", "dual"])
@pytest.mark.parametrize("unmask", list(UNMASKS))
def test_refresh_every_step_decodes_what_none_decodes(reuse, unmask):
    _, expected = run("none", UNMASKS[unmask])
    _, got = run({"name": "refresh-interval", "interval": 1, "reuse": reuse}, UNMASKS[unmask])
    assert torch.equal(got.sequences, expected.sequences)
    assert got.nfe == expected.nfe and got.refresh_forwards == got.nfe
    assert torch.equal(got.nfe_per_row, expected.nfe_per_row)
    assert torch.equal(got.commit_forward, expected.commit_forward)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_reuse_forwards_are_stale(cache):
    """Between refreshes prefix/dual read keys/values computed on an older canvas: their logits differ from a
    fresh forward on the current canvas (staleness is real, so the zero-staleness checks can fail)."""
    model, result = run(cache)
    L = result.sequences.shape[1]
    stale = [i for i, call in enumerate(model.calls) if call[:2] != (0, L)]
    assert len(stale) == result.cached_forwards > 0
    worst = 0.0
    for i in stale:
        _, _, ls, le = model.calls[i]
        expected = fresh_logits(model, model.canvases[i], PROMPTS, ls, le)
        worst = max(worst, float((model.logits[i] - expected).nan_to_num(0.0).abs().max()))
    assert worst > 1e-3


@pytest.mark.parametrize("plan", ["prefix", "dual"])
def test_reuse_forward_on_unchanged_canvas_is_exact(plan):
    """A refresh, then a reuse forward on the same canvas: nothing is stale, so the logits equal a fresh
    forward's (the store's positions, RoPE'd keys and padding mask line up)."""
    model = tiny_llada()
    prompts = random_prompts(2, [7, 4], seed=3)
    ids, prompt_mask = left_pad(prompts, None, model.pad_token_id, model.device)
    P = ids.shape[1]
    gen = torch.randint(3, model.mask_token_id, (2, GEN), generator=torch.Generator().manual_seed(0))
    gen[:, 6:] = model.mask_token_id  # half generated, half still masked
    canvas = torch.cat([ids, gen], 1)
    position_ids, real = canvas_masks(prompts, model, GEN)
    L = canvas.shape[1]
    bs, be = P + BLOCK, P + 2 * BLOCK
    start, end = (bs, L) if plan == "prefix" else (bs, be)
    with torch.inference_mode():
        store = model.new_kv_store(2, L)
        model.forward_step(canvas, 0, L, store, position_ids, real, bs, be)
        cached = model.forward_step(canvas, start, end, store, position_ids, real, bs, be)
        fresh = model.forward_step(canvas, 0, L, NoStore(), position_ids, real, bs, be)
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-5)
