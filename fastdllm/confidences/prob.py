from __future__ import annotations

import torch

from fastdllm.core.proposal import ConfidenceMeasure, confidence_measures


@confidence_measures.register("prob")
class ProbConfidence(ConfidenceMeasure):
    """p[token] = softmax(logits)[token], the candidate's own probability (LLaDA's low_confidence
    remasking, Fast-dLLM §3.2)."""

    @staticmethod
    def score(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # exp(logit[token] - logsumexp(logits)): no [B, block, V] softmax
        return (logits.gather(-1, tokens.unsqueeze(-1)) - logits.logsumexp(-1, keepdim=True)).exp().squeeze(-1)
