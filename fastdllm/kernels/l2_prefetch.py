"""Weights pulled into the GPU's L2 cache on a side stream, while kernels that leave DRAM idle run.

A cached step of an 8B model reads every weight once: its GEMMs run at the copy rate, but the kernels
between them do not. The attention of 32 query rows reads a layer's keys and values (16.8 MB for
LLaDA-8B, 2 MB for Dream-7B) in ~10 µs, a third of what DRAM could deliver in that time, and the
norms, RoPE and SiLU-gate read almost nothing. Here, once a layer's q/k/v are computed, the output
projection's weight (33.5 MB for LLaDA, 25.7 for Dream; an H100's or H200's L2 holds 50 MB) and
optionally the first bytes of the gate/up weight are prefetched into L2 on a second stream, concurrently
with the attention; the output projection then reads them from L2. Nothing depends on the prefetch for
its values (a prefetch moves no data a kernel reads, only where it is cached), so tokens are unchanged.

Fork: ``prefetch`` makes the side stream wait for the work queued so far on the current stream, then
launches there. Join: ``join`` makes the current stream wait for the side stream (``Transformer.hidden``
calls it after its last layer, so a CUDA graph capture sees every fork joined).

The kernel issues PTX prefetches (``prefetch.global.L2``, one 128-byte line per lane, or the Hopper bulk
``cp.async.bulk.prefetch.L2``, 4 KB per lane) from a few programs. CUDA only; the interpreter has no PTX,
so on the CPU ``prefetch`` does nothing.
"""

from __future__ import annotations

import torch

from fastdllm.kernels import tl, triton

KINDS = ("line", "line_evict_last", "bulk")  # the PTX instruction (see _prefetch_kernel)
_STEP = {"line": 128, "line_evict_last": 128, "bulk": 4096}  # bytes per lane and instruction
_STREAMS: dict[torch.device, torch.cuda.Stream] = {}

if triton is not None:

    @triton.jit
    def _prefetch_kernel(BYTES, n_bytes, STEP: tl.constexpr, LANES: tl.constexpr, KIND: tl.constexpr):
        """Program p prefetches the bytes [p·LANES·STEP + i·STEP, … + STEP) for lanes i, then strides by the grid.
        KIND 0: ``prefetch.global.L2`` (a line), 1: the same with the evict-last priority, 2: the bulk prefetch
        of STEP = 4096 bytes (sm_90). Offsets past the end are clamped to the last whole step (n_bytes ≥ STEP)."""
        lanes = tl.arange(0, LANES).to(tl.int64)  # [LANES]
        last = n_bytes - STEP
        for base in range(tl.program_id(0) * LANES * STEP, n_bytes, tl.num_programs(0) * LANES * STEP):
            at = BYTES + tl.minimum(base + lanes * STEP, last)  # [LANES] pointers
            if KIND == 0:
                tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [at],
                                          dtype=tl.int32, is_pure=False, pack=1)
            elif KIND == 1:
                tl.inline_asm_elementwise("prefetch.global.L2::evict_last [$1]; mov.u32 $0, 0;", "=r,l", [at],
                                          dtype=tl.int32, is_pure=False, pack=1)
            else:
                tl.inline_asm_elementwise("cp.async.bulk.prefetch.L2.global [$1], 4096; mov.u32 $0, 0;", "=r,l",
                                          [at], dtype=tl.int32, is_pure=False, pack=1)


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _STREAMS:
        _STREAMS[device] = torch.cuda.Stream(device)
    return _STREAMS[device]


def supported(t: torch.Tensor) -> bool:
    """Whether ``prefetch`` does anything for tensors like ``t``: CUDA with Triton."""
    return triton is not None and t.is_cuda


def prefetch(tensors, limits=None, kind: str = "line", programs: int = 16, lanes: int = 128) -> bool:
    """Prefetch each tensor's bytes (at most ``limits[i]`` of them, None: all) into L2 on the side stream, after
    the work queued so far on the current stream; returns whether it forked (``join`` then owes a wait: a CUDA
    graph capture must not end with the side stream unjoined). No-op (False) for CPU tensors."""
    if kind not in KINDS:
        raise ValueError(f"prefetch kind {kind!r}: choose from {', '.join(KINDS)}")
    tensors = [t for t in tensors if t is not None]
    if not tensors or not supported(tensors[0]):
        return False
    current = torch.cuda.current_stream(tensors[0].device)
    side = _side_stream(tensors[0].device)
    side.wait_stream(current)
    step = _STEP[kind]
    with torch.cuda.stream(side):
        for i, t in enumerate(tensors):
            n = t.numel() * t.element_size()
            if limits is not None and limits[i] is not None:
                n = min(n, limits[i])
            n -= n % step
            if n < step or not t.is_contiguous():
                continue
            raw = t.view(-1).view(torch.uint8)  # [n bytes]
            _prefetch_kernel[(programs,)](raw, n, STEP=step, LANES=lanes, KIND=KINDS.index(kind), num_warps=lanes // 32)
    return True


def join(device: torch.device) -> None:
    """The current stream waits for every prefetch queued on ``device``'s side stream. Call it only after a
    ``prefetch`` that returned True in the same capture (waiting on a stream outside a capture is an error)."""
    if device in _STREAMS:
        torch.cuda.current_stream(device).wait_stream(_STREAMS[device])
