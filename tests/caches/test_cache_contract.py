"""The cache contract: plan constructors (logit shift applied once), partial and sparse plans through the
decoder's checks and the network, ``begin``/``observe``, and the drift the store measures on request."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from fastdllm.core.kv_store import KVStore, NoStore
from fastdllm.core.model_api import left_pad
from fastdllm.core.step import Layout, Plan, Step
from tests.conftest import mask_free_llada, random_prompts, tiny_llada

PROMPTS = random_prompts(2, [6, 4], seed=1)


@pytest.mark.parametrize("shift", [0, 1])
def test_constructors_apply_the_logit_shift_once(shift):
    layout = Layout(prompt_length=5, gen_length=12, block_length=4, logit_shift=shift)
    step = Step(layout, 1, 2)  # block [9, 13)
    assert Plan.full(step) == Plan(0, 17, refresh=True)
    assert Plan.block(step) == Plan(9 - shift, 13)
    assert Plan.from_block_to_end(step) == Plan(9 - shift, 17)
    assert Plan.generated(step) == Plan(5 - shift, 17)
    assert Plan.range(step, 11, 15) == Plan(11 - shift, 15)
    # a range that reaches the whole canvas is a refresh (and never starts below 0)
    assert Plan.range(step, shift, 17) == Plan(0, 17, refresh=True) == Plan.range(step, 0, 17)
    extra = torch.tensor([2, 15])
    sparse = Plan.block_and(step, extra)
    assert (sparse.start, sparse.end, sparse.refresh, sparse.size) == (9 - shift, 13, False, 4 + shift + 2)


class PromptKeeping(fastdllm.CachePolicy):
    """Full refresh once, then at each block's first step recompute only the generated region."""

    def plan(self, step):
        if step.block == step.index == 0:
            return Plan.full(step)
        return Plan.generated(step) if step.index == 0 else Plan.block(step)


def test_a_partial_refresh_passes_the_plan_checks():
    model = mask_free_llada()
    result = fastdllm.generate(model, PROMPTS, gen_length=12, block_length=4, cache=PromptKeeping(),
                               unmask="fixed")
    P, L = result.prompt_length, result.sequences.shape[1]
    assert result.refresh_forwards == 1 and model.calls[0][:2] == (0, L)
    firsts = [call[:2] for call, (b, i) in zip(model.calls, [(b, i) for b in range(3) for i in range(4)]) if i == 0]
    assert firsts == [(0, L), (P, L), (P, L)]
    assert result.recomputed_positions == L + 2 * (L - P) + 9 * 4


class SparseRefresh(fastdllm.CachePolicy):
    """Dual reuse that also recomputes the prompt's last two positions."""

    def plan(self, step):
        if step.index == 0:
            return Plan.full(step)
        P = step.layout.prompt_length
        return Plan.block_and(step, torch.tensor([P - 2, P - 1]))


def test_extra_positions_are_recomputed_and_written_to_the_store():
    """Layer 0's keys depend only on the token and its position: after a sparse forward, the extra positions
    hold the keys of the new canvas, every other position outside the window keeps the old ones."""
    model = tiny_llada()
    ids, real_prompt = left_pad(PROMPTS, None, model.pad_token_id, model.device)
    P, G, B = ids.shape[1], 8, ids.shape[0]
    canvas = torch.cat([ids, torch.full((B, G), model.mask_token_id)], 1)  # [B, L]
    real = torch.cat([real_prompt, torch.ones(B, G, dtype=torch.bool)], 1)
    position_ids = (real.long().cumsum(-1) - 1).clamp_min(0)
    L = canvas.shape[1]
    with torch.inference_mode():
        store = model.new_kv_store(B, L)
        model.forward_step(canvas, 0, L, store, position_ids, real, P, P + 4)
        old = store.keys[0].clone()
        changed = canvas.clone()
        changed[:, 1:P] = 5  # new tokens at every prompt position but 0
        extra = torch.tensor([1, 3])
        logits = model.forward_step(changed, P, P + 4, store, position_ids, real, P, P + 4, extra=extra)
        fresh = model.new_kv_store(B, L)
        model.forward_step(changed, 0, L, fresh, position_ids, real, P, P + 4)
    assert logits.shape == (B, 4, model.vocab_size)
    torch.testing.assert_close(store.keys[0][:, :, [1, 3]], fresh.keys[0][:, :, [1, 3]])
    untouched = [p for p in range(1, P) if p not in (1, 3)]
    assert torch.equal(store.keys[0][:, :, untouched], old[:, :, untouched])
    assert not torch.allclose(old[:, :, [1, 3]], fresh.keys[0][:, :, [1, 3]])


def test_a_sparse_plan_decodes_through_the_decoder():
    result = fastdllm.generate(tiny_llada(), PROMPTS, gen_length=8, block_length=4, cache=SparseRefresh(),
                               unmask="fixed")
    dual = fastdllm.generate(tiny_llada(), PROMPTS, gen_length=8, block_length=4, cache="dual", unmask="fixed")
    L = result.sequences.shape[1]
    assert result.nfe == dual.nfe == 8
    assert result.recomputed_positions == 2 * L + 6 * (4 + 2)


class Refreshing(fastdllm.CachePolicy):
    def plan(self, step):
        return Plan.full(step) if step.block == step.index == 0 else Plan.range(step, 0, step.layout.canvas_length)


class FirstPartial(fastdllm.CachePolicy):
    def plan(self, step):
        return Plan.generated(step)


class BadExtra(fastdllm.CachePolicy):
    def plan(self, step):
        return Plan.full(step) if step.index == 0 else Plan.block_and(step, torch.tensor([0.5]))


def test_plan_checks():
    kw = dict(gen_length=8, block_length=4, unmask="fixed")
    assert fastdllm.generate(mask_free_llada(), PROMPTS, cache=Refreshing(), **kw).refresh_forwards == 8
    with pytest.raises(RuntimeError, match="first forward must be a refresh"):
        fastdllm.generate(mask_free_llada(), PROMPTS, cache=FirstPartial(), **kw)
    with pytest.raises(RuntimeError, match="extra must be a 1-D integer tensor"):
        fastdllm.generate(mask_free_llada(), PROMPTS, cache=BadExtra(), **kw)


class Watching(fastdllm.CachePolicy):
    """Dual cache that records what the decoder tells it."""

    wants_drift = True

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.layouts, self.seen = [], []

    def begin(self, layout):
        self.layouts.append(layout)

    def plan(self, step):
        return Plan.full(step) if step.index == 0 else Plan.block(step)

    def observe(self, obs):
        drift = None if obs.key_drift is None else (obs.key_drift.clone(), obs.value_drift.clone())
        self.seen.append((obs.step.block, obs.step.index, obs.plan, obs.commit.clone(), drift))


def test_begin_and_observe_see_every_forward_with_drift():
    policy = Watching()
    commits = []
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=8, block_length=4, cache=policy,
                               unmask="fixed", callbacks=[lambda e: commits.append(e.commit.clone())])
    assert len(policy.layouts) == 1 and policy.layouts[0].prompt_length == result.prompt_length
    assert len(policy.seen) == result.nfe == 8
    assert all(torch.equal(c, s[3]) for c, s in zip(commits, policy.seen))
    assert policy.seen[0][4] is None  # the first forward overwrote an empty store: no drift
    for block, index, plan, _, (kd, vd) in policy.seen[1:]:
        assert kd.shape == vd.shape == (2, 2) and kd.dtype == torch.float32  # [n_layers, B]
        assert bool((kd >= 0).all()) and bool(torch.isfinite(kd).all())
    # a block's first forward refreshes after the last commit of the block before: keys moved
    assert bool((policy.seen[4][4][0] > 0).all())
    fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=8, block_length=4, cache=policy, unmask="fixed")
    assert len(policy.layouts) == 2  # begin once per decode


def test_drift_is_the_relative_change_of_the_written_rows():
    store = KVStore(n_layers=2, batch=2, n_kv_heads=1, length=5, head_dim=2, dtype=torch.float32,
                    device="cpu").track_drift()
    index = torch.tensor([1, 3])
    k1 = torch.tensor([[3.0, 4.0], [0.0, 0.0]]).expand(2, 1, 2, 2).clone()  # [B, H, n, D], ||k1|| = 5 per row
    store.update(1, 1, index, k1, k1)
    k2 = k1.clone()
    k2[0, 0, 1] = torch.tensor([0.0, 5.0])  # row 0 moves by 5 at one position; row 1 does not move
    store.update(1, 1, index, k2, 2 * k1)
    torch.testing.assert_close(store.key_drift[1], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(store.value_drift[1], torch.tensor([1.0, 1.0]))
    assert torch.equal(store.keys[1][:, :, [1, 3]], k2)


def test_drift_is_measured_only_when_asked():
    model = RecordingStore(tiny_llada())
    fastdllm.generate(model, PROMPTS, gen_length=8, block_length=4, cache="dual", unmask="fixed")
    assert model.stores[0].key_drift is None
    fastdllm.generate(model, PROMPTS, gen_length=8, block_length=4, cache=Watching(), unmask="fixed")
    assert model.stores[1].key_drift is not None
    with pytest.raises(RuntimeError, match="needs a full-canvas forward"):
        NoStore().update(0, 3, torch.arange(3, 5), None, None)


class RecordingStore:
    def __init__(self, model):
        self.model, self.stores = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def new_kv_store(self, batch, length):
        self.stores.append(self.model.new_kv_store(batch, length))
        return self.stores[-1]
