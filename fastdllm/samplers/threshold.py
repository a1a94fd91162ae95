from __future__ import annotations

import torch
from pydantic import Field

from fastdllm.core.policy import UnmaskPolicy, unmask_policies
from fastdllm.core.proposal import Proposal
from fastdllm.core.step import Step


@unmask_policies.register("threshold")
class ThresholdUnmask(UnmaskPolicy):
    """Fast-dLLM threshold rule (§3.2, Theorem 1): commit every masked position whose confidence is
    at least ``threshold``, and always the most confident one (the decoder's progress rule)."""

    class Config(UnmaskPolicy.Config):
        threshold: float = Field(0.9, gt=0.0, le=1.0, description="commit if confidence >= threshold")

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:  # [B, block] bool
        return proposal.confidence >= self.config.threshold
