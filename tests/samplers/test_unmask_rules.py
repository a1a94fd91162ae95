"""The three built-in rules on hand-computed confidences: threshold, factor and LLaDA's fixed schedule."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastdllm.core.policy import at_least_one
from fastdllm.core.proposal import Proposal
from fastdllm.core.step import Layout, Step
from fastdllm.samplers import FactorUnmask, FixedUnmask, ThresholdUnmask

pytestmark = pytest.mark.usefixtures("single_thread")

T, F = True, False


def proposal(confidence, masked) -> Proposal:
    conf = torch.tensor(confidence, dtype=torch.float32)
    return Proposal(tokens=torch.zeros(conf.shape, dtype=torch.long), confidence=conf,
                    masked=torch.tensor(masked, dtype=torch.bool))


def decide(policy, p, s):
    """What the decoder commits: the policy's choice among the masked positions, plus its progress rule (the
    most confident masked position in a row that chose none)."""
    return at_least_one(policy.select(p, s) & p.masked, p)


def step(block_length=4, gen_length=None, index=0, block=0) -> Step:
    layout = Layout(prompt_length=2, gen_length=gen_length or block_length, block_length=block_length, logit_shift=0)
    return Step(layout, block, index)


# ---- threshold ---------------------------------------------------------------------------------------------


def test_threshold_rule():
    p = proposal([[0.95, 0.5, 0.9, 0.89],  # two clear tau
                  [0.99, 0.6, 0.7, 0.2],  # the 0.99 one is already committed; none of the rest clears: best one
                  [0.5, 0.5, 0.25, 0.1],  # exactly tau counts (>=)
                  [0.99, 0.99, 0.99, 0.99]],  # nothing masked: nothing committed
                 [[T, T, T, T], [F, T, T, T], [T, T, T, F], [F, F, F, F]])
    assert decide(ThresholdUnmask(threshold=0.9), p, step()).tolist() == [
        [T, F, T, F], [F, F, T, F], [T, F, F, F], [F, F, F, F]]
    assert decide(ThresholdUnmask(threshold=0.5), p, step()).tolist()[2] == [T, T, F, F]
    assert decide(ThresholdUnmask(threshold=1.0), p, step()).tolist() == [
        [T, F, F, F], [F, F, T, F], [T, F, F, F], [F, F, F, F]]


# ---- factor ------------------------------------------------------------------------------------------------


def test_factor_rule_hand_computed():
    """Largest n with (n+1)(1 - c(n)) < f over the sorted masked confidences, at least one."""
    p = proposal([[0.95, 0.9, 0.8, 0.5],  # n=1: 0.1, n=2: 0.3, n=3: 0.8, n=4: 2.5  -> f=1: 3
                  [0.99, 0.6, 0.9, 0.95],  # 0.99 committed; sorted 0.95, 0.9, 0.6: 0.1, 0.3, 1.6 -> f=1: 2
                  [0.3, 0.2, 0.1, 0.25],  # n=1: 1.4 >= 1 -> none qualifies: the most confident only
                  [0.1, 0.1, 0.1, 0.1]],  # nothing masked
                 [[T, T, T, T], [F, T, T, T], [T, T, T, T], [F, F, F, F]])
    assert decide(FactorUnmask(factor=1.0), p, step()).tolist() == [
        [T, T, T, F], [F, F, T, T], [T, F, F, F], [F, F, F, F]]
    assert decide(FactorUnmask(factor=0.5), p, step()).tolist()[0] == [T, T, F, F]  # n=3 gives 0.8 >= 0.5
    assert decide(FactorUnmask(factor=3.0), p, step()).tolist()[0] == [T, T, T, T]  # n=4 gives 2.5 < 3
    assert decide(FactorUnmask(factor=1.5), p, step()).tolist()[2] == [T, F, F, F]  # 1.4 < 1.5, n=2: 3*0.75
    # the (n + 1) factor matters: with n instead, 2 * (1 - 0.6) = 0.8 < 1 would commit both
    edge = proposal([[0.62, 0.6, 0.1, 0.1]], [[T, T, T, T]])  # n=1: 2*0.38 = 0.76 < 1; n=2: 3*0.4 = 1.2
    assert decide(FactorUnmask(factor=1.0), edge, step()).tolist() == [[T, F, F, F]]
    assert decide(FactorUnmask(factor=1.25), edge, step()).tolist() == [[T, T, F, F]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=8), st.floats(0.05, 6.0), st.data())
def test_factor_rule_matches_its_definition(conf, factor, data):
    masked = data.draw(st.lists(st.booleans(), min_size=len(conf), max_size=len(conf)))
    assume(any(masked))
    live = sorted((c for c, m in zip(conf, masked) if m), reverse=True)
    values = [(n + 1) * (1 - c) for n, c in enumerate(live, start=1)]
    assume(all(abs(v - factor) > 1e-4 for v in values))  # away from float32 rounding at the boundary
    count = max([n for n, v in enumerate(values, start=1) if v < factor], default=1)
    chosen = decide(FactorUnmask(factor=factor), proposal([conf], [masked]), step(len(conf)))[0]
    assert int(chosen.sum()) == count
    assert not (chosen & ~torch.tensor(masked)).any()
    picked = sorted((c for c, k in zip(conf, chosen.tolist()) if k), reverse=True)
    assert min(picked) >= live[count - 1]  # the most confident ones


# ---- fixed -------------------------------------------------------------------------------------------------


def llada_num_transfer_tokens(block_length: int, steps: int) -> list[int]:
    """LLaDA's get_num_transfer_tokens for a fully masked block (generate.py)."""
    base, remainder = divmod(block_length, steps)
    return [base + 1 if i < remainder else base for i in range(steps)]


@pytest.mark.parametrize("block_length, steps_per_block, expected", [
    (8, 3, [3, 3, 2]), (8, 8, [1] * 8), (8, 1, [8]), (4, 2, [2, 2]), (5, 3, [2, 2, 1]), (7, 4, [2, 2, 2, 1])])
def test_fixed_schedule(block_length, steps_per_block, expected):
    assert llada_num_transfer_tokens(block_length, steps_per_block) == expected
    blocks = 2
    policy = FixedUnmask(steps=steps_per_block * blocks)
    for block in range(blocks):
        counts = [policy.tokens_at(step(block_length, block_length * blocks, index=i, block=block))
                  for i in range(steps_per_block)]
        assert counts == expected


def test_fixed_default_steps_is_one_token_per_forward():
    policy = FixedUnmask()
    assert all(policy.tokens_at(step(4, 12, index=i, block=1)) == 1 for i in range(4))


def test_fixed_low_confidence_takes_the_most_confident_masked():
    p = proposal([[0.9, 0.1, 0.8, 0.3], [0.2, 0.9, 0.3, 0.4]], [[F, T, T, T], [T, T, T, T]])
    got = FixedUnmask(steps=2).select(p, step(4, 4, index=0))  # 2 per step
    assert got.tolist() == [[F, F, T, T], [F, T, F, T]]
    last = proposal([[0.9, 0.1, 0.8, 0.3]], [[F, T, F, F]])  # fewer masked than k: only the masked one
    assert FixedUnmask(steps=2).select(last, step(4, 4, index=1)).tolist() == [[F, T, F, F]]


def test_fixed_random_remasking_is_a_seeded_subset():
    p = proposal([[0.9, 0.1, 0.8, 0.3, 0.5, 0.6]] * 3, [[T, F, T, T, T, T]] * 3)
    layout = Layout(prompt_length=2, gen_length=6, block_length=6, logit_shift=0)
    policy = FixedUnmask(steps=3, remasking="random")
    picks = []
    for seed in (0, 0, 1):
        got = policy.select(p, Step(layout, 0, 0, 0.0, torch.Generator().manual_seed(seed)))
        assert (got.sum(-1) == 2).all() and not got[:, 1].any()
        picks.append(got)
    assert torch.equal(picks[0], picks[1])
    # random order ignores confidence: over the rows and seeds, some pick is not the top-2 by confidence
    top2 = FixedUnmask(steps=3).select(p, step(6, 6))
    assert any(not torch.equal(pick[r], top2[r]) for pick in picks for r in range(3))
