"""drift: dual cache plus a full refresh after any forward whose recomputed K/V drift reached the tolerance."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import mask_free_llada, random_prompts
from fastdllm.caches import DriftCache
from fastdllm.core.step import Layout, Observation, Plan, Step

pytestmark = pytest.mark.usefixtures("single_thread")

LAYOUT = Layout(prompt_length=5, gen_length=8, block_length=4, logit_shift=0)
FULL, BLOCK0, BLOCK1 = Plan(0, 13, refresh=True), Plan(5, 9), Plan(9, 13)


def observation(step, plan, key=None, value=None):
    """An observation with hand-made drift ``[n_layers=2, B=2]`` (``key``/``value`` put at one layer/row)."""
    kd = vd = None
    if key is not None:
        kd, vd = torch.zeros(2, 2), torch.zeros(2, 2)
        kd[1, 0], vd[0, 1] = key, value
    commit = torch.zeros(2, 4, dtype=torch.bool)
    return Observation(step, plan, None, commit, kd, vd)


def test_crafted_drift_sequence():
    policy = DriftCache(tolerance=0.5)
    policy.begin(LAYOUT)
    # (block, index), the plan expected before the forward, then the key and value drift fed after it
    script = [((0, 0), FULL, None, None),  # first forward: a refresh, no drift measured (counts as 0)
              ((0, 1), BLOCK0, 0.3, 0.1),  # below: dual step next
              ((0, 2), BLOCK0, 0.2, 0.6),  # the values moved: refresh next
              ((0, 3), FULL, 0.7, 0.0),  # refresh next, but that is a block start anyway
              ((1, 0), FULL, 0.1, 0.1),  # a block start refreshes whatever the drift; 0.1 is below
              ((1, 1), BLOCK1, 0.5, 0.0),  # exactly the tolerance counts: refresh next
              ((1, 2), FULL, 0.0, 0.0),
              ((1, 3), BLOCK1, None, None)]
    for (block, index), expected, key, value in script:
        step = Step(LAYOUT, block, index)
        plan = policy.plan(step)
        assert plan == expected, f"block {block} step {index}"
        policy.observe(observation(step, plan, key, value))
    assert policy.drifts == pytest.approx([0.0, 0.3, 0.6, 0.7, 0.1, 0.5, 0.0, 0.0])


def test_begin_forgets_the_last_decode():
    policy = DriftCache(tolerance=0.5)
    policy.begin(LAYOUT)
    policy.observe(observation(Step(LAYOUT, 1, 3), BLOCK1, 0.9, 0.9))
    assert policy.plan(Step(LAYOUT, 0, 1)) == FULL
    policy.begin(LAYOUT)  # a new decode: its second forward is a dual step again
    assert policy.plan(Step(LAYOUT, 0, 1)) == BLOCK0 and policy.drifts == []


PROMPTS = random_prompts(3, [7, 4, 5], seed=1)
OPTIONS = dict(gen_length=12, block_length=4, unmask={"name": "threshold", "threshold": 0.3})


def decode(cache, **kw):
    return fastdllm.generate(mask_free_llada(), PROMPTS, cache=cache, **OPTIONS, **kw)


def same_decode(a, b):
    return (torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_forward, b.commit_forward)
            and a.nfe == b.nfe)


def test_real_decode_limits():
    """Tolerance 0: every forward refreshes, exactly `none`'s decode; a tolerance no drift reaches: exactly
    `dual`'s; in between, a refresh exactly after the forwards whose measured drift reached the tolerance."""
    none, dual = decode("none"), decode("dual")
    probe = DriftCache(tolerance=0.0)
    always = decode(probe)
    assert same_decode(always, none) and always.refresh_forwards == always.nfe
    never = decode({"name": "drift", "tolerance": 1e9})
    assert same_decode(never, dual) and never.refresh_forwards == dual.refresh_forwards == 3
    middle = sorted(probe.drifts[1:])[len(probe.drifts) // 2]  # the median drift of a real decode
    policy, seen = DriftCache(tolerance=middle), []
    some = decode(policy, callbacks=[lambda e: seen.append((e.step.index, e.plan.refresh))])
    assert 3 < some.refresh_forwards < some.nfe == len(seen) == len(policy.drifts)
    for j, (index, refresh) in enumerate(seen):
        assert refresh == (index == 0 or policy.drifts[j - 1] >= middle), f"forward {j}"
