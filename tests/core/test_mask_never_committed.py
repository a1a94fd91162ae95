"""The mask token is never a candidate: no forward may commit the mask id, whatever the model's raw
logits say. The final mask → pad fill would hide a committed mask token in the returned canvas, so the
check runs at every step, through a callback, on models whose raw logits favour the mask token."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import MASK_ID, random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")

GEN, BLOCK = 12, 4


class MaskLoving:
    """Wraps a tiny LLaDA and adds a large bonus to the mask token's logit, so the raw argmax (and most of the
    sampled mass) is the mask token at every position. Any signature of ``forward_step`` passes through."""

    def __init__(self, model, bonus: float = 50.0) -> None:
        self.model, self.bonus = model, bonus

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_step(self, *args, **kwargs):
        logits = self.model.forward_step(*args, **kwargs).clone()  # [B, block, V]
        logits[..., self.model.mask_token_id] += self.bonus
        return logits


class NoMaskCommitted:
    """Callback: every position committed at this step holds a real token (not the mask id), and every
    position of the block that was not committed keeps what it had."""

    def __init__(self, mask_id: int) -> None:
        self.mask_id, self.steps, self.committed = mask_id, 0, 0
        self.before: torch.Tensor | None = None

    def __call__(self, event) -> None:
        start, end = event.step.block_start, event.step.block_end
        block = event.canvas[:, start:end]  # [B, block]
        committed = block[event.commit]
        assert (committed != self.mask_id).all(), f"step {event.step}: committed the mask token"
        assert (event.proposal.tokens != self.mask_id).all(), "the mask token was proposed as a candidate"
        assert not (event.commit & ~event.proposal.masked).any(), "a committed position was committed again"
        assert ((block == self.mask_id) == (event.proposal.masked & ~event.commit)).all()
        self.steps += 1
        self.committed += int(event.commit.sum())


@pytest.mark.parametrize("unmask", ["threshold", "factor", "fixed", {"name": "fixed", "remasking": "random"}])
@pytest.mark.parametrize("cache", ["none", "dual"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_no_step_commits_the_mask_token(unmask, cache, temperature):
    model = MaskLoving(tiny_llada())
    prompts = random_prompts(3, [5, 8, 3], seed=1)
    check = NoMaskCommitted(MASK_ID)
    result = fastdllm.generate(model, prompts, gen_length=GEN, block_length=BLOCK, cache=cache, unmask=unmask,
                               temperature=temperature, seed=0, callbacks=[check])
    assert check.steps == result.nfe > 0
    assert check.committed == len(prompts) * GEN  # every position committed by a forward, none filled at the end
    assert result.bound_flushes == 0
    assert (result.generated != MASK_ID).all()
    assert (result.commit_forward >= 1).all()


def test_raw_logits_really_favour_the_mask():
    """The wrapper does what the test above relies on: the raw argmax is the mask token everywhere."""
    model = MaskLoving(tiny_llada())
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(model, name)

        def forward_step(self, *args, **kwargs):
            logits = model.forward_step(*args, **kwargs)
            seen.append(logits.argmax(-1))
            return logits.clone()

    fastdllm.generate(Spy(), random_prompts(2, [4, 6]), gen_length=4, block_length=4, cache="none")
    assert seen and all((a == MASK_ID).all() for a in seen)
