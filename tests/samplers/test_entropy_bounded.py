"""EB-sampler (arXiv 2505.24857): the longest confidence-ordered prefix with sum(H) - max(H) <= gamma."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm.core.step import Layout, Step
from fastdllm.samplers import EntropyBoundedUnmask
from fastdllm.samplers.entropy_bounded import EntropyProposal, token_entropy

pytestmark = pytest.mark.usefixtures("single_thread")

T, F = True, False


def proposal(confidence, entropy, masked) -> EntropyProposal:
    conf = torch.tensor(confidence, dtype=torch.float32)
    return EntropyProposal(tokens=torch.zeros(conf.shape, dtype=torch.long), confidence=conf,
                           masked=torch.tensor(masked, dtype=torch.bool),
                           entropy=torch.tensor(entropy, dtype=torch.float32))


def step(block_length=4) -> Step:
    return Step(Layout(prompt_length=2, gen_length=block_length, block_length=block_length, logit_shift=0), 0, 0)


CASE = proposal(
    [[0.9, 0.8, 0.7, 0.6],  # order 0,1,2,3; sum - max of the prefixes: 0, .05, .09, .29 -> 0,1,2
     [0.5, 0.99, 0.6, 0.7],  # 1 committed; order 3,2,0: 0, .02, .31 - .2 = .11 -> 3,2 (entropy order would give 3,0)
     [0.9, 0.9, 0.9, 0.9],  # nothing masked: nothing
     [0.3, 0.2, 0.1, 0.25]],  # every pair costs >= 1.0: only the most confident
    [[0.3, 0.05, 0.04, 0.2],
     [0.09, 0.0, 0.2, 0.02],
     [0.0, 0.0, 0.0, 0.0],
     [2.0, 1.5, 1.0, 1.8]],
    [[T, T, T, T], [T, F, T, T], [F, F, F, F], [T, T, T, T]])


def test_entropy_bounded_rule_hand_computed():
    assert EntropyBoundedUnmask(gamma=0.1).select(CASE, step()).tolist() == [
        [T, T, T, F], [F, F, T, T], [F, F, F, F], [T, F, F, F]]
    # gamma 0: one per row (no zero-entropy ties here); a huge gamma: every masked position
    assert EntropyBoundedUnmask(gamma=0.0).select(CASE, step()).tolist() == [
        [T, F, F, F], [F, F, F, T], [F, F, F, F], [T, F, F, F]]
    assert EntropyBoundedUnmask(gamma=100.0).select(CASE, step()).tolist() == [
        [T, T, T, T], [T, F, T, T], [F, F, F, F], [T, T, T, T]]
    # the bound is inclusive: row 0's third prefix costs exactly 0.09
    assert EntropyBoundedUnmask(gamma=0.09).select(CASE, step()).tolist()[0] == [T, T, T, F]
    assert EntropyBoundedUnmask(gamma=0.089).select(CASE, step()).tolist()[0] == [T, T, F, F]


def test_gamma_zero_takes_the_zero_entropy_head_and_one_more():
    """sum - max leaves out the largest entropy: at gamma 0 the zero-entropy positions at the head of the order
    go together with the next one, whatever its entropy."""
    p = proposal([[0.99, 0.98, 0.5, 0.97], [0.99, 0.98, 0.5, 0.97]],
                 [[0.0, 0.0, 0.4, 0.0], [0.0, 0.0, 0.4, 0.3]], [[T, T, T, T], [T, T, T, T]])
    assert EntropyBoundedUnmask(gamma=0.0).select(p, step()).tolist() == [[T, T, T, T], [T, T, F, T]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0625, 1.0, width=32), st.floats(0.0, 3.0, width=32), st.booleans()),
                min_size=1, max_size=8),
       st.floats(0.0, 4.0))
def test_choice_is_the_longest_prefix_within_the_bound(rows, gamma):
    conf, entropy, masked = (list(x) for x in zip(*rows))
    assume(any(masked))
    assume(len({c for c, m in zip(conf, masked) if m}) == sum(masked))  # a strict confidence order
    order = sorted((i for i in range(len(conf)) if masked[i]), key=lambda i: -conf[i])
    cost = [sum(entropy[i] for i in order[:k]) - max(entropy[i] for i in order[:k]) for k in range(1, len(order) + 1)]
    assume(all(abs(c - gamma) > 1e-4 for c in cost))  # away from float32 rounding at the bound
    chosen = EntropyBoundedUnmask(gamma=gamma).select(proposal([conf], [entropy], [masked]), step(len(conf)))[0]
    picked = [i for i, k in enumerate(chosen.tolist()) if k]
    n = len(picked)
    assert n >= 1 and set(picked) == set(order[:n]), "not a prefix of the confidence order"
    assert cost[n - 1] <= gamma or n == 1, "the committed set breaks the entropy bound"
    assert n == len(order) or cost[n] > gamma, "a longer prefix was within the bound"


def test_propose_adds_the_entropy_in_nats():
    logits = torch.full((1, 3, 6), float("-inf"))  # [B=1, block=3, V=6]; token 5 plays the mask token (-inf)
    logits[0, 0, :4] = 0.0  # uniform over 4 tokens: ln 4
    logits[0, 1, 2] = 0.0  # one token: 0
    logits[0, 2, :2] = torch.log(torch.tensor([0.25, 0.75]))
    p = EntropyBoundedUnmask().propose(logits, torch.ones(1, 3, dtype=torch.bool), step(3))
    expected = [math.log(4), 0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    torch.testing.assert_close(p.entropy[0], torch.tensor(expected))
    torch.testing.assert_close(token_entropy(logits), p.entropy)
    assert p.tokens.tolist() == [[0, 2, 1]]
    torch.testing.assert_close(p.confidence[0], torch.tensor([0.25, 1.0, 0.75]))


def test_select_without_entropy_is_a_clear_error():
    plain = fastdllm.Proposal(tokens=torch.zeros(1, 2, dtype=torch.long), confidence=torch.ones(1, 2),
                              masked=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="propose"):
        EntropyBoundedUnmask().select(plain, step(2))


def test_gamma_zero_decodes_like_one_token_per_forward():
    """With every entropy > 0, gamma = 0 commits exactly the most confident position per forward: the
    decode is token-identical to LLaDA's one-token fixed schedule; a huge gamma fills a block per forward."""
    prompts = random_prompts(3, [5, 3, 6], seed=2)
    options = dict(gen_length=12, block_length=4, cache="dual")
    eb = fastdllm.generate(mask_free_llada(), prompts, unmask={"name": "entropy-bounded", "gamma": 0.0}, **options)
    fixed = fastdllm.generate(mask_free_llada(), prompts, unmask="fixed", **options)
    assert torch.equal(eb.sequences, fixed.sequences)
    assert eb.nfe == 12 and eb.forced_commits == 0
    wide = fastdllm.generate(mask_free_llada(), prompts, unmask={"name": "entropy-bounded", "gamma": 1e6}, **options)
    assert wide.nfe == 3 and (wide.nfe_per_row == 3).all()
