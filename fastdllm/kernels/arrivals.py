"""Arrival counters: how a Triton kernel lets the last of several programs finish their shared work.

The split-KV attention (key slices of one query tile) and the split-K few-row GEMM (reduction slices of one
output tile) write fp32 partials; each program then increments its tile's int32 counter (acquire-release, GPU
scope), and the program that sees every other one arrived combines the partials in a fixed order (so the result
does not depend on which program came last) and sets the counter back to zero. One launch instead of a second
kernel for the combine.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import triton

_ARRIVALS: dict[tuple[torch.device, int], torch.Tensor] = {}


def arrival_counters(device: torch.device, n: int) -> torch.Tensor:
    """Zeroed int32 counters, at least ``n``, for ``device``. Kept for the life of the process and never
    replaced (a captured CUDA graph holds the address), so a size is rounded up to a power of two ≥ 1024:
    one buffer serves every shape the kernels send. Each launch leaves its counters zero again; launches that
    share a buffer must not run concurrently on two streams."""
    size = max(1024, triton.next_power_of_2(n))
    key = (device, size)
    if key not in _ARRIVALS:
        _ARRIVALS[key] = torch.zeros(size, dtype=torch.int32, device=device)  # [size]
    return _ARRIVALS[key]


def counters_left() -> int:
    """Nonzero counters over every buffer (0 between launches: what the tests check)."""
    return sum(int(t.count_nonzero()) for t in _ARRIVALS.values())
