"""Cache policies: which canvas positions each forward recomputes. One policy per file."""

from fastdllm.caches.drift import DriftCache
from fastdllm.caches.dual import DualCache
from fastdllm.caches.no_cache import NoCache
from fastdllm.caches.prefix import PrefixCache
from fastdllm.caches.prompt_reuse import PromptReuseCache
from fastdllm.caches.refresh_interval import RefreshIntervalCache

__all__ = ["NoCache", "PrefixCache", "DualCache", "RefreshIntervalCache", "PromptReuseCache", "DriftCache"]
