from __future__ import annotations

import torch
from pydantic import Field

from fastdllm.core.policy import UnmaskPolicy, unmask_policies
from fastdllm.core.proposal import Proposal
from fastdllm.core.step import Step


def step_kl(logp_now: torch.Tensor, logp_before: torch.Tensor) -> torch.Tensor:
    """``KL(p_now || p_before)`` per position from log-probabilities ``[..., V] -> [...]``; tokens impossible in
    both (the mask token, logit -inf) contribute 0."""
    floor = torch.finfo(logp_now.dtype).min
    return (logp_now.exp() * (logp_now.clamp_min(floor) - logp_before.clamp_min(floor))).sum(-1)


@unmask_policies.register("kl-stable")
class KLStableUnmask(UnmaskPolicy):
    """KLASS, KL-Adaptive Stability Sampling (Kim et al., "KLASS: KL-Guided Fast Inference in Masked
    Diffusion Models", NeurIPS 2025, arXiv 2511.05664): a masked position is *stable* when the KL
    divergence between its predicted distributions at consecutive forwards, ``KL(p_t || p_{t-1})``, stayed
    below ``kl_threshold`` for the last ``history`` forwards; every stable position whose confidence
    exceeds ``threshold`` is committed together. When none is ready the policy selects nothing and the
    decoder's progress rule commits the row's most confident masked position (the paper falls back to its
    top-k schedule; here k = 1), counted in ``forced_commits``: how often no position was ready.

    Difference from the paper's code: the history is kept per block (the decoder only computes the
    current block's logits), so a position can first be stable at the block's step ``history``.
    State: the previous forward's log-probabilities ``[B, block, V]`` and a run length ``[B, block]``,
    reset at each block's first step; one instance serves one decode at a time.
    """

    class Config(UnmaskPolicy.Config):
        threshold: float = Field(0.9, ge=0.0, le=1.0, description="commit if confidence > threshold and stable")
        kl_threshold: float = Field(0.01, gt=0.0, description="stable if KL(p_t || p_t-1) < kl_threshold ...")
        history: int = Field(2, ge=1, description="... for this many consecutive forwards")

    def __init__(self, config=None, **fields) -> None:
        super().__init__(config, **fields)
        self._previous: torch.Tensor | None = None  # [B, block, V] log-probabilities of the last forward
        self._stable_run: torch.Tensor | None = None  # [B, block] long: consecutive forwards with small KL
        self.stable: torch.Tensor | None = None  # [B, block] bool: stable at the last propose (for select)

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step: Step) -> Proposal:
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, block, V]
        if step.index == 0 or self._previous is None or self._previous.shape != logp.shape:
            self._stable_run = torch.zeros(logp.shape[:-1], dtype=torch.long, device=logp.device)  # [B, block]
        else:
            small = step_kl(logp, self._previous) < self.config.kl_threshold  # [B, block]
            self._stable_run = torch.where(small, self._stable_run + 1, 0)
        self._previous = logp
        self.stable = self._stable_run >= self.config.history
        return super().propose(logits, masked, step)

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:  # [B, block] bool
        if self.stable is None or self.stable.shape != proposal.masked.shape:
            raise RuntimeError("kl-stable: select() needs this policy's propose() for the same block first")
        return self.stable & (proposal.confidence > self.config.threshold)  # [B, block]; may be empty
