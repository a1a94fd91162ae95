from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from fastdllm.core.policy import UnmaskPolicy, unmask_policies
from fastdllm.core.proposal import Proposal, gumbel_noise
from fastdllm.core.step import Step


@unmask_policies.register("fixed")
class FixedUnmask(UnmaskPolicy):
    """LLaDA's baseline: ``steps`` forwards in total, spread evenly over the blocks; at step t of a
    block commit k_t tokens (the linear schedule: block_length / steps_per_block, the remainder to
    the first steps), the most confident first (``low_confidence``) or at random (``random``).
    ``steps=None`` means steps = gen_length: one token per forward.

    ``alg_temp > 0`` (Dream's generation option) samples the commit order instead: the k positions are
    drawn without replacement from softmax(confidence / alg_temp) over the masked positions (Dream's
    ``multinomial``; here as Gumbel-top-k, the same distribution, vectorised over rows)."""

    class Config(UnmaskPolicy.Config):
        steps: int | None = Field(None, gt=0, description="forwards in total; default gen_length")
        remasking: Literal["low_confidence", "random"] = "low_confidence"
        alg_temp: float = Field(0.0, ge=0.0, description="> 0: draw positions from softmax(confidence / alg_temp)")

        @model_validator(mode="after")
        def _alg_temp_needs_confidence(self):
            if self.alg_temp > 0 and self.remasking == "random":
                raise ValueError("alg_temp samples positions by confidence; it does not apply to "
                                 "remasking='random' (use remasking='low_confidence' or alg_temp=0)")
            return self

    def steps_per_block(self, step: Step) -> int:
        steps = self.config.steps or step.layout.gen_length
        return steps // step.layout.num_blocks

    def check(self, step: Step) -> None:
        steps, layout = self.config.steps or step.layout.gen_length, step.layout
        if steps % layout.num_blocks or steps > layout.gen_length:
            raise ValueError(
                f"fixed: steps={steps} must be a multiple of the number of blocks ({layout.num_blocks} = "
                f"gen_length {layout.gen_length} / block_length {layout.block_length}) and at most "
                f"gen_length; e.g. steps={layout.num_blocks * max(1, min(steps, layout.gen_length) // layout.num_blocks)}")

    def tokens_at(self, step: Step) -> int:
        per_block = self.steps_per_block(step)
        base, extra = divmod(step.layout.block_length, per_block)
        return base + (step.index < extra)

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:  # [B, block] bool
        score = proposal.confidence
        if self.config.remasking == "random":
            score = torch.rand(score.shape, generator=step.generator, device=score.device)  # [B, block]
        score = score.masked_fill(~proposal.masked, float("-inf"))
        if self.config.alg_temp > 0:  # Gumbel-top-k: k draws without replacement from softmax(score / alg_temp)
            score = score.double() / self.config.alg_temp + gumbel_noise(score.shape, step.generator, score.device)
        k = min(self.tokens_at(step), score.shape[-1])
        top = score.topk(k, dim=-1).indices  # [B, k]
        return torch.zeros_like(proposal.masked).scatter_(-1, top, True) & proposal.masked
