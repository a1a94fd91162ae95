"""The small value types the decoder hands to policies: the layout, the step, a cache plan and what a
forward saw (the observation a cache policy may react to)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from fastdllm.core.proposal import Proposal


@dataclass(frozen=True)
class Layout:
    """Where things sit on the canvas ``[B, L]``: prompt ``[0, P)`` (left-padded), then ``G`` generated."""

    prompt_length: int  # P
    gen_length: int  # G
    block_length: int
    logit_shift: int  # 1 when the model predicts token i from hidden state i-1 (Dream), else 0

    @property
    def canvas_length(self) -> int:
        return self.prompt_length + self.gen_length

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    def block_bounds(self, block: int) -> tuple[int, int]:
        start = self.prompt_length + block * self.block_length
        return start, start + self.block_length


@dataclass(frozen=True)
class Step:
    """One forward of the decoder: which block, which step inside it, and the run's sampling state."""

    layout: Layout
    block: int
    index: int  # step index inside the block, 0 at the block's first forward
    temperature: float = 0.0  # candidate sampling (see fastdllm.core.proposal.sample_candidates)
    generator: torch.Generator | None = None
    top_k: int | None = None
    top_p: float | None = None

    @property
    def block_start(self) -> int:
        return self.layout.block_bounds(self.block)[0]

    @property
    def block_end(self) -> int:
        return self.layout.block_bounds(self.block)[1]


@dataclass(frozen=True)
class Plan:
    """Which canvas positions a forward recomputes; every other key/value is read from the KV store.

    The positions are the contiguous range ``[start, end)`` (the fast path) plus, optionally,
    ``extra``: a device index tensor ``[n]`` of positions outside that range (any order, no
    duplicates), recomputed in the same forward. ``refresh`` means the forward rewrites the *whole*
    store (``[0, L)``, no extra); a plan that recomputes only part of the canvas — for example the
    generated region, keeping the prompt's keys/values (``Plan.generated``) — has ``refresh=False``.

    Build plans with the constructors: they take canvas positions whose *tokens* need fresh logits
    and add the position before ``start`` when the model has a logit shift (Dream predicts token i
    from hidden state i - 1), so no policy needs to know the shift.
    """

    start: int
    end: int
    refresh: bool = False
    extra: torch.Tensor | None = field(default=None, compare=False)  # [n] long, positions outside [start, end)

    @staticmethod
    def range(step: Step, start: int, end: int) -> "Plan":
        """Recompute the tokens' positions ``[start, end)`` (one earlier with a logit shift, never below 0);
        ``refresh`` is set exactly when that covers the whole canvas."""
        layout = step.layout
        first = max(0, start - layout.logit_shift)
        return Plan(first, end, refresh=first == 0 and end == layout.canvas_length)

    @staticmethod
    def full(step: Step) -> "Plan":
        """The whole canvas: rewrites every key/value of the store."""
        return Plan(0, step.layout.canvas_length, refresh=True)

    @staticmethod
    def block(step: Step) -> "Plan":
        """The current block only (Fast-dLLM's dual cache reuse step)."""
        return Plan.range(step, step.block_start, step.block_end)

    @staticmethod
    def from_block_to_end(step: Step) -> "Plan":
        """The current block and every position after it (Fast-dLLM's prefix cache reuse step)."""
        return Plan.range(step, step.block_start, step.layout.canvas_length)

    @staticmethod
    def generated(step: Step) -> "Plan":
        """The whole generated region ``[P, L)``: a partial refresh that keeps the prompt's keys/values."""
        return Plan.range(step, step.layout.prompt_length, step.layout.canvas_length)

    @staticmethod
    def block_and(step: Step, extra: torch.Tensor) -> "Plan":
        """The current block plus ``extra`` (``[n]`` long canvas positions outside the block window, on the
        canvas's device): a sparse plan, e.g. the positions whose cached keys drifted most."""
        window = Plan.block(step)
        return Plan(window.start, window.end, extra=extra)

    @property
    def size(self) -> int:
        """Positions recomputed (host int, no sync: a tensor's length is metadata)."""
        return self.end - self.start + (0 if self.extra is None else self.extra.numel())


@dataclass(frozen=True)
class Observation:
    """What one forward saw, handed to ``CachePolicy.observe`` after the commit.

    ``key_drift``/``value_drift`` ``[n_layers, rows]`` float32 device tensors (rows = B, or 2B with
    ``cfg_scale`` > 0, the unconditional copies last): per layer and store row, the relative
    L2 change ``||new - old|| / ||old||`` of the recomputed keys/values against what the store held
    before this forward. Present only when the policy sets ``wants_drift = True`` and the store held
    something (``None`` at the first forward of a decode and without a store). Reading them on the host
    (``float()``, ``.item()``, ``if``) is a sync the policy chooses to pay.
    """

    step: Step
    plan: Plan
    proposal: "Proposal"
    commit: torch.Tensor  # [B, block] bool: what this forward committed
    key_drift: torch.Tensor | None = None  # [n_layers, B] float32
    value_drift: torch.Tensor | None = None  # [n_layers, B] float32
