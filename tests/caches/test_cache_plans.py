"""What each cache policy recomputes, and how many forwards and refreshes a decode costs."""

from __future__ import annotations

import pytest

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm.core.step import Layout, Plan, Step

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4
BLOCKS = GEN // BLOCK
PROMPTS = random_prompts(2, [6, 3], seed=2)
CACHES = ["none", "prefix", "dual", {"name": "refresh-interval", "interval": 2, "reuse": "prefix"},
          {"name": "refresh-interval", "interval": 3, "reuse": "dual"}]
IDS = ["none", "prefix", "dual", "ri2-prefix", "ri3-dual"]


def decode(cache, unmask, prompts=PROMPTS, gen_length=GEN, block_length=BLOCK):
    model = mask_free_llada()
    steps = []
    result = fastdllm.generate(model, prompts, gen_length=gen_length, block_length=block_length, cache=cache,
                               unmask=unmask, callbacks=[lambda e: steps.append((e.step.block, e.step.index))])
    assert len(steps) == len(model.calls) == result.nfe
    return model, result, steps


def expected_range(cache, block, index, P, L):
    bs, be = P + block * BLOCK, P + (block + 1) * BLOCK
    if isinstance(cache, dict):
        if index % cache["interval"] == 0:
            return 0, L
        cache = cache["reuse"]
    if cache == "none" or index == 0:
        return 0, L
    return (bs, L) if cache == "prefix" else (bs, be)


@pytest.mark.parametrize("cache", CACHES, ids=IDS)
@pytest.mark.parametrize("unmask", ["fixed", {"name": "threshold", "threshold": 0.3}], ids=["fixed", "threshold"])
def test_recomputed_positions(cache, unmask):
    model, result, steps = decode(cache, unmask)
    P, L = result.prompt_length, result.sequences.shape[1]
    for (start, end, ls, le), (block, index) in zip(model.calls, steps):
        assert (start, end) == expected_range(cache, block, index, P, L), (block, index)
        assert (ls, le) == (P + block * BLOCK, P + (block + 1) * BLOCK)  # logits of the current block only
    if cache != "none":
        assert any(call[:2] != (0, L) for call in model.calls)  # reuse forwards did run


@pytest.mark.parametrize("cache", CACHES, ids=IDS)
def test_one_token_per_forward_costs_gen_length_forwards(cache):
    """fixed with steps = gen_length: the refresh forward commits the block's first token (it is one NFE),
    so every cache policy spends exactly gen_length forwards."""
    commits = []
    model = mask_free_llada()
    result = fastdllm.generate(model, PROMPTS, gen_length=GEN, block_length=BLOCK, cache=cache,
                               unmask={"name": "fixed", "steps": GEN},
                               callbacks=[lambda e: commits.append(e.commit.sum(-1).tolist())])
    assert result.nfe == GEN == model.forwards
    assert commits == [[1] * len(PROMPTS)] * GEN  # exactly one token per row per forward
    if cache == "none":
        assert result.refresh_forwards == result.nfe
    elif cache in ("prefix", "dual"):
        assert result.refresh_forwards == BLOCKS
    else:
        interval = cache["interval"]
        assert result.refresh_forwards == BLOCKS * len(range(0, BLOCK, interval))
    assert result.cached_forwards == result.nfe - result.refresh_forwards
    assert (result.generated != model.mask_token_id).all()


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_fixed_half_the_steps_commits_two_per_forward(cache):
    commits = []
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=GEN, block_length=BLOCK, cache=cache,
                               unmask={"name": "fixed", "steps": GEN // 2},
                               callbacks=[lambda e: commits.append(e.commit.sum(-1).tolist())])
    assert result.nfe == GEN // 2
    assert commits == [[2] * len(PROMPTS)] * (GEN // 2)


def test_fixed_schedule_gives_the_remainder_to_the_first_steps():
    """LLaDA's get_num_transfer_tokens: block 8 in 3 steps commits 3, 3, 2."""
    commits = []
    result = fastdllm.generate(mask_free_llada(), PROMPTS, gen_length=16, block_length=8, cache="dual",
                               unmask={"name": "fixed", "steps": 6},
                               callbacks=[lambda e: commits.append((e.step.block, e.commit.sum(-1).tolist()))])
    assert commits == [(b, [k] * len(PROMPTS)) for b in range(2) for k in (3, 3, 2)]
    assert result.nfe == 6


def test_prefix_and_dual_plans_directly():
    """The plans themselves (no decoder): refresh at step 0, then the block (+ suffix for prefix)."""
    layout = Layout(prompt_length=5, gen_length=12, block_length=4, logit_shift=0)
    prefix, dual, none = fastdllm.cache_policies.get("prefix")(), fastdllm.cache_policies.get("dual")(), \
        fastdllm.cache_policies.get("none")()
    for block in range(3):
        bs, be = 5 + 4 * block, 9 + 4 * block
        first = Step(layout, block, 0)
        assert prefix.plan(first) == dual.plan(first) == none.plan(first) == Plan(0, 17, refresh=True)
        for index in (1, 2, 3):
            step = Step(layout, block, index)
            assert prefix.plan(step) == Plan(bs, 17)
            assert dual.plan(step) == Plan(bs, be)
            assert none.plan(step) == Plan(0, 17, refresh=True)
    assert not none.uses_store and prefix.uses_store and dual.uses_store


def test_logit_shift_recomputes_the_position_before_the_block():
    """A shifted family (Dream) predicts block position j from hidden state j - 1: reuse plans start one
    position earlier."""
    layout = Layout(prompt_length=5, gen_length=12, block_length=4, logit_shift=1)
    step = Step(layout, 1, 2)
    assert fastdllm.cache_policies.get("prefix")().plan(step) == Plan(8, 17)
    assert fastdllm.cache_policies.get("dual")().plan(step) == Plan(8, 13)
    assert fastdllm.cache_policies.get("refresh-interval")(interval=4, reuse="dual").plan(step) == Plan(8, 13)
