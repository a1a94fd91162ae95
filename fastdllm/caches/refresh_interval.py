from __future__ import annotations

from typing import Literal

from pydantic import Field

from fastdllm.core.policy import CachePolicy, PolicyConfig, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("refresh-interval")
class RefreshIntervalCache(CachePolicy):
    """Prefix or dual reuse, plus a full refresh every ``interval`` steps inside a block (and at its
    first step). ``interval=1`` refreshes at every step and decodes exactly what ``none`` decodes."""

    class Config(PolicyConfig):
        interval: int = Field(4, ge=1, description="refresh every N steps inside a block")
        reuse: Literal["prefix", "dual"] = "dual"

    def plan(self, step: Step) -> Plan:
        if step.index % self.config.interval == 0:
            return Plan.full(step)
        return Plan.from_block_to_end(step) if self.config.reuse == "prefix" else Plan.block(step)
