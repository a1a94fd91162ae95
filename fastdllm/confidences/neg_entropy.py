from __future__ import annotations

import torch

from fastdllm.core.proposal import ConfidenceMeasure, confidence_measures


@confidence_measures.register("neg_entropy")
class NegEntropyConfidence(ConfidenceMeasure):
    """exp(sum p log p) = exp(-H(p)) of p = softmax(logits): the negative entropy (Dream's entropy
    algorithm) mapped into (0, 1], 1 for a one-hot p, so that the same thresholds apply."""

    @staticmethod
    def score(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=-1)  # [B, block, V]
        return (probs * torch.log(probs.clamp_min(1e-30))).sum(-1).exp()  # [B, block] in (0, 1]
