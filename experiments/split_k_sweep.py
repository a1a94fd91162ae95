"""The split-K GEMMs (``split_k_gemm.py``, ``hopper_gemm.py`` here) against cuBLAS at a prefix window's rows.

For each projection shape of a family's layer (fused q/k/v, output, fused gate/up, down) and each row count asked
for, every configuration (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K, num_stages, num_warps) of ``configs`` is checked
against ``F.linear`` in fp32 on one weight and timed as ``gemm_plan.tune`` times a backend: a CUDA graph of one
product per weight copy (copies enough to hold ~1 GB, so every weight is read from DRAM), replayed in interleaved
rounds with ``default`` (what a forward runs without a plan entry) and cuBLASLt. Each time is put against the
product's floor, max(weight read, matmul time) at the rates measured here (``bench_gpu.ceilings``).

    for i in $(seq 0 7); do python experiments/split_k_sweep.py --family llada --compile-only $i/8 & done; wait
    python experiments/split_k_sweep.py --family llada --rows 96,128,160,192,224,256 --out $OUT/split_k_llada.json
    python experiments/split_k_sweep.py --pick 6 --from $OUT/split_k_llada.json,$OUT/split_k_dream.json

``--kernel hopper`` sweeps the Gluon kernel of ``hopper_gemm.py`` instead of the Triton one (round 13): TMA, wgmma,
an optional loader warp, the spread reduction where the grid fits (``reduce="auto"``); Triton >= 3.6 and a Hopper
GPU; configurations from ``hopper_gemm_configs.sweep_configs``; docs/speed.md, round 15. ``--compile-only I/J`` compiles a
share of the configurations into Triton's disk cache (processes side by side, so the timing run, one process, finds
them compiled); ``--pick N`` names the configurations that together save the most over the sweeps' rows. Results and
what they showed: docs/speed.md, round 13.

On the CPU (``--small``, under ``TRITON_INTERPRET=1``: what the test runs) the shapes are tiny, every product
is checked and timed by the wall clock: the flow runs, the times mean nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
from gemm_sweep import LAYER_SHAPES  # noqa: E402
import hopper_gemm  # noqa: E402
import hopper_gemm_configs  # noqa: E402
from split_k_gemm import split_k_linear  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import gemm_plan  # noqa: E402

SMALL_SHAPES = {"qkv": (96, 64), "o_proj": (32, 64), "gate_up": (128, 64), "down": (32, 160)}
SHARED_MEMORY_BYTES = 227 * 1024  # an H100/H200 block's shared memory: configurations needing more are skipped
TILES = ((64, 128, 4), (64, 256, 8), (128, 128, 8), (128, 256, 8), (256, 128, 8))  # (BLOCK_M, BLOCK_N, num_warps)


def configs(rows: int, N: int, K: int, processors: int = 132, small: bool = False) -> list[tuple[int, ...]]:
    """Candidates for a ``rows`` × K · [N, K]ᵀ product: tiles of ``TILES`` whose row side is at most twice the
    rows, 64- or 128-deep K steps, 2-4 stages (those shared memory holds, at most two: the deepest), and two slice
    counts: the one whose grid comes nearest to one wave of ``processors`` programs from 0.7 waves up, and the
    one nearest to two (1-8 slices, each at least four K steps). ``small``: 16-32 tiles for the CPU."""
    if small:
        return [(16, 32, 32, 1, 2, 4), (32, 16, 16, 3, 2, 4), (16, 16, 32, 2, 1, 4)]
    out = []
    for (bm, bn, warps), bk in itertools.product(TILES, (64, 128)):
        if bm > 2 * rows:
            continue
        tiles = -(-rows // bm) * -(-N // bn)
        waves = {s: tiles * s / processors for s in range(1, 9) if K // s >= 4 * bk}
        picks = {min((s for s in waves if waves[s] >= 0.7), key=lambda s: abs(waves[s] - target), default=None)
                 for target in (1, 2)} - {None}
        stages = [n for n in (2, 3, 4) if (bm + bn) * bk * 2 * n <= SHARED_MEMORY_BYTES][-2:]
        for s, n in itertools.product(sorted(picks), stages):
            out.append((bm, bn, bk, s, n, warps))
    return out


def kernel_for(name: str, small: bool = False, ws=(0, 1)):
    """(configurations for (rows, N, K, processors, small), the product x · weightᵀ + bias with a configuration) of
    the kernel ``name``: "split_k" (``split_k_gemm.py``) or "hopper" (``hopper_gemm.py``, no CPU form; ``ws``: with
    and/or without its loader warp)."""
    if name == "split_k":
        return configs, split_k_linear
    if name == "hopper":
        if small:
            raise SystemExit("split_k_sweep: --kernel hopper needs a Hopper GPU (Gluon has no interpreter); "
                             "drop --small")
        return (lambda rows, N, K, processors, small=False: hopper_gemm_configs.sweep_configs(rows, N, K, processors, ws),
                lambda x, w, b, config: hopper_gemm.hopper_linear(x, w, b, config, reduce="auto"))
    raise SystemExit(f"split_k_sweep: unknown kernel {name!r}; choose split_k or hopper")


def weight_copies(w: torch.Tensor, cuda: bool = True) -> list[torch.Tensor]:
    """``w`` and clones of it, ~1 GB in all (4-32 weights), so a graph over them reads every weight from DRAM;
    on the CPU ``w`` and one clone."""
    N, K = w.shape
    return [w] + [w.clone() for _ in range(min(31, max(3, int(1e9 // (N * K * 2)))) if cuda else 1)]


def has_bias(name: str, family: str) -> bool:
    """Dream's q/k/v projections carry biases; no other product does."""
    return name == "qkv" and family == "dream"


def wall_times_us(calls, weights, rounds: int = 3) -> dict[str, float]:
    """µs per product of each call over the weights, by the wall clock (the CPU's stand-in for ``graph_times_us``)."""
    times = {}
    for name, call in calls.items():
        start = time.perf_counter()
        for _ in range(rounds):
            for w in weights:
                call(w)
        times[name] = (time.perf_counter() - start) / rounds / len(weights) * 1e6
    return times


def compile_share(args) -> dict:
    """Run every ``args.compile_only`` = "I/J"-th (shape, configuration) pair once, at the first row count that
    offers it: Triton compiles it into its disk cache (a kernel's compiled form depends on the configuration, the
    weight's shape and the bias, not on the row count)."""
    share, shares = (int(v) for v in args.compile_only.split("/"))
    device = "cpu" if args.small else "cuda"
    dtype = torch.float32 if args.small else torch.bfloat16
    shapes = SMALL_SHAPES if args.small else LAYER_SHAPES[args.family]
    processors = 8 if args.small else torch.cuda.get_device_properties(0).multi_processor_count
    make_configs, linear = kernel_for(args.kernel, args.small, tuple(int(v) for v in args.ws.split(",")))
    pairs = {}
    for name in args.shapes.split(","):
        N, K = shapes[name]
        for M in (int(r) for r in args.rows.split(",")):
            for config in make_configs(M, N, K, processors, args.small):
                pairs.setdefault((name, config), M)
    done, failed = 0, {}
    for i, ((name, config), M) in enumerate(sorted(pairs.items())):
        if i % shares != share:
            continue
        N, K = shapes[name]
        bias = torch.zeros(N, device=device, dtype=dtype) if has_bias(name, args.family) else None
        try:
            linear(torch.zeros(M, K, device=device, dtype=dtype), torch.zeros(N, K, device=device, dtype=dtype),
                   bias, config)
            done += 1
        except Exception as err:  # noqa: BLE001 - reported by the timing run too
            failed[f"{name} {list(config)}"] = f"{type(err).__name__}: {str(err)[:80]}"
    result = {"share": share, "shares": shares, "compiled": done, "pairs": len(pairs), "failed": failed}
    print(json.dumps(result), flush=True)
    return result


def pick(records: list[dict], n: int) -> list[dict]:
    """Greedily, ``n`` configurations that together take the least time over ``records`` (sweep rows of any
    families), each (shape, rows) running the fastest of the picked ones or its ``default``, whichever is faster;
    each pick with the total µs after it and the rows it wins."""
    def total(chosen):
        return sum(min([r["us"]["default"]] + [r["us"][c] for c in chosen if c in r["us"]]) for r in records)
    names = sorted({c for r in records for c in r["us"]} - {"default", "cublaslt"})
    chosen, out = [], []
    for _ in range(min(n, len(names))):
        best = min((c for c in names if c not in chosen), key=lambda c: total(chosen + [c]))
        if total(chosen + [best]) >= total(chosen):
            break
        chosen.append(best)
        wins = [f"{r['gemm']} {r['rows']}" for r in records
                if r["us"].get(best, float("inf")) == min([r["us"]["default"]] + [r["us"][c] for c in chosen if c in r["us"]])
                and r["us"][best] < r["us"]["default"]]
        out.append({"config": best, "total_us": total(chosen), "wins": wins})
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada", choices=sorted(LAYER_SHAPES))
    p.add_argument("--rows", default="96,128,160,192,224,256")
    p.add_argument("--shapes", default="qkv,o_proj,gate_up,down", help="comma-separated subset of the layer's products")
    p.add_argument("--kernel", default="split_k", choices=("split_k", "hopper"),
                   help="split_k: the Triton kernel of split_k_gemm.py; hopper: the Gluon kernel of hopper_gemm.py")
    p.add_argument("--ws", default="0,1", help="--kernel hopper: the WS values (loader warp or not) to sweep")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (the median is kept)")
    p.add_argument("--small", action="store_true", help="tiny shapes on the CPU (under TRITON_INTERPRET=1)")
    p.add_argument("--compile-only", default=None, metavar="I/J",
                   help="compile (run once) the I-th of J shares of the (shape, configuration) pairs and stop: J "
                   "processes started side by side fill Triton's disk cache for the timing run")
    p.add_argument("--pick", type=int, default=None, metavar="N",
                   help="read the sweeps named by --from and print N configurations that together save the most")
    p.add_argument("--from", dest="sources", default="", help="comma-separated sweep JSON files (with --pick)")
    args = p.parse_args(argv)
    if args.pick is not None:
        records = [r for f in args.sources.split(",") if f for r in json.loads(Path(f).read_text())["gemm"]]
        before = sum(r["us"]["default"] for r in records)
        picks = pick(records, args.pick)
        print(json.dumps({"default_total_us": before, "picks": picks}, indent=1))
        return {"default_total_us": before, "picks": picks}
    if args.compile_only is not None:
        return compile_share(args)
    cuda = not args.small
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    t0 = time.time()
    ceil = bench_gpu.ceilings("cuda") if cuda else {"copy_bytes_per_s": 1e10, "matmul_flop_per_s": 1e11}
    processors = torch.cuda.get_device_properties(0).multi_processor_count if cuda else 8
    shapes = SMALL_SHAPES if args.small else LAYER_SHAPES[args.family]
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise SystemExit(f"split_k_sweep: unknown shapes {unknown}; choose among {', '.join(shapes)}")
    rows_list = [int(r) for r in args.rows.split(",")]
    gen = torch.Generator(device=device).manual_seed(0)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/split_k_sweep.py "
           + " ".join(sys.argv[1:] if argv is None else argv), "ceilings": ceil, "processors": processors, "gemm": []}
    timer = gemm_plan.graph_times_us if cuda else wall_times_us
    make_configs, linear = kernel_for(args.kernel, args.small, tuple(int(v) for v in args.ws.split(",")))
    out["kernel"] = args.kernel
    for name in names:
        N, K = shapes[name]
        bias = has_bias(name, args.family)
        w = torch.randn(N, K, device=device, dtype=dtype, generator=gen) * 0.02  # [N, K]
        b = torch.randn(N, device=device, dtype=dtype, generator=gen) if bias else None  # [N]
        copies = weight_copies(w, cuda)
        for M in rows_list:
            x = torch.randn(M, K, device=device, dtype=dtype, generator=gen)  # [M, K]
            ref = F.linear(x.float(), w.float(), None if b is None else b.float())  # [M, N]
            scale = ref.abs().max().item()
            calls = {"default": lambda v: gemm_plan.run("default", x, v, b),
                     "cublaslt": lambda v: gemm_plan.run("cublaslt", x, v, b)}
            errors, failed = {}, {}
            for config in make_configs(M, N, K, processors, args.small):
                try:
                    y = linear(x, w, b, config)
                    errors[str(list(config))] = (y.float() - ref).abs().max().item() / scale
                    calls[str(list(config))] = lambda v, c=config: linear(x, v, b, c)
                except Exception as err:  # noqa: BLE001 - e.g. out of shared memory or registers: not a candidate
                    failed[str(list(config))] = f"{type(err).__name__}: {str(err)[:80]}"
            us = timer(calls, copies, rounds=args.rounds)
            floor = max(N * K * 2 / ceil["copy_bytes_per_s"], 2 * M * N * K / ceil["matmul_flop_per_s"]) * 1e6
            ranked = sorted((t, c) for c, t in us.items() if c not in ("default", "cublaslt"))
            row = {"gemm": name, "rows": M, "N": N, "K": K, "bias": bias, "floor_us": floor, "us": us,
                   "rel_error": errors, "failed": failed,
                   "best": ranked[0][1] if ranked else None, "best_us": ranked[0][0] if ranked else None}
            if ranked:
                row["best_vs_default"] = ranked[0][0] / us["default"]
                row["best_floor_ratio"] = ranked[0][0] / floor
            row["default_floor_ratio"] = us["default"] / floor
            out["gemm"].append(row)
            print(f"{name} {M}: default {us['default']:.1f} lt {us['cublaslt']:.1f} floor {floor:.1f} best "
                  + ", ".join(f"{c} {t:.1f}" for t, c in ranked[:3]) + f" ({len(ranked)} ok, {len(failed)} failed, "
                  f"max rel err {max(errors.values(), default=0):.2e})", flush=True)
            bench_gpu.save(out, args.out)
        del copies
    from fastdllm.kernels import _ARRIVALS
    out["counters_left"] = sum(int(t.count_nonzero()) for t in _ARRIVALS.values())
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)
    return out


if __name__ == "__main__":
    main()
