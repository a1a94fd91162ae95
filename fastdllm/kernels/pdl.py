"""Programmatic dependent launch (PDL, Hopper and later) for the Triton kernels of the hot path.

A kernel launched with PDL may start while the kernel before it on the stream is still finishing: its
programs become resident, do work that does not read the previous kernel's output (a GEMM warms L2 with the
first tiles of its weight, which no kernel writes) and then wait (``griddepcontrol.wait``) until the previous
kernel has completed and its writes are visible. In a CUDA graph the dependency is captured as a programmatic
edge. Off by default (``use_pdl``): an experiment measured in docs/speed.md.
"""

from __future__ import annotations

import functools

import torch

from fastdllm.kernels import triton

try:  # Triton >= 3.4 on CUDA: the grid-dependency instructions
    from triton.language.extra.cuda import gdc_wait
except ImportError:  # older Triton or no Triton: PDL is never active
    gdc_wait = None

_ENABLED = [False]


def use_pdl(enabled: bool = True) -> None:
    """Launch the hot path's Triton kernels with PDL where the GPU and Triton support it (process-wide; CUDA
    graphs captured before must be captured again: ``DiffusionLM.use_cuda_graphs`` does on its next call)."""
    _ENABLED[0] = bool(enabled)


@functools.lru_cache(maxsize=None)
def _supported(device: torch.device) -> bool:
    if triton is None or gdc_wait is None or device.type != "cuda":
        return False
    from triton.backends.nvidia.compiler import CUDAOptions

    return ("launch_pdl" in CUDAOptions.__dataclass_fields__
            and torch.cuda.get_device_capability(device)[0] >= 9)


def active(device: torch.device) -> bool:
    """Whether kernels on ``device`` launch with PDL now (enabled, Hopper or later, a Triton that has it)."""
    return _ENABLED[0] and _supported(device)


def launch_options(device: torch.device) -> dict:
    """Keyword arguments for a Triton launch of a kernel with a ``PDL`` constexpr: ``{"PDL": True,
    "launch_pdl": True}`` when ``active``, else none (the kernel's default, no PDL)."""
    return {"PDL": True, "launch_pdl": True} if active(device) else {}
