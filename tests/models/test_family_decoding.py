"""Decoding with both families end to end: every cache × unmask policy finishes; zero staleness and
batch invariance hold for the shifted family (Dream) too."""

from __future__ import annotations

import pytest
import torch
from checkpoint_helpers import FAMILIES, padded_batch, single_thread, tiny_model  # noqa: F401

import fastdllm

CACHES = ["none", "prefix", "dual", "refresh-interval"]
UNMASKS = ["fixed", "threshold", "factor"]
OPTIONS = {"gen_length": 16, "block_length": 8}


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return tiny_model(request.param, seed=7)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("unmask", UNMASKS)
def test_every_policy_decodes(model, cache, unmask):
    ids, real = padded_batch([5, 9, 3], seed=8)
    result = fastdllm.generate(model, ids, attention_mask=real, cache=cache, unmask=unmask, **OPTIONS)
    assert result.sequences.shape == (3, 9 + 16)
    assert torch.equal(result.sequences[:, :9], ids)
    assert not (result.generated == model.mask_token_id).any()
    assert result.nfe >= 2 and 0 <= result.forced_commits <= int(result.nfe_per_row.sum())
    if unmask == "fixed":
        assert result.forced_commits == 0  # the fixed schedule always chooses


def _record_forwards(model, monkeypatch) -> list:
    calls = []
    original = model.forward_step

    def spy(canvas, start, end, store, position_ids, key_mask, logits_start, logits_end):
        out = original(canvas, start, end, store, position_ids, key_mask, logits_start, logits_end)
        calls.append((canvas.clone(), start, end, logits_start, logits_end, key_mask, out.clone()))
        return out

    monkeypatch.setattr(model, "forward_step", spy)
    return calls


@pytest.mark.parametrize("cache", ["prefix", "dual", {"name": "refresh-interval", "interval": 3}])
def test_zero_staleness_after_refresh(model, cache, monkeypatch):
    """Right after a refresh the logits equal the no-cache forward on the same canvas; the cached steps
    really reuse the store (they recompute fewer positions)."""
    ids, real = padded_batch([6, 4], seed=9)
    calls = _record_forwards(model, monkeypatch)
    fastdllm.generate(model, ids, attention_mask=real, cache=cache, unmask="fixed", **OPTIONS)
    monkeypatch.undo()
    L = ids.shape[1] + OPTIONS["gen_length"]
    refreshes = [c for c in calls if (c[1], c[2]) == (0, L)]
    assert len(refreshes) >= 2 and len(refreshes) < len(calls)
    for canvas, _, _, ls, le, key_mask, logits in refreshes:
        with torch.inference_mode():  # the recorded canvases are inference tensors
            expected = model.forward(canvas, key_mask)[:, ls:le]  # the `none` policy's logits
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    for canvas, start, end, ls, le, _, _ in calls:
        assert start <= ls - model.logit_shift and le - model.logit_shift <= end


@pytest.mark.parametrize("unmask", UNMASKS)
def test_refresh_every_step_decodes_like_none(model, unmask):
    ids, real = padded_batch([6, 4, 7], seed=10)
    base = fastdllm.generate(model, ids, attention_mask=real, cache="none", unmask=unmask, **OPTIONS)
    for reuse in ("prefix", "dual"):
        every = fastdllm.generate(model, ids, attention_mask=real, unmask=unmask,
                                  cache={"name": "refresh-interval", "interval": 1, "reuse": reuse}, **OPTIONS)
        assert torch.equal(every.sequences, base.sequences)
        assert every.nfe == base.nfe == every.refresh_forwards


# loose settings, so that the random tiny models commit several tokens per forward
PARALLEL_UNMASKS = ["fixed", {"name": "fixed", "steps": 4}, {"name": "threshold", "threshold": 0.2},
                    {"name": "factor", "factor": 2.5}]


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("unmask", PARALLEL_UNMASKS, ids=str)
def test_batch_invariance(model, cache, unmask):
    """A prompt decoded inside a left-padded batch gives the same tokens as decoded alone (fp32)."""
    lengths = [4, 9, 6]
    ids, real = padded_batch(lengths, seed=11)
    batch = fastdllm.generate(model, ids, attention_mask=real, cache=cache, unmask=unmask, **OPTIONS)
    for i, n in enumerate(lengths):
        alone = fastdllm.generate(model, ids[i:i + 1, -n:], cache=cache, unmask=unmask, **OPTIONS)
        assert torch.equal(alone.generated[0], batch.generated[i]), f"row {i} ({cache}, {unmask})"
