from __future__ import annotations

from fastdllm.core.policy import CachePolicy, cache_policies
from fastdllm.core.step import Plan, Step


@cache_policies.register("none")
class NoCache(CachePolicy):
    """The baseline: every forward recomputes the whole canvas; no KV store at all."""

    uses_store = False

    def plan(self, step: Step) -> Plan:
        return Plan.full(step)
