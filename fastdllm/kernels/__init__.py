"""Triton kernels for the CUDA hot path (optional: without Triton, or on the CPU, the PyTorch ops run).

- ``split_kv_attention``: attention of few query rows over a long key range, the keys split across SMs.
- ``skinny_matmul``: ``x @ weight.T`` for few rows and wide weights (projections and LM head of cached steps).
- ``kv_write``: the keys and values of a forward written into the KV store in one launch.
- ``rope_kv_write``: RoPE of the queries and keys in that same launch (``KVStore.update_rotating``).
- ``greedy_proposal``: the argmax token and its probability in one pass over the logits.

All run on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``), which is how the tests check them.
Beside them, not Triton: ``gemm_plan`` (each projection's GEMM backend chosen by timing), ``lt_algos``
(cuBLASLt's ranked candidates for one GEMM shape, through ctypes; CUDA only) and ``fp8_weights``.
"""

import torch

try:  # the CPU wheel of torch comes without Triton: callers then run the PyTorch ops
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision`` for operands of ``dtype``: "ieee" for fp32 (Triton's default, "tf32", rounds
    fp32 operands to 10 mantissa bits on the GPU, which the interpreter does not: a kernel checked on the CPU in fp32
    would differ on the device), "tf32" otherwise (ignored for half-precision operands)."""
    return "ieee" if dtype == torch.float32 else "tf32"


_ARRIVALS: dict[tuple[torch.device, int], torch.Tensor] = {}


def arrival_counters(device: torch.device, n: int) -> torch.Tensor:
    """Zeroed int32 counters, at least ``n``, for ``device``: the arrival counters of the kernels whose last
    program of a tile combines the others' partials (``split_kv_attention``; ``experiments/split_k_gemm.py``). Kept for the life
    of the process and never replaced (a captured CUDA graph holds the address), so a size is rounded up to a
    power of two ≥ 1024: one buffer serves every shape. Each launch leaves them zero again; launches that share
    a buffer must not run concurrently on two streams."""
    size = max(1024, triton.next_power_of_2(n))
    key = (device, size)
    if key not in _ARRIVALS:
        _ARRIVALS[key] = torch.zeros(size, dtype=torch.int32, device=device)  # [size]
    return _ARRIVALS[key]
