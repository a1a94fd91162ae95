"""Unmask policies: which still-masked positions of the block to commit. One policy per file."""

from fastdllm.samplers.factor import FactorUnmask
from fastdllm.samplers.fixed import FixedUnmask
from fastdllm.samplers.threshold import ThresholdUnmask

__all__ = ["FixedUnmask", "ThresholdUnmask", "FactorUnmask"]
