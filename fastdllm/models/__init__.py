"""Model adapters: one file per family, all over the same native network."""

from fastdllm.models.base import DiffusionLM, model_adapters
from fastdllm.models.llada import LLaDA, llada_config

__all__ = ["DiffusionLM", "LLaDA", "llada_config", "model_adapters"]
