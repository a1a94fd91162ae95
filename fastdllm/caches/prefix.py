from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("prefix")
class PrefixCache(CachePolicy):
    """Fast-dLLM prefix cache (§3.1): refresh the whole canvas at each block's first step, then
    recompute the block and the masked suffix against the cached prefix."""

    def plan(self, step: Step) -> Plan:
        return Plan.full(step) if step.index == 0 else Plan.from_block_to_end(step)
