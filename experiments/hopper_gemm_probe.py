"""Where the Gluon Hopper GEMM's time goes (``hopper_gemm.py``, docs/speed.md round 15): its time against K.

At one product width (N) and row count the kernel's grid does not depend on K, so timing it at several K and
fitting time = fixed + per_step · K splits a launch into what every launch pays once (the launch itself, the
pipeline's fill, the epilogue, the split-K reduction) and what each K step costs (the loads, the MMAs). The same
fit for PyTorch's default path and cuBLASLt says which of the two parts the kernel loses on. Variants:
- "loads only" (``mma=False``): the loads, waits and epilogue without the MMAs, the load path's share;
- a configuration's plain key runs ``reduce="auto"`` (the reduction it ran is recorded under "reduction"), "last"
  the last-arriving slice summing the partials;
- "partials only" writes the slices' partials and stops, "no epilogue" stores one element: what the epilogue costs.
Timed as ``gemm_plan.tune`` times a backend (CUDA graphs over weight copies enough for ~1 GB, interleaved rounds).

    python experiments/hopper_gemm_probe.py --out $OUT/probe.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
import hopper_gemm  # noqa: E402
import hopper_gemm_configs  # noqa: E402
from split_k_sweep import weight_copies  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import gemm_plan  # noqa: E402

CONFIGS = [(64, 64, 128, 1, 6, 1), (64, 128, 128, 1, 4, 0), (128, 64, 64, 1, 6, 0), (64, 128, 64, 2, 6, 0),
           (128, 128, 64, 4, 6, 0), (128, 256, 64, 4, 4, 0)]


def fit_line(ks, times) -> dict:
    """Least-squares time = fixed + per_k · K over the points: ``{"fixed_us", "us_per_1k_k", "rms_us"}``."""
    n = len(ks)
    if n < 2 or len(set(ks)) < 2:
        raise ValueError(f"fit_line: need two or more distinct K, got {list(ks)}")
    mean_k, mean_t = sum(ks) / n, sum(times) / n
    slope = sum((k - mean_k) * (t - mean_t) for k, t in zip(ks, times)) / sum((k - mean_k) ** 2 for k in ks)
    fixed = mean_t - slope * mean_k
    rms = (sum((fixed + slope * k - t) ** 2 for k, t in zip(ks, times)) / n) ** 0.5
    return {"fixed_us": fixed, "us_per_1k_k": slope * 1024, "rms_us": rms}


def reduction(M: int, N: int, K: int, config, processors: int | None = None) -> str:
    """Which split-K reduction ``reduce="auto"`` runs for the product: "none" (one slice), "spread" (the grid fits
    the SMs) or "last"."""
    launch = hopper_gemm_configs.plan_launch(M, N, K, config)
    if launch["slices"] == 1:
        return "none"
    if processors is None:
        processors = torch.cuda.get_device_properties(0).multi_processor_count
    grid = launch["grid"]
    return "spread" if grid[0] * grid[1] * grid[2] <= processors else "last"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--n", type=int, default=4096, help="product width (weight rows)")
    p.add_argument("--rows", default="128,224")
    p.add_argument("--ks", default="512,1024,2048,4096,8192,12288")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/hopper_gemm_probe.py "
           + " ".join(sys.argv[1:] if argv is None else argv), "N": args.n, "points": [], "fits": [],
           "reduction": {}}
    ks = [int(k) for k in args.ks.split(",")]
    for M in (int(r) for r in args.rows.split(",")):
        for K in ks:
            w = torch.randn(args.n, K, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02  # [N, K]
            copies = weight_copies(w)
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)  # [M, K]
            calls = {"default": lambda v: gemm_plan.run("default", x, v, None),
                     "cublaslt": lambda v: gemm_plan.run("cublaslt", x, v, None)}
            for config in CONFIGS:
                calls[str(list(config))] = lambda v, c=config: hopper_gemm.hopper_linear(x, v, None, c, reduce="auto")
                out["reduction"][f"{M} {list(config)}"] = reduction(M, args.n, K, config)
                calls[f"{list(config)} loads only"] = lambda v, c=config: hopper_gemm.hopper_linear(x, v, None, c,
                                                                                                   mma=False)
                calls[f"{list(config)} no epilogue"] = lambda v, c=config: hopper_gemm.hopper_linear(
                    x, v, None, c, epilogue=0)
                if config[3] > 1:
                    calls[f"{list(config)} last"] = lambda v, c=config: hopper_gemm.hopper_linear(x, v, None, c,
                                                                                                 reduce="last")
                    calls[f"{list(config)} partials only"] = lambda v, c=config: hopper_gemm.hopper_linear(
                        x, v, None, c, epilogue=1)
            us = gemm_plan.graph_times_us(calls, copies, rounds=args.rounds)
            out["points"].append({"rows": M, "K": K, "us": us})
            print(f"rows {M} K {K}: " + ", ".join(f"{c} {t:.1f}" for c, t in us.items()), flush=True)
            del copies
        for name in out["points"][-1]["us"]:
            pts = [pt for pt in out["points"] if pt["rows"] == M]
            fit = fit_line([pt["K"] for pt in pts], [pt["us"][name] for pt in pts])
            out["fits"].append({"rows": M, "backend": name, **fit})
            print(f"  rows {M} {name}: fixed {fit['fixed_us']:.1f} us + {fit['us_per_1k_k']:.2f} us per 1024 of K "
                  f"(rms {fit['rms_us']:.2f})", flush=True)
        bench_gpu.save(out, args.out)
    return out


if __name__ == "__main__":
    main()
