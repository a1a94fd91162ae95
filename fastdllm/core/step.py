"""The small value types the decoder hands to policies: the layout, the step and a cache plan."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    temperature: float = 0.0
    generator: torch.Generator | None = None

    @property
    def block_start(self) -> int:
        return self.layout.block_bounds(self.block)[0]

    @property
    def block_end(self) -> int:
        return self.layout.block_bounds(self.block)[1]


@dataclass(frozen=True)
class Plan:
    """Recompute canvas positions ``[start, end)``; read every other key/value from the store.

    ``refresh`` marks a full-canvas forward that rewrites the whole store.
    """

    start: int
    end: int
    refresh: bool = False

    @staticmethod
    def full(step: Step) -> "Plan":
        return Plan(0, step.layout.canvas_length, refresh=True)
