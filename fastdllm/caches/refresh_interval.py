from __future__ import annotations

from typing import Literal

from pydantic import Field

from fastdllm.caches.dual import DualCache
from fastdllm.caches.prefix import PrefixCache
from fastdllm.core.policy import CachePolicy, PolicyConfig, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("refresh-interval")
class RefreshIntervalCache(CachePolicy):
    """Prefix or dual reuse, plus a full refresh every ``interval`` steps inside a block (and at its
    first step). ``interval=1`` refreshes at every step and decodes exactly what ``none`` decodes."""

    class Config(PolicyConfig):
        interval: int = Field(4, ge=1, description="refresh every N steps inside a block")
        reuse: Literal["prefix", "dual"] = "dual"

    def __init__(self, config=None, **fields) -> None:
        super().__init__(config, **fields)
        self._reuse = PrefixCache() if self.config.reuse == "prefix" else DualCache()

    def plan(self, step: Step) -> Plan:
        if step.index % self.config.interval == 0:
            return Plan.full(step)
        return self._reuse.plan(step)
