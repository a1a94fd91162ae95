"""Confidence measures for unmask policies. One measure per file; register with
``@confidence_measures.register("name")``."""

from fastdllm.confidences.margin import MarginConfidence
from fastdllm.confidences.neg_entropy import NegEntropyConfidence
from fastdllm.confidences.prob import ProbConfidence

__all__ = ["ProbConfidence", "MarginConfidence", "NegEntropyConfidence"]
