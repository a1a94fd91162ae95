"""``bench_gpu.py --profile``: one decode under ``torch.profiler`` with CUDA graphs off, its kernel table written
beside the result file (graphed decodes hide their kernels from the table; ``decode_timeline.py --trace-blocks``
profiles a graphed decode's gaps instead)."""

from __future__ import annotations

from pathlib import Path

import torch

import fastdllm
from bench_modes import set_mode


def profile_decode(model, prompt, cache: str, k: int, args, mode: str, path: Path) -> dict:
    """One decode under torch.profiler (CUDA graphs off so the kernels are visible): the kernel table."""
    from torch.profiler import ProfilerActivity, profile

    set_mode(model, mode)
    model.use_cuda_graphs(False)
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": args.gen_length // k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    decoder.generate(prompt)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        result = decoder.generate(prompt)
    events = prof.key_averages()
    key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    kernels_us = sum(getattr(e, key) for e in events if e.device_type == torch.autograd.DeviceType.CUDA)  # kernels only
    table = events.table(sort_by=key, row_limit=30)
    path.write_text(f"# {mode} mode, batch {prompt.shape[0]}, cache {cache}, k={k}; wall {result.wall_time_s:.3f} s "
                    f"(profiled, no graphs); GPU kernel time {kernels_us / 1e6:.3f} s\n\n{table}\n")
    decoder.release()
    set_mode(model, "plain")
    return {"batch": prompt.shape[0], "cache": cache, "tokens_per_step": k, "mode": mode, "file": path.name,
            "kernel_s": kernels_us / 1e6, "profiled_wall_s": result.wall_time_s}
