"""Model adapters: one file per family, all over the same native network."""

from fastdllm.models.base import DiffusionLM, model_adapters
from fastdllm.models.checkpoint import load_model, save_checkpoint
from fastdllm.models.dream import Dream, dream_config
from fastdllm.models.llada import LLaDA, llada_config

__all__ = ["DiffusionLM", "LLaDA", "llada_config", "Dream", "dream_config", "model_adapters", "load_model",
           "save_checkpoint"]
