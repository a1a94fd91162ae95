from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("prefix")
class PrefixCache(CachePolicy):
    """Fast-dLLM prefix cache (§3.1): refresh the whole canvas at each block's first step, then
    recompute the block and the masked suffix ``[block_start, L)`` against the cached prefix.

    With a logit shift (Dream) the position before the block is recomputed too: its hidden state
    predicts the block's first token.
    """

    def plan(self, step: Step) -> Plan:
        if step.index == 0:
            return Plan.full(step)
        return Plan(step.block_start - step.layout.logit_shift, step.layout.canvas_length)
