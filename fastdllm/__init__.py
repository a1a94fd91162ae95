"""fastdllm: fast inference for masked diffusion language models (Fast-dLLM, arXiv 2505.22618)."""

from fastdllm import caches, confidences, samplers  # noqa: F401  (registers the built-in policies and measures)
from fastdllm.core.config import DecodeConfig
from fastdllm.core.decoder import DiffusionDecoder, StepEvent, generate
from fastdllm.core.policy import (CachePolicy, ConfigError, PolicyConfig, UnmaskPolicy, at_least_one,
                                  cache_policies, unmask_policies)
from fastdllm.core.proposal import ConfidenceMeasure, Proposal, confidence_measures
from fastdllm.core.registry import Registry, RegistrationError, UnknownNameError
from fastdllm.plugins import load_plugins
from fastdllm.core.result import GenerationResult
from fastdllm.core.step import Layout, Observation, Plan, Step
from fastdllm.models import DiffusionLM, Dream, LLaDA, llada_config, load_model, model_adapters, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "generate", "DiffusionDecoder", "DecodeConfig", "GenerationResult", "StepEvent",
    "CachePolicy", "UnmaskPolicy", "PolicyConfig", "Proposal", "Step", "Plan", "Layout", "Observation", "at_least_one",
    "cache_policies", "unmask_policies", "model_adapters", "ConfigError", "UnknownNameError",
    "ConfidenceMeasure", "confidence_measures", "Registry", "RegistrationError", "load_plugins",
    "DiffusionLM", "LLaDA", "llada_config", "Dream", "load_model", "save_checkpoint",
]
