"""Profiles without CUDA graphs (graphed work hides its kernels from ``torch.profiler``).

``profile_decode`` (``bench_gpu.py --profile``): one decode, its kernel table written beside the result file
(``decode_timeline.py --trace-blocks`` profiles a graphed decode's gaps instead). ``profile_forward``
(``bench_gpu.py --forward-profile``, ``prefix_forwards.py``): one forward's kernel time by kind (``kind_of``)."""

from __future__ import annotations

import collections
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


KINDS = (  # (kind, substrings of a kernel name, lower case), first match wins
    ("attention", ("flash", "fmha", "attention", "cudnn", "sdpa", "split_kv_kernel")),
    ("gemm", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "_skinny_kernel", "splitk")),
    ("kv_write", ("_kv_write",)),
    ("compiled_elementwise", ("triton_",)),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KINDS if any(k in low for k in keys)), "other")


def profile_forward(step) -> dict:
    """GPU kernel µs of one eager forward, by kind, and its twenty costliest kernels."""
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    by_kind, by_name = collections.Counter(), collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            us = e.device_time if hasattr(e, "device_time") else e.cuda_time
            by_kind[kind_of(e.name)] += us
            by_name[e.name[:90]] += us
    return {"kernel_us": sum(by_kind.values()), "by_kind_us": dict(by_kind), "top_kernels_us": dict(by_name.most_common(20))}
