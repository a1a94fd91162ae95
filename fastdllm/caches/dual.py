from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("dual")
class DualCache(CachePolicy):
    """Fast-dLLM dual cache (§3.1): refresh at each block's first step, then recompute only the
    block; prefix *and* masked suffix keys/values come from the store.

    With a logit shift (Dream) the position before the block is recomputed too.
    """

    def plan(self, step: Step) -> Plan:
        if step.index == 0:
            return Plan.full(step)
        return Plan(step.block_start - step.layout.logit_shift, step.block_end)
