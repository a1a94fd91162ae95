from __future__ import annotations

import torch
from pydantic import Field

from fastdllm.core.policy import UnmaskPolicy, unmask_policies
from fastdllm.core.proposal import Proposal
from fastdllm.core.step import Step


@unmask_policies.register("factor")
class FactorUnmask(UnmaskPolicy):
    """Fast-dLLM factor rule (§3.2): sort the masked confidences c(1) >= c(2) >= ... and commit the
    largest n with (n + 1)(1 - c(n)) < factor (at least one: the decoder's progress rule)."""

    class Config(UnmaskPolicy.Config):
        factor: float = Field(1.0, gt=0.0, description="f in (n + 1)(1 - c(n)) < f")

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:  # [B, block] bool
        sorted_conf, order = proposal.masked_confidence().sort(dim=-1, descending=True)  # [B, block]
        n = torch.arange(1, sorted_conf.shape[-1] + 1, device=sorted_conf.device)  # [block]
        ok = (n + 1) * (1 - sorted_conf) < self.config.factor  # [B, block]; -inf confidence fails
        count = ok.long().cumprod(dim=-1).sum(dim=-1, keepdim=True)  # [B, 1]: the largest such n
        rank = torch.empty_like(order).scatter_(-1, order, n.expand_as(order) - 1)  # [B, block]
        return rank < count
