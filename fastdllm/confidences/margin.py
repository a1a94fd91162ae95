from __future__ import annotations

import torch

from fastdllm.core.proposal import ConfidenceMeasure, confidence_measures


@confidence_measures.register("margin")
class MarginConfidence(ConfidenceMeasure):
    """p[top1] - p[top2] of softmax(logits) (Dream's topk_margin)."""

    @staticmethod
    def score(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        top2 = torch.softmax(logits, dim=-1).topk(2, dim=-1).values  # [B, block, 2]
        return top2[..., 0] - top2[..., 1]
