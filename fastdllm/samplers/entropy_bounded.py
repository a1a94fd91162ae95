from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from pydantic import Field

from fastdllm.core.policy import UnmaskPolicy, unmask_policies
from fastdllm.core.proposal import Proposal
from fastdllm.core.step import Step


@dataclass(frozen=True)
class EntropyProposal(Proposal):
    entropy: torch.Tensor | None = None  # [B, block] float32: H(p) in nats of the untempered distribution


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of ``softmax(logits)`` over the last axis, ``[..., V] -> [...]``.
    Tokens with a -inf logit (the mask token) contribute 0, not NaN."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # [..., V]
    return -(logp.exp() * logp.clamp_min(torch.finfo(logp.dtype).min)).sum(-1)


@unmask_policies.register("entropy-bounded")
class EntropyBoundedUnmask(UnmaskPolicy):
    """EB-sampler (Ben-Hamu et al., "Accelerated Sampling from Masked Diffusion Models via Entropy
    Bounded Unmasking", arXiv 2505.24857): order the masked positions by an error proxy (here the
    ``confidence`` measure, most confident first) and commit the longest prefix U of that order with
    ``sum_{i in U} H(p_i) - max_{i in U} H(p_i) <= gamma`` (H in nats). The first position always
    qualifies (its sum minus max is 0), so every active row commits at least one; ``gamma = 0`` commits
    the zero-entropy head of the order and one more position, a larger ``gamma`` more in parallel.

    The bound is the paper's: the entropy of the positions committed together, less the largest one,
    is a proxy for the joint dependence error the step ignores.
    """

    class Config(UnmaskPolicy.Config):
        gamma: float = Field(0.1, ge=0.0, description="bound on sum(H) - max(H) of the committed set (nats)")

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step: Step) -> Proposal:
        base = super().propose(logits, masked, step)
        entropy = token_entropy(logits)  # [B, block]
        return EntropyProposal(**{f.name: getattr(base, f.name) for f in fields(Proposal)}, entropy=entropy)

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:  # [B, block] bool
        entropy = getattr(proposal, "entropy", None)
        if entropy is None:
            raise TypeError("entropy-bounded needs the EntropyProposal its own propose() returns; "
                            "call policy.propose(logits, masked, step) first")
        order = proposal.masked_confidence().argsort(dim=-1, descending=True, stable=True)  # [B, block]
        live = proposal.masked.gather(-1, order)  # [B, block]: masked positions first
        h = entropy.gather(-1, order).masked_fill(~live, 0.0)  # [B, block], in commit order
        spent = h.cumsum(-1) - h.cummax(-1).values  # [B, block]: sum - max of each prefix (nondecreasing)
        ok = (spent <= self.config.gamma) & live  # [B, block]
        count = ok.long().cumprod(-1).sum(-1, keepdim=True)  # [B, 1]: longest qualifying prefix
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                                .expand_as(order))  # [B, block]: position -> place in order
        return rank < count  # never empty in a row with masks: the first position always qualifies
