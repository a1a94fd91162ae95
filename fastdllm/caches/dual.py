from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("dual")
class DualCache(CachePolicy):
    """Fast-dLLM dual cache (§3.1): refresh at each block's first step, then recompute only the
    block; prefix *and* masked suffix keys/values come from the store."""

    def plan(self, step: Step) -> Plan:
        return Plan.full(step) if step.index == 0 else Plan.block(step)
