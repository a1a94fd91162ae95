from __future__ import annotations

import torch
from pydantic import Field

from fastdllm.core.policy import CachePolicy, PolicyConfig, cache_policies
from fastdllm.core.step import Layout, Observation, Plan, Step


@cache_policies.register("drift")
class DriftCache(CachePolicy):
    """Dual cache plus a full refresh whenever the keys/values the last forward recomputed had moved by at
    least ``tolerance`` from what the store held, in the spirit of Elastic-Cache (Nguyen-Tri, Ranjan and
    Shen, "Attention Is All You Need for KV Cache in Diffusion LLMs", arXiv 2510.14973), which refreshes
    when the cached state of the most-attended token drifts instead of on a fixed schedule.

    The drift of a forward is the largest, over layers and batch rows, relative change
    ``||new - old|| / ||old||`` of its recomputed keys or values (measured in ``KVStore.update``); the
    decode's first forward has none and counts as 0. Each block's first step refreshes as ``dual`` does.
    ``tolerance = 0`` refreshes at every forward (decodes what ``none`` decodes); a tolerance above any
    drift never adds a refresh (decodes what ``dual`` decodes). Costs one host sync per forward (reading
    the drift) and the read of the overwritten keys/values.
    """

    wants_drift = True

    class Config(PolicyConfig):
        tolerance: float = Field(0.5, ge=0.0, description="refresh after a forward whose K/V drift reached this")

    def __init__(self, config=None, **fields) -> None:
        super().__init__(config, **fields)
        self.begin(None)

    def begin(self, layout: Layout | None) -> None:
        self.last_drift = 0.0  # drift of the last forward (host float)
        self.drifts: list[float] = []  # every forward's drift in this decode, for inspection and plots

    def plan(self, step: Step) -> Plan:
        if step.index == 0 or self.last_drift >= self.config.tolerance:
            return Plan.full(step)
        return Plan.block(step)

    def observe(self, observation: Observation) -> None:
        if observation.key_drift is None:
            drift = 0.0
        else:  # [n_layers, B] each; the one host sync of this policy
            drift = float(torch.maximum(observation.key_drift, observation.value_drift).amax())
        self.last_drift = drift
        self.drifts.append(drift)
