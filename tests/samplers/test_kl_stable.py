"""KLASS (arXiv 2511.05664): commit the confident positions whose predictions stopped moving (small step KL)."""

from __future__ import annotations

import math

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm.core.step import Layout, Step
from fastdllm.samplers import KLStableUnmask
from fastdllm.samplers.kl_stable import step_kl

pytestmark = pytest.mark.usefixtures("single_thread")

T, F = True, False
LAYOUT = Layout(prompt_length=2, gen_length=6, block_length=3, logit_shift=0)
ALL = torch.ones(1, 3, dtype=torch.bool)  # [B=1, block=3], every position still masked


def logits_of(*rows: list[float]) -> torch.Tensor:
    """``[1, block, V]`` logits whose softmax is each given distribution (plus a -inf mask token at the end)."""
    probs = torch.tensor(rows, dtype=torch.float32)  # [block, V-1]
    logits = torch.cat([probs.log(), torch.full((len(rows), 1), float("-inf"))], dim=-1)
    return logits[None]


STEADY = [0.95, 0.03, 0.02]  # confident, and the same at every step
UNSURE = [0.5, 0.3, 0.2]  # the same at every step, below the threshold


def jumpy(t: int) -> list[float]:  # more confident still, but its top token alternates between steps
    return [0.97, 0.02, 0.01] if t % 2 == 0 else [0.02, 0.97, 0.01]


def run(policy, steps, block=0, first_index=0, rows=None):
    chosen = []
    for t in range(steps):
        step = Step(LAYOUT, block, first_index + t)
        logits = logits_of(*(rows(t) if rows else (STEADY, jumpy(t), UNSURE)))
        chosen.append(policy.select(policy.propose(logits, ALL, step), step)[0].tolist())
    return chosen


def test_commits_a_confident_position_once_it_was_stable_for_history_forwards():
    # steps 0, 1: no KL history long enough -> nothing selected (the decoder then commits the most confident);
    # the jumpy position is the most confident but never stable, the unsure one stable but below 0.9
    assert run(KLStableUnmask(history=2), 4) == [[F, F, F], [F, F, F], [T, F, F], [T, F, F]]
    assert run(KLStableUnmask(history=1), 3) == [[F, F, F], [T, F, F], [T, F, F]]
    assert run(KLStableUnmask(history=3), 4)[2:] == [[F, F, F], [T, F, F]]
    # the unsure position is stable too: a threshold below its confidence lets it in
    assert run(KLStableUnmask(history=1, threshold=0.4), 2)[1] == [T, F, T]


def test_the_history_restarts_at_each_block():
    policy = KLStableUnmask(history=1)
    run(policy, 3, block=0)
    assert run(policy, 2, block=1) == [[F, F, F], [T, F, F]]  # step 0 of block 1 sees no history


def test_a_jump_resets_the_run_and_a_small_drift_does_not():
    def rows(t):
        steady = {2: [0.9, 0.08, 0.02]}.get(t, STEADY)  # a big move at step 2 (KL ~ 0.02 > 0.01)
        return steady, [0.96, 0.03, 0.01] if t < 3 else [0.955, 0.035, 0.01], UNSURE  # KL ~ 1e-4 at step 3

    chosen = run(KLStableUnmask(history=2), 6, rows=rows)
    # position 1 (0.96, steady; a drift of KL 1e-4 at step 3 does not break its run) is stable from step 2 on;
    # position 0 moves away at step 2 and back at step 3 (both KL ~ 0.02): its run is 0 at steps 2 and 3,
    # 1 at step 4 and 2 at step 5, so it is committed at step 5 only
    assert [r[1] for r in chosen] == [F, F, T, T, T, T]
    assert [r[0] for r in chosen] == [F, F, F, F, F, T]
    jump = torch.tensor([0.9, 0.08, 0.02]).log(), torch.tensor(STEADY).log()
    assert 0.01 < float(step_kl(*jump)) and 0.01 < float(step_kl(*jump[::-1]))


def test_step_kl_is_kl_of_now_from_before():
    now, before = torch.tensor([0.5, 0.5]).log(), torch.tensor([0.9, 0.1]).log()
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.511; the reverse KL is 0.368
    torch.testing.assert_close(step_kl(now, before), torch.tensor(expected))
    inf = torch.tensor([float("-inf")])  # a token impossible in both distributions adds nothing (no NaN)
    torch.testing.assert_close(step_kl(torch.cat([now, inf]), torch.cat([before, inf])), torch.tensor(expected))


def test_threshold_is_strict_and_select_needs_propose():
    conf = KLStableUnmask().propose(logits_of(STEADY, jumpy(0), UNSURE), ALL, Step(LAYOUT, 0, 0)).confidence
    exactly = KLStableUnmask(history=1, threshold=float(conf[0, 0]))  # the steady position's own confidence
    assert run(exactly, 2)[1] == [F, F, F]  # not > itself: nothing ready
    assert run(KLStableUnmask(history=1, threshold=float(conf[0, 0]) - 1e-6), 2)[1] == [T, F, F]
    with pytest.raises(RuntimeError, match="propose"):
        KLStableUnmask().select(fastdllm.Proposal(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3), ALL),
                                Step(LAYOUT, 0, 0))


def test_decodes_with_the_paper_rule_and_its_limits():
    """threshold 1 is never exceeded: the decoder's progress rule alone = one token per forward (every one
    counted as forced), token-identical to the one-token fixed schedule; every position ready after one
    stable forward: two forwards per block, the first one forced."""
    prompts = random_prompts(3, [5, 3, 6], seed=2)
    options = dict(gen_length=12, block_length=4, cache="dual")
    never = fastdllm.generate(mask_free_llada(), prompts, unmask={"name": "kl-stable", "threshold": 1.0}, **options)
    fixed = fastdllm.generate(mask_free_llada(), prompts, unmask="fixed", **options)
    assert torch.equal(never.sequences, fixed.sequences) and never.nfe == 12
    assert never.forced_commits == int(never.nfe_per_row.sum()) == 3 * 12
    eager = {"name": "kl-stable", "threshold": 0.0, "kl_threshold": 1e9, "history": 1}
    fast = fastdllm.generate(mask_free_llada(), prompts, unmask=eager, **options)
    assert fast.nfe == 6 and (fast.nfe_per_row == 6).all()  # step 0: forced; step 1: the rest
    assert fast.forced_commits == 3 * 3  # three rows at each block's first step


def test_the_divergence_is_of_the_new_prediction_from_the_old():
    """KL is asymmetric: a token that gains mass it lacked before costs KL(now || before) 0.015 but
    KL(before || now) only 0.005; with kl_threshold 0.01 the position is not yet stable."""
    before, now = [0.95, 0.0499, 0.0001], [0.95, 0.045, 0.005]

    def rows(t):
        return (before if t == 0 else now), jumpy(t), UNSURE

    assert run(KLStableUnmask(history=1), 2, rows=rows)[1] == [F, F, F]
    assert run(KLStableUnmask(history=1, kl_threshold=0.02), 2, rows=rows)[1] == [T, F, F]
