"""Candidate tokens and their confidence for the positions of one block (shared by all unmask policies)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Proposal:
    tokens: torch.Tensor  # [B, block] long: candidate token at each block position
    confidence: torch.Tensor  # [B, block] float32: higher = more certain
    masked: torch.Tensor  # [B, block] bool: still masked (the only positions that may be committed)

    def masked_confidence(self) -> torch.Tensor:
        """Confidence with committed positions at -inf, ``[B, block]``."""
        return self.confidence.masked_fill(~self.masked, float("-inf"))


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise in float64 (LLaDA notes low-precision Gumbel noise hurts quality)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp_min(1e-300)))


def propose(
    logits: torch.Tensor,
    masked: torch.Tensor,
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    confidence: str = "prob",
) -> Proposal:
    """Tokens: argmax at temperature 0, else exact Gumbel-max sampling from ``softmax(logits / T)``.

    Confidence (as in LLaDA and Fast-dLLM, from the untempered distribution ``p = softmax(logits)``):
    ``prob`` = p[token]; ``margin`` = p[top1] - p[top2]; ``neg_entropy`` = exp(sum p log p) = exp(-H(p)),
    the negative entropy mapped into (0, 1] (1 for a one-hot ``p``) so that the same thresholds apply.
    """
    logits = logits.float()  # [B, block, V]
    if temperature > 0:
        noisy = logits.double() / temperature + gumbel_noise(logits.shape, generator, logits.device)
        tokens = noisy.argmax(dim=-1)  # [B, block]
    else:
        tokens = logits.argmax(dim=-1)  # [B, block]
    if confidence == "prob":  # p[token] = exp(logit[token] - logsumexp(logits)): no [B, block, V] softmax
        score = (logits.gather(-1, tokens.unsqueeze(-1)) - logits.logsumexp(-1, keepdim=True)).exp().squeeze(-1)
        return Proposal(tokens=tokens, confidence=score, masked=masked)
    probs = torch.softmax(logits, dim=-1)  # [B, block, V]
    if confidence == "margin":
        top2 = probs.topk(2, dim=-1).values  # [B, block, 2]
        score = top2[..., 0] - top2[..., 1]
    elif confidence == "neg_entropy":
        score = (probs * torch.log(probs.clamp_min(1e-30))).sum(-1).exp()  # [B, block] in (0, 1]
    else:
        raise ValueError(f"unknown confidence {confidence!r}; use 'prob', 'margin' or 'neg_entropy'")
    return Proposal(tokens=tokens, confidence=score, masked=masked)
