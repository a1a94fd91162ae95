"""The attention and KV-store write of one cached step, kernel by kernel, on the GPU.

For each shape (LLaDA-8B / Dream-7B heads, a 1024-position canvas, the rows a cached step recomputes) it times
SDPA under each backend PyTorch offers and the split-KV Triton kernel (``fastdllm.kernels.split_kv_attention``)
at several slice counts, and the KV-store write as two ``index_copy_`` against the one-launch ``kv_write``.
Every timing replays a CUDA graph of 32 calls (one per layer, as in a forward), so launch costs are excluded
as they are in the decoder; the result is µs per call. Each attention output is compared with an fp32 SDPA
on the same inputs (max abs difference), next to SDPA's own bf16 difference.

    python experiments/bench_attention.py --out $OUT/attention.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastdllm.evaluation import torch_info
from fastdllm.kernels.kv_write import kv_write
from fastdllm.kernels.split_kv_attention import split_kv_attention

SHAPES = [  # name, batch, query heads, key/value heads, query rows, keys
    ("llada b1 dual", 1, 32, 32, 32, 1024),
    ("dream b1 dual", 1, 28, 4, 32, 1024),
    ("llada b4 dual", 4, 32, 32, 32, 1024),
    ("llada b16 dual", 16, 32, 32, 32, 1024),
    ("dream b16 dual", 16, 28, 4, 32, 1024),
    ("llada b1 64 rows", 1, 32, 32, 64, 1024),
    ("llada b1 prefix 128 rows", 1, 32, 32, 128, 1024),
    ("llada b1 prefix 256 rows", 1, 32, 32, 256, 1024),
]


def graph_time_us(fn, calls: int = 32, replays: int = 20) -> float:
    """µs per call of ``fn`` replayed from a CUDA graph of ``calls`` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / (replays * calls) * 1e6


def sdpa_backends():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    yield "sdpa", None
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        yield f"sdpa {name.lower()}", (sdpa_kernel, getattr(SDPBackend, name))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    dev, dt = "cuda", torch.bfloat16
    gen = torch.Generator(device=dev).manual_seed(0)
    rows_out = []
    for name, B, H, H_kv, m, L in SHAPES:
        q = torch.randn(B, m, H, 128, device=dev, dtype=dt, generator=gen).transpose(1, 2)  # [B, H, m, D] as the model's
        keys = torch.randn(B, H_kv, L, 128, device=dev, dtype=dt, generator=gen)
        values = torch.randn(B, H_kv, L, 128, device=dev, dtype=dt, generator=gen)
        ref = F.scaled_dot_product_attention(q.float(), keys.float(), values.float(), enable_gqa=H != H_kv)
        kv_mb = 2 * keys.numel() * keys.element_size() / 1e6
        row = {"shape": name, "batch": B, "heads": H, "kv_heads": H_kv, "query_rows": m, "keys": L,
               "kv_megabytes": kv_mb, "us": {}, "max_abs_diff_fp32": {}}
        for label, ctx in sdpa_backends():
            def run(ctx=ctx):
                if ctx is None:
                    return F.scaled_dot_product_attention(q, keys, values, enable_gqa=H != H_kv)
                with ctx[0](ctx[1]):
                    return F.scaled_dot_product_attention(q, keys, values, enable_gqa=H != H_kv)
            try:
                row["max_abs_diff_fp32"][label] = (run().float() - ref).abs().max().item()
                row["us"][label] = graph_time_us(run)
            except Exception as err:  # noqa: BLE001 - a backend that refuses the shape is recorded
                row["us"][label] = f"{type(err).__name__}: {str(err)[:120]}"
        for splits in (None, 2, 4, 8, 16, 32):
            label = f"split-kv {'auto' if splits is None else splits}"
            try:
                row["max_abs_diff_fp32"][label] = (split_kv_attention(q, keys, values, None, splits).float() - ref).abs().max().item()
                row["us"][label] = graph_time_us(lambda s=splits: split_kv_attention(q, keys, values, None, s))
            except Exception as err:  # noqa: BLE001
                row["us"][label] = f"{type(err).__name__}: {str(err)[:120]}"
        mask = torch.ones(B, L, dtype=torch.bool, device=dev)
        mask[:, :100] = False
        mref = F.scaled_dot_product_attention(q.float(), keys.float(), values.float(), attn_mask=mask[:, None, None, :],
                                              enable_gqa=H != H_kv)
        row["max_abs_diff_fp32"]["split-kv auto, key mask"] = (split_kv_attention(q, keys, values, mask).float() - mref).abs().max().item()
        rows_out.append(row)
        print(name, {k: (round(v, 1) if isinstance(v, float) else v) for k, v in row["us"].items()}, flush=True)
        print("   diff", {k: round(v, 4) for k, v in row["max_abs_diff_fp32"].items()}, flush=True)
    writes = []
    for B, H_kv, n in ((1, 32, 32), (1, 4, 32), (16, 32, 32), (1, 32, 256)):
        store_k = torch.zeros(B, H_kv, 1024, 128, device=dev, dtype=dt)
        store_v = torch.zeros_like(store_k)
        k = torch.randn(B, n, H_kv, 128, device=dev, dtype=dt, generator=gen).transpose(1, 2)
        v = torch.randn(B, n, H_kv, 128, device=dev, dtype=dt, generator=gen).transpose(1, 2)
        index = torch.arange(768, 768 + n, device=dev)

        def two_copies():
            store_k.index_copy_(2, index, k)
            store_v.index_copy_(2, index, v)
        r = {"batch": B, "kv_heads": H_kv, "positions": n, "index_copy_x2_us": graph_time_us(two_copies),
             "kv_write_us": graph_time_us(lambda: kv_write(store_k, store_v, index, k, v))}
        expect_k = torch.zeros_like(store_k).index_copy_(2, index, k)
        store_k.zero_()
        kv_write(store_k, store_v, index, k, v)
        r["kv_write_exact"] = bool(torch.equal(store_k, expect_k))
        writes.append(r)
        print("kv write", r, flush=True)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/bench_attention.py",
           "attention": rows_out, "kv_write": writes}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
