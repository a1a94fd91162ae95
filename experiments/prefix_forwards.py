"""Where a prefix-cache step's time goes: every window size of a batch-1 prefix decode, timed and profiled.

A prefix-cache step recomputes the current block and every position after it (Fast-dLLM's prefix cache),
so a 256-token generation in blocks of 32 runs forwards of 256, 224, ..., 32 rows (one more with Dream's
logit shift) against a 1024-position canvas. This script, at a family's full shape with random bf16 weights:

- times each window's forward replayed from its CUDA graph in each ``bench_gpu.py`` mode asked for, against
  the forward's floor (max(weight read, matmul time), as ``bench_gpu.py`` measures them in the same run);
- profiles one forward per profiled window without graphs (``torch.profiler``) and sums its GPU kernel
  time by kind: GEMMs, attention, compiled elementwise (Inductor's Triton kernels), KV write, other;
- with ``--sweeps``: graph-times the attention of every window size (SDPA against the split-KV kernel at
  several query tiles, warps and key slices) and each weight matrix's GEMM at those row counts (cuBLAS,
  each call reading another copy of the weight as a forward's layers do) against its weight-read time.

    python experiments/prefix_forwards.py --family llada --modes kernels --sweeps --out $OUT/prefix_llada.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
from bench_attention import graph_time_us  # noqa: E402
from bench_profile import kind_of, profile_forward  # noqa: E402, F401 - kind_of: the tests read it here

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels.split_kv_attention import split_kv_attention  # noqa: E402

def windows(model, prompt_length: int, gen_length: int, block_length: int) -> list[tuple[int, int, int, int]]:
    """(block, start, end, logits start) of each prefix-cache step: the block and everything after it."""
    L, shift = prompt_length + gen_length, model.logit_shift
    return [(b, prompt_length + b * block_length - shift, L, prompt_length + b * block_length)
            for b in range(gen_length // block_length)]


def time_windows(model, mode: str, args, floors, profiled: set[int]) -> list[dict]:
    bench_gpu.set_mode(model, mode)
    P, G = args.prompt_length, args.gen_length
    L = P + G
    if mode in bench_gpu.TUNED_MODES:  # the plan for every window's rows and the block's rows (the last layer's MLP)
        rows = {end - start for _, start, end, _ in windows(model, P, G, args.block_length)} | {args.block_length}
        args.plans[mode] = model.tune_gemms(sorted(rows), backends=bench_gpu.TUNED_MODES[mode])
    canvas = torch.randint(0, model.mask_token_id, (1, L), generator=torch.Generator().manual_seed(2)).cuda()  # [1, L]
    canvas[:, P:] = model.mask_token_id
    position_ids = torch.arange(L, device="cuda")[None]  # [1, L]
    store = model.new_kv_store(1, L)
    out = []
    with torch.inference_mode():
        model.forward_step(canvas, 0, L, store, position_ids, None, P, P + args.block_length)  # fill the store
        for block, start, end, first in windows(model, P, G, args.block_length):
            def step():
                return model.forward_step(canvas, start, end, store, position_ids, None, first, first + args.block_length)
            for _ in range(3):  # capture, compile, warm
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.forward_repeats):
                step()
            torch.cuda.synchronize()
            ms = 1000 * (time.perf_counter() - t0) / args.forward_repeats
            floor_ms = 1000 * floors.forward_s(end - start)
            row = {"mode": mode, "block": block, "rows": end - start, "ms": ms, "floor_ms": floor_ms,
                   "floor_ratio": ms / floor_ms}
            if block in profiled:
                graphs, model.cuda_graphs = model.cuda_graphs, None
                row["profile"] = profile_forward(step)
                model.cuda_graphs = graphs
            out.append(row)
            print(mode, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    bench_gpu.set_mode(model, "plain")
    return out


def attention_sweep(model, args) -> list[dict]:
    """Attention of each window size over the whole canvas: SDPA against split-KV configurations (µs per call)."""
    a = model.arch
    L = args.prompt_length + args.gen_length
    gen = torch.Generator(device="cuda").manual_seed(0)
    keys = torch.randn(1, a.n_kv_heads, L, a.head_dim, device="cuda", dtype=torch.bfloat16, generator=gen)
    values = torch.randn_like(keys)
    out = []
    for _, start, end, _ in windows(model, args.prompt_length, args.gen_length, args.block_length):
        m = end - start
        q = torch.randn(1, m, a.n_heads, a.head_dim, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2)
        gqa = a.n_heads != a.n_kv_heads
        ref = F.scaled_dot_product_attention(q.float(), keys.float(), values.float(), enable_gqa=gqa)
        row = {"rows": m, "us": {"sdpa": graph_time_us(lambda: F.scaled_dot_product_attention(q, keys, values, enable_gqa=gqa))},
               "max_abs_diff": {}}
        for block_m in (64, 128):
            for warps in (4, 8):
                for splits in (1, 2, 4, 8):
                    name = f"split-kv m{block_m} w{warps} s{splits}"
                    try:
                        fn = lambda: split_kv_attention(q, keys, values, None, splits, block_m, warps)  # noqa: E731
                        row["max_abs_diff"][name] = (fn().float() - ref).abs().max().item()
                        row["us"][name] = graph_time_us(fn)
                    except Exception as err:  # noqa: BLE001 - e.g. out of shared memory: not a candidate
                        row["us"][name] = f"{type(err).__name__}: {str(err)[:80]}"
        best = min((v, k) for k, v in row["us"].items() if isinstance(v, float))
        row["best"] = best[1]
        out.append(row)
        print("attention", m, "sdpa", round(row["us"]["sdpa"], 1), "best", best[1], round(best[0], 1), flush=True)
    return out


def gemm_sweep(model, args, bandwidth: float) -> list[dict]:
    """cuBLAS at each window's row count for each weight matrix of a layer (fused q/k/v and gate/up)."""
    a = model.arch
    qkv = (a.n_heads + 2 * a.n_kv_heads) * a.head_dim
    shapes = {"qkv": (qkv, a.d_model), "o_proj": (a.d_model, a.n_heads * a.head_dim),
              "gate_up": (2 * a.mlp_hidden, a.d_model), "down": (a.d_model, a.mlp_hidden)}
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = []
    rows_list = sorted({end - start for _, start, end, _ in windows(model, args.prompt_length, args.gen_length,
                                                                    args.block_length)})
    for name, (N, K) in shapes.items():
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
        copies = [w] + [w.clone() for _ in range(max(2, int(4e8 // (N * K * 2))))]
        floor_us = N * K * 2 / bandwidth * 1e6
        for M in rows_list:
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)
            turn = iter(range(10 ** 9))
            us = graph_time_us(lambda: F.linear(x, copies[next(turn) % len(copies)]), len(copies))
            flop_us = 2 * M * N * K / args.matmul_rate * 1e6
            out.append({"gemm": name, "rows": M, "N": N, "K": K, "cublas_us": us, "weight_read_us": floor_us,
                        "matmul_us": flop_us, "floor_ratio": us / max(floor_us, flop_us)})
            print("gemm", out[-1], flush=True)
        del copies
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada")
    p.add_argument("--modes", default="kernels", help="bench_gpu.py modes, comma-separated")
    p.add_argument("--profile-blocks", default="0,4", help="blocks whose window is profiled")
    p.add_argument("--sweeps", action="store_true", help="also the attention and GEMM sweeps")
    bench_gpu.canvas_arguments(p)
    p.add_argument("--forward-repeats", type=int, default=10)
    args = p.parse_args()
    t0 = time.time()
    model = bench_gpu.build_model(args.family, False, "cuda", torch.bfloat16)
    params = sum(t.numel() for t in model.parameters())
    ceil = bench_gpu.ceilings("cuda")
    args.matmul_rate = ceil["matmul_flop_per_s"]
    floors = bench_gpu.Floors(params, params * 2, ceil)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/prefix_forwards.py " + " ".join(sys.argv[1:]),
           "family": args.family, "ceilings": ceil, "params": params, "windows": []}
    profiled = {int(b) for b in args.profile_blocks.split(",") if b.strip()}
    out["gemm_plans"] = args.plans = {}  # tuned mode -> tune_gemms' records
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        out["windows"] += time_windows(model, mode, args, floors, profiled)
        bench_gpu.save(out, args.out)
    if args.sweeps:
        out["attention"] = attention_sweep(model, args)
        bench_gpu.save(out, args.out)
        out["gemm"] = gemm_sweep(model, args, ceil["copy_bytes_per_s"])
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
