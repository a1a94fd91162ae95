"""The unmask rules at their exact boundaries, on hand-made proposals (confidences exact in float32)."""

from __future__ import annotations

import torch

import fastdllm

LAYOUT = fastdllm.Layout(prompt_length=2, gen_length=4, block_length=4, logit_shift=0)
STEP = fastdllm.Step(LAYOUT, block=0, index=0)


def proposal(confidences: list[float]) -> fastdllm.Proposal:
    conf = torch.tensor([confidences])  # [1, block] float32
    return fastdllm.Proposal(tokens=torch.zeros_like(conf, dtype=torch.long), confidence=conf,
                             masked=torch.ones_like(conf, dtype=torch.bool))


def test_factor_rule_is_strict():
    """(n + 1)(1 - c(n)) < f: with c = (0.9, 0.75, ...) and f = 0.75, n = 2 gives exactly 3 * 0.25 = 0.75,
    which is not below f, so only the first position commits; any f above 0.75 commits both."""
    factor = fastdllm.unmask_policies.get("factor")
    p = proposal([0.75, 0.9, 0.1, 0.2])
    assert factor(factor=0.75).select(p, STEP).tolist() == [[False, True, False, False]]
    assert factor(factor=0.7501).select(p, STEP).tolist() == [[True, True, False, False]]


def test_threshold_rule_is_inclusive():
    threshold = fastdllm.unmask_policies.get("threshold")
    p = proposal([0.75, 0.5, 0.25, 0.125])
    assert threshold(threshold=0.5).select(p, STEP).tolist() == [[True, True, False, False]]


def test_fixed_with_one_step_commits_the_block_at_once():
    result = fastdllm.generate(_Confident(), [[1, 2]], gen_length=4, block_length=4, cache="none",
                               unmask={"name": "fixed", "steps": 1})
    assert result.nfe == 1 and result.generated.tolist() == [[3, 3, 3, 3]]


class _Confident:
    logit_shift, max_sequence_length, device = 0, 16, torch.device("cpu")
    mask_token_id, pad_token_id, end_token_ids = 4, 5, (5,)

    def forward_step(self, canvas, *args, **kwargs):
        logits = torch.zeros(canvas.shape[0], 4, 6)  # [B, block, V]
        logits[..., 3] = 5.0
        return logits
