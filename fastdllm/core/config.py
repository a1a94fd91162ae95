"""The run config: one pydantic model for a whole ``generate`` call, round-tripping through JSON/YAML.

Policies appear as ``{"name": "threshold", "threshold": 0.9}`` dicts, validated against the
registered policy's own config, so a typo fails here, before any model work.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fastdllm.core.policy import (CachePolicy, ConfigError, UnmaskPolicy, cache_policies,
                                  resolve_policy, unmask_policies)


def _normalise(registry, base, value: Any) -> dict[str, Any]:
    return resolve_policy(registry, base, value).spec()


class DecodeConfig(BaseModel):
    """Everything that decides what ``generate`` decodes (the model and prompts aside)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gen_length: int = Field(128, gt=0, description="generated positions G")
    block_length: int = Field(32, gt=0, description="positions per semi-autoregressive block")
    cache: dict[str, Any] = Field(default_factory=lambda: {"name": "dual"}, validate_default=True)
    unmask: dict[str, Any] = Field(default_factory=lambda: {"name": "threshold"}, validate_default=True)
    temperature: float = Field(0.0, ge=0.0, description="0 = argmax; > 0 = Gumbel-max sampling")
    top_k: int | None = Field(None, gt=0, description="sample candidates among the k most likely tokens")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="sample candidates from the top-p nucleus")
    cfg_scale: float = Field(0.0, ge=0.0, description="classifier-free guidance (LLaDA): uncond + (s+1)(cond - uncond)")
    seed: int | None = Field(None, description="seeds the sampling generator (temperature > 0, random remasking)")
    stop_at_eos: bool = Field(False, description="stop after a block once every row has an end token")
    max_steps_per_block: int | None = Field(None, gt=0, description="hard bound; default block_length")

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, v: Any) -> dict[str, Any]:
        return _normalise(cache_policies, CachePolicy, v)

    @field_validator("unmask", mode="before")
    @classmethod
    def _unmask(cls, v: Any) -> dict[str, Any]:
        return _normalise(unmask_policies, UnmaskPolicy, v)

    @model_validator(mode="after")
    def _lengths(self) -> "DecodeConfig":
        if self.gen_length % self.block_length:
            lower = self.gen_length - self.gen_length % self.block_length
            raise ValueError(
                f"block_length={self.block_length} does not divide gen_length={self.gen_length}; "
                f"use a divisor of gen_length (e.g. gen_length={lower or self.block_length})"
            )
        return self

    @property
    def steps_bound(self) -> int:
        return self.max_steps_per_block or self.block_length

    def policies(self) -> tuple[CachePolicy, UnmaskPolicy]:
        """The two policies this config describes (built from the registries)."""
        return self.cache_policy(), self.unmask_policy()

    def cache_policy(self) -> CachePolicy:
        return resolve_policy(cache_policies, CachePolicy, self.cache)  # type: ignore[return-value]

    def unmask_policy(self) -> UnmaskPolicy:
        return resolve_policy(unmask_policies, UnmaskPolicy, self.unmask)  # type: ignore[return-value]


def decode_config(**values: Any) -> DecodeConfig:
    """``DecodeConfig(**values)`` with policy instances allowed and errors that name the field."""
    from pydantic import ValidationError

    try:
        return DecodeConfig(**values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "config"
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown option {field!r} (valid: {', '.join(DecodeConfig.model_fields)})")
            else:
                problems.append(f"{field}={e.get('input')!r}: {e['msg']}")
        raise ConfigError("; ".join(problems)) from None
