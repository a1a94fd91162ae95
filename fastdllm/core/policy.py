"""Base classes of the two strategy kinds: what to recompute (cache) and what to commit (unmask).

A policy is configured by a frozen pydantic ``Config`` (unknown keys rejected, values
range-checked); the config *is* the constructor (as diffusers schedulers): ``DualCache()``,
``ThresholdUnmask(threshold=0.8)`` and ``ThresholdUnmask(ThresholdUnmask.Config(threshold=0.8))``
are the same policy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fastdllm.core.proposal import Proposal, confidence_measures, propose
from fastdllm.core.registry import Registry, UnknownNameError
from fastdllm.core.step import Layout, Observation, Plan, Step


class PolicyConfig(BaseModel):
    """Base of every policy config: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(ValueError):
    """A policy or run config with a bad or unknown field; the message names it and the fix."""


def build_config(config_cls: type[PolicyConfig], owner: str, values: dict[str, Any]) -> PolicyConfig:
    """Validate ``values`` into ``config_cls`` with an error that names the field and the fix."""
    try:
        return config_cls(**values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "(config)"
            got = e.get("input")
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown field {field!r}")
            else:
                problems.append(f"{field}={got!r}: {e['msg'].removeprefix('Value error, ').rstrip('.')}")
        valid = ", ".join(config_cls.model_fields) or "(none)"
        raise ConfigError(f"{owner}: {'; '.join(problems)}. Valid fields: {valid}.") from None


class Policy:
    """Shared constructor: ``Policy(config=None, **fields)``."""

    name: ClassVar[str] = "unregistered"
    Config: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a subclass is not its registered parent (its spec must not say so)
            cls.name = "unregistered"
        if "Config" not in cls.__dict__:  # a config class of its own, so a config names exactly one policy
            cls.Config = type("Config", (cls.Config,), {"__module__": cls.__module__,
                                                        "__qualname__": f"{cls.__qualname__}.Config"})

    def __init__(self, config: PolicyConfig | None = None, **fields: Any) -> None:
        owner = f"{type(self).__name__} ({self.name!r})"
        if config is None:
            config = build_config(self.Config, owner, fields)
        elif not isinstance(config, self.Config):
            raise ConfigError(f"{owner} takes a {self.Config.__qualname__}, got {type(config).__qualname__}")
        elif fields:
            config = build_config(self.Config, owner, {**config.model_dump(), **fields})
        self.config = config

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **fields}``: what configs, the CLI and W&B record."""
        return {"name": self.name, **self.config.model_dump()}

    def check(self, step: Step) -> None:
        """Raise ``ValueError`` if this policy cannot run on the layout of ``step`` (before any forward)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({fields})"


class CachePolicy(Policy):
    """Decides which canvas positions each forward recomputes (Fast-dLLM §3.1).

    Everything not recomputed is read from the KV store, stale or not: that is the approximation.
    Per decode the decoder calls ``begin(layout)`` once, then for every forward ``plan(step)`` and,
    after the commit, ``observe(observation)``. ``uses_store = False`` means no store at all (every
    forward is a full refresh); ``wants_drift = True`` asks the store to measure, per layer, how far
    the recomputed keys/values moved (``Observation.key_drift``/``value_drift``).
    """

    Config: ClassVar[type[PolicyConfig]] = PolicyConfig  # a cache policy's Config derives from PolicyConfig
    uses_store: ClassVar[bool] = True
    wants_drift: ClassVar[bool] = False

    def begin(self, layout: Layout) -> None:
        """A decode starts on ``layout``: reset any state kept across its forwards."""

    def plan(self, step: Step) -> Plan:
        raise NotImplementedError

    def observe(self, observation: Observation) -> None:
        """What the forward just planned saw (device tensors; reading them on the host is a sync)."""


class UnmaskPolicy(Policy):
    """Decides which still-masked positions of the block to commit at each step (Fast-dLLM §3.2).

    Contract of ``select``: return a bool ``[B, block_length]`` tensor; the decoder keeps only its
    still-masked positions and, in a row that chose none, commits the most confident one (progress is
    enforced there, in one place, and counted in ``forced_commits``). No host syncs, no Python loops
    over rows. ``Config`` must derive from ``UnmaskPolicy.Config`` (checked at registration).
    """

    class Config(PolicyConfig):
        confidence: str = Field("prob", description="a registered confidence measure (fastdllm ls)")

        @field_validator("confidence")
        @classmethod
        def _registered(cls, name: str) -> str:
            try:
                confidence_measures.get(name)
            except UnknownNameError as err:
                raise ValueError(str(err)) from None
            return name

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step: Step) -> Proposal:
        """Candidate tokens and confidences for the block; override for other scores."""
        return propose(
            logits, masked, temperature=step.temperature, generator=step.generator,
            confidence=self.config.confidence,  # type: ignore[attr-defined]
            top_k=step.top_k, top_p=step.top_p,
        )

    def select(self, proposal: Proposal, step: Step) -> torch.Tensor:
        raise NotImplementedError


cache_policies: Registry[CachePolicy] = Registry("cache policy", base=CachePolicy)
unmask_policies: Registry[UnmaskPolicy] = Registry("unmask policy", base=UnmaskPolicy)


def at_least_one(commit: torch.Tensor, proposal: Proposal) -> torch.Tensor:
    """The decoder's progress rule: ``commit`` restricted to masked positions, plus each active row's most
    confident masked position when the row would otherwise commit nothing. ``[B, block]`` bool, no sync."""
    commit = commit & proposal.masked
    best = proposal.masked_confidence().argmax(dim=-1, keepdim=True)  # [B, 1]
    top = torch.zeros_like(commit).scatter_(-1, best, True) & proposal.masked
    stalled = ~commit.any(dim=-1, keepdim=True)  # [B, 1]
    return commit | (top & stalled)


def resolve_policy(registry: Registry, base: type[Policy], spec: Any) -> Policy:
    """A policy from a registered name, a ``{"name": ..., **fields}`` dict, a config or an instance."""
    if isinstance(spec, base):
        return spec
    if isinstance(spec, str):
        return registry.get(spec)()
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ConfigError(f"a {registry.kind} spec dict needs a 'name' key, got {spec!r}")
        fields = {k: v for k, v in spec.items() if k != "name"}
        return registry.get(spec["name"])(**fields)
    if isinstance(spec, PolicyConfig):
        for _, cls in registry:
            if type(spec) is cls.Config:
                return cls(spec)
        raise ConfigError(f"no registered {registry.kind} takes a {type(spec).__qualname__}")
    raise ConfigError(
        f"{registry.kind} must be a name ({', '.join(registry.names())}), a dict with 'name', "
        f"a config or a {base.__name__} instance; got {spec!r}"
    )
