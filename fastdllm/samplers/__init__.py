"""Unmask policies: which still-masked positions of the block to commit. One policy per file."""

from fastdllm.samplers.entropy_bounded import EntropyBoundedUnmask
from fastdllm.samplers.factor import FactorUnmask
from fastdllm.samplers.fixed import FixedUnmask
from fastdllm.samplers.kl_stable import KLStableUnmask
from fastdllm.samplers.threshold import ThresholdUnmask

__all__ = ["FixedUnmask", "ThresholdUnmask", "FactorUnmask", "EntropyBoundedUnmask", "KLStableUnmask"]
