"""prompt-reuse: one full refresh, then block-start refreshes of the generated region only (prompt K/V kept)."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import RecordingModel, mask_free_llada, random_prompts, tiny_llada
from fastdllm.caches import PromptReuseCache
from fastdllm.core.model_api import left_pad
from fastdllm.core.step import Layout, Plan, Step

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4
PROMPTS = random_prompts(3, [7, 4, 5], seed=1)  # left padding in the batch
OPTIONS = dict(gen_length=GEN, block_length=BLOCK, unmask={"name": "threshold", "threshold": 0.3})


@pytest.mark.parametrize("shift", [0, 1])
def test_plans(shift):
    layout = Layout(prompt_length=5, gen_length=12, block_length=4, logit_shift=shift)
    policy = PromptReuseCache()
    assert policy.plan(Step(layout, 0, 0)) == Plan(0, 17, refresh=True)
    assert policy.plan(Step(layout, 1, 0)) == policy.plan(Step(layout, 2, 0)) == Plan(5 - shift, 17)
    assert policy.plan(Step(layout, 0, 2)) == Plan(5 - shift, 9)
    assert policy.plan(Step(layout, 2, 3)) == Plan(13 - shift, 17)


class StoreKeeping(RecordingModel):
    """Records every forward and keeps the KV store the decoder allocates."""

    def new_kv_store(self, batch, length):
        self.store = self.model.new_kv_store(batch, length)
        return self.store


def decode(cache, model):
    snapshots = []  # the store's keys and values after each forward, each [n_layers, B, H, L, D]
    result = fastdllm.generate(model, PROMPTS, cache=cache, callbacks=[lambda e: snapshots.append(
        torch.stack([model.store.keys, model.store.values]))], **OPTIONS)
    return result, snapshots


def test_first_forward_refreshes_then_block_starts_cover_exactly_the_generated_region():
    model = StoreKeeping(tiny_llada(), keep=True, forbid_mask=True)
    result, _ = decode("prompt-reuse", model)
    P, L = result.prompt_length, result.sequences.shape[1]
    assert model.calls[0][:2] == (0, L) and result.refresh_forwards == 1
    starts = [call for call in model.calls if call[2] in (P + BLOCK, P + 2 * BLOCK) and call[:2] != (call[2], call[3])]
    assert [c[:2] for c in starts] == [(P, L), (P, L)]  # blocks 1 and 2 start with [P, L)
    others = [c for c in model.calls[1:] if c not in starts]
    assert all(c[:2] == (c[2], c[3]) for c in others)  # every other forward recomputes the block only
    assert result.recomputed_positions == L + 2 * (L - P) + BLOCK * (result.nfe - 3)


def test_prompt_keys_and_values_are_never_rewritten():
    """After the first forward the prompt's keys and values stay exactly as written (in the second layer they
    would have changed: dual rewrites them), while the generated region's are recomputed."""
    model = StoreKeeping(tiny_llada(), forbid_mask=True)
    result, snaps = decode("prompt-reuse", model)
    P = result.prompt_length
    assert all(torch.equal(s[..., :P, :], snaps[0][..., :P, :]) for s in snaps)
    assert not torch.equal(snaps[-1][..., P:, :], snaps[0][..., P:, :])
    dual_model = StoreKeeping(tiny_llada(), forbid_mask=True)
    _, dual_snaps = decode("dual", dual_model)
    assert not torch.equal(dual_snaps[-1][:, 1, ..., :P, :], dual_snaps[0][:, 1, ..., :P, :])


def test_block_start_logits_match_a_brute_force_reference():
    """Reference for a block-start forward: the prompt's keys/values from a full forward on the initial canvas
    (prompt + all masks), the generated region recomputed on the current canvas."""
    model = RecordingModel(tiny_llada(), keep=True, forbid_mask=True)
    result = fastdllm.generate(model, PROMPTS, cache="prompt-reuse", **OPTIONS)
    P, L = result.prompt_length, result.sequences.shape[1]
    _, prompt_mask = left_pad(PROMPTS, None, model.pad_token_id, model.device)
    real = torch.cat([prompt_mask, torch.ones(len(PROMPTS), GEN, dtype=torch.bool)], 1)
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)
    starts = [i for i, c in enumerate(model.calls) if c[:2] == (P, L)]
    assert len(starts) == 2
    worst_vs_fresh = 0.0
    for i in starts:
        _, _, ls, le = model.calls[i]
        with torch.inference_mode():
            store = model.model.new_kv_store(len(PROMPTS), L)
            model.model.forward_step(model.canvases[0], 0, L, store, position_ids, real, ls, le)
            expected = model.model.forward_step(model.canvases[i], P, L, store, position_ids, real, ls, le)
            fresh = model.model.forward_step(model.canvases[i], 0, L, store, position_ids, real, ls, le)
            expected[..., model.mask_token_id] = fresh[..., model.mask_token_id] = float("-inf")
        torch.testing.assert_close(model.logits[i], expected, rtol=1e-5, atol=1e-5)
        worst_vs_fresh = max(worst_vs_fresh, float((model.logits[i] - fresh).nan_to_num(0.0).abs().max()))
    assert worst_vs_fresh > 1e-3  # the kept prompt keys/values are stale in a 2-layer model


def test_equals_dual_where_prompt_keys_cannot_change():
    """With one layer a position's keys/values depend only on its token and position: the prompt's never
    change, so keeping them is exact and prompt-reuse decodes exactly what dual decodes."""
    one = fastdllm.generate(mask_free_llada(n_layers=1), PROMPTS, cache="prompt-reuse", **OPTIONS)
    dual = fastdllm.generate(mask_free_llada(n_layers=1), PROMPTS, cache="dual", **OPTIONS)
    assert torch.equal(one.sequences, dual.sequences) and torch.equal(one.commit_forward, dual.commit_forward)
    assert one.refresh_forwards == 1 < dual.refresh_forwards == GEN // BLOCK
    assert one.recomputed_positions < dual.recomputed_positions
