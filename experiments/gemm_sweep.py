"""cuBLAS against the Triton GEMM of ``fastdllm.kernels.skinny_matmul`` at the row counts of cached steps.

For each weight matrix of a family's layer (fused q/k/v, output, fused gate/up, down) and each row count
asked for, every configuration (BLOCK_N, BLOCK_K, num_stages, num_warps, BLOCK_M) of the Triton kernel is
timed by ``triton.testing.do_bench`` (L2 flushed before each call); then cuBLAS and the best three
configurations are timed as a forward runs them: back to back in a CUDA graph, each call reading another
copy of the weight. Times are against the weight's read time and the matmul time at the rates measured
here (``bench_gpu.ceilings``).

    python experiments/gemm_sweep.py --family llada --rows 64,128,192,256 --out $OUT/gemm_llada.json
    python experiments/gemm_sweep.py --family llada --rows 32 --grid few --shapes qkv,gate_up,lm_head

cuBLAS is timed twice: with PyTorch's default BLAS backend and with cuBLASLt (its own heuristics).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
from bench_attention import graph_time_us  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels.skinny_matmul import CUBLAS, MAX_ROWS, config_for, skinny_linear  # noqa: E402

LAYER_SHAPES = {  # family -> name -> (N outputs, K inputs), fused projections (lm_head: only with --shapes)
    "llada": {"qkv": (3 * 4096, 4096), "o_proj": (4096, 4096), "gate_up": (2 * 12288, 4096), "down": (4096, 12288),
              "lm_head": (126464, 4096)},
    "dream": {"qkv": (3584 + 2 * 512, 3584), "o_proj": (3584, 3584), "gate_up": (2 * 18944, 3584), "down": (3584, 18944),
              "lm_head": (152064, 3584)},
}
SHARED_MEMORY_BYTES = 200 * 1024  # a configuration whose weight tiles in flight exceed this is not compiled


def configs(rows: int, grid: str = "rows") -> list[tuple[int, ...]]:
    """Candidates for ``rows`` rows. ``rows``: (BLOCK_N, BLOCK_K, num_stages, num_warps, BLOCK_M), row tiles of
    32-128; ``few``: (BLOCK_N, BLOCK_K, num_stages, num_warps), one row tile (at most 64 rows, a cached step),
    whose weight tiles in flight fit ``SHARED_MEMORY_BYTES``."""
    if grid == "few":
        return [(n, k, s, w) for n, k, s, w in itertools.product((16, 32, 64, 128), (128, 256, 512), (3, 4, 5, 6), (4, 8))
                if n * k * s * 2 <= SHARED_MEMORY_BYTES]
    block_ms = [m for m in (32, 64, 128) if m < 2 * rows][-2:]
    return [(n, k, s, w, m) for m, n, k, s, w in itertools.product(block_ms, (64, 128), (64, 128), (3, 4), (4, 8))]


def cublaslt(fn):
    """``fn`` run with PyTorch's cuBLASLt backend for its GEMMs (the process-wide setting, restored after)."""
    def run():
        before = torch.backends.cuda.preferred_blas_library()
        torch.backends.cuda.preferred_blas_library("cublaslt")
        try:
            return fn()
        finally:
            torch.backends.cuda.preferred_blas_library(before)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada", choices=sorted(LAYER_SHAPES))
    p.add_argument("--rows", default="64,128,192,256")
    p.add_argument("--shapes", default=None, help="comma-separated subset of qkv,o_proj,gate_up,down,lm_head "
                   "(default: all but lm_head)")
    p.add_argument("--grid", default="rows", choices=("rows", "few"),
                   help="rows: row-tiled configurations (64-256 rows); few: one row tile, a wider sweep (32-64 rows)")
    p.add_argument("--cublas-only", action="store_true", help="time cuBLAS (both backends) only, no Triton sweep")
    args = p.parse_args()
    from triton.testing import do_bench

    t0 = time.time()
    ceil = bench_gpu.ceilings("cuda")
    shapes = dict(LAYER_SHAPES[args.family])
    if args.shapes:
        shapes = {k: shapes[k] for k in args.shapes.split(",")}
    else:
        shapes.pop("lm_head")
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/gemm_sweep.py " + " ".join(sys.argv[1:]),
           "ceilings": ceil, "gemm": []}
    for name, (N, K) in shapes.items():
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
        copies = [w] + [w.clone() for _ in range(max(2, int(4e8 // (N * K * 2))))]
        read_us = N * K * 2 / ceil["copy_bytes_per_s"] * 1e6
        for M in (int(r) for r in args.rows.split(",")):
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)
            ref = F.linear(x.float(), w.float())
            bench = {}
            for config in [] if args.cublas_only else configs(M, args.grid):
                try:
                    y = skinny_linear(x, w, config=config)
                    assert (y.float() - ref).abs().max().item() < 0.05 * ref.abs().max().item(), "wrong result"
                    bench[config] = 1000 * do_bench(lambda c=config: skinny_linear(x, w, config=c), warmup=5, rep=20)
                except Exception as err:  # noqa: BLE001 - e.g. out of shared memory: not a candidate
                    bench[config] = f"{type(err).__name__}: {str(err)[:60]}"
            ranked = sorted((us, c) for c, us in bench.items() if isinstance(us, float))
            turn = iter(range(10 ** 9))
            row = {"gemm": name, "rows": M, "N": N, "K": K, "weight_read_us": read_us,
                   "matmul_us": 2 * M * N * K / ceil["matmul_flop_per_s"] * 1e6,
                   "cublas_do_bench_us": 1000 * do_bench(lambda: F.linear(x, w), warmup=5, rep=20),
                   "cublas_us": graph_time_us(lambda: F.linear(x, copies[next(turn) % len(copies)]), len(copies)),
                   "cublaslt_us": cublaslt(lambda: graph_time_us(lambda: F.linear(x, copies[next(turn) % len(copies)]),
                                                                 len(copies)))(),
                   "do_bench_us": {str(list(c)): us for c, us in bench.items()}, "best": []}
            for _, config in ranked[:3]:
                us = graph_time_us(lambda c=config: skinny_linear(x, copies[next(turn) % len(copies)], config=c), len(copies))
                row["best"].append({"config": list(config), "us": us})
            if M <= MAX_ROWS and config_for(N, K) != CUBLAS:  # what use_skinny_matmul runs today
                row["rule"] = list(config_for(N, K))
                row["rule_us"] = graph_time_us(lambda: skinny_linear(x, copies[next(turn) % len(copies)]), len(copies))
            floor = max(row["weight_read_us"], row["matmul_us"])
            row["cublas_floor_ratio"] = row["cublas_us"] / floor
            if row["best"]:
                top = min(row["best"], key=lambda b: b["us"])
                row["best_floor_ratio"], row["best_vs_cublas"] = top["us"] / floor, top["us"] / row["cublas_us"]
            out["gemm"].append(row)
            print(name, M, "cublas", round(row["cublas_us"], 1), "lt", round(row["cublaslt_us"], 1), "rule", round(row.get("rule_us", 0), 1), "best", [(b["config"], round(b["us"], 1)) for b in row["best"]],
                  f"floor {floor:.1f}", flush=True)
            bench_gpu.save(out, args.out)
        del copies
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
