from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("prompt-reuse")
class PromptReuseCache(CachePolicy):
    """Dual cache whose later refreshes skip the prompt: the decode's first forward refreshes the whole
    canvas; every later block's first step recomputes only the generated region ``[P, L)`` and keeps the
    prompt's keys/values from that first forward; the other steps recompute the block (as ``dual``).

    The approximation beyond Fast-dLLM's dual cache (§3.1): in a bidirectional model the prompt's keys/values
    in layers after the first depend on the generated tokens too, so they stay as they were with an all-mask
    answer. The saving is the prompt's share of each block-start refresh, which dominates long prompts,
    high parallelism (few forwards per block) and large batches.
    """

    def plan(self, step: Step) -> Plan:
        if step.index > 0:
            return Plan.block(step)
        return Plan.full(step) if step.block == 0 else Plan.generated(step)
