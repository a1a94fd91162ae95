"""Each projection's GEMM backend chosen inside a prefix-cache window's forward, not alone.

``tune_gemms`` times each backend on a CUDA graph of one product per layer, alone; beyond 128 rows the
choices timed that way made LLaDA's prefix windows slower in context (docs/speed.md, round 7), so cuBLASLt's
ranked candidates are not offered there (``gemm_plan.LT_MAX_ROWS``) and those windows run what cuBLAS's
heuristic picks. This probe asks whether any candidate is faster *in the window*: for every prefix window of
more than ``--min-rows`` rows and every projection shape, it puts each candidate (cuBLAS, cuBLASLt, and the
first ``--max-lt`` of cuBLASLt's ranked candidates, whatever the row count) in the plan for that shape at that
row count alone, captures the window's forward again, and times it replayed from its graph, in ``--rounds``
interleaved rounds (the median round per candidate). The ``tuned`` plan is the baseline.

    python experiments/prefix_forwards.py ... # the windows' times against their floors
    python experiments/window_gemm_probe.py --family llada --out $OUT/window_gemm_llada.json

On the CPU (``--small --device cpu``, what the test runs) there are no graphs and every backend is
``F.linear``: the flow runs, the times mean nothing.
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
from prefix_forwards import windows  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import gemm_plan  # noqa: E402


def candidates(key: tuple, weight: torch.Tensor, bias: torch.Tensor | None, max_lt: int) -> list[str]:
    """The backends to try for one plan key: what the plan holds now first, then cuBLAS, cuBLASLt and the first
    ``max_lt`` ranked cuBLASLt candidates (none off CUDA)."""
    device, dtype, rows, N, K, _ = key
    x = torch.empty(rows, K, dtype=dtype, device=device)  # [rows, K]: only its shape is read
    ranked = gemm_plan.lt_candidates(x, weight, bias)[:max_lt]
    names = [gemm_plan.plan().get(key, "default"), "default", "cublas", "cublaslt", *ranked]
    return list(dict.fromkeys(names))


def time_forward(model, step, repeats: int) -> float:
    """ms per call of ``step`` after the graphs were dropped: three calls to capture and warm, then ``repeats``."""
    model._recapture()
    for _ in range(3):
        step()
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    if cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeats


def probe(model, args) -> list[dict]:
    """One record per (window, projection shape): ms per candidate (median of the rounds), the baseline's
    backend and ms, the fastest and its gain over the baseline."""
    P, G, B = args.prompt_length, args.gen_length, args.block_length
    L = P + G
    all_windows = windows(model, P, G, B)
    if args.mode in bench_gpu.TUNED_MODES and model.device.type == "cuda":
        model.tune_gemms(sorted({end - start for _, start, end, _ in all_windows} | {B}))  # the tuned mode's plan
    shapes = {}
    for weight, bias in model.net.products()[:-1]:  # the LM head runs on the block's rows only
        shapes.setdefault((weight.shape[0], weight.shape[1], bias is not None), (weight.detach(), bias))
    canvas = torch.randint(0, model.mask_token_id, (1, L), generator=torch.Generator().manual_seed(2)).to(model.device)  # [1, L]
    canvas[:, P:] = model.mask_token_id
    position_ids = torch.arange(L, device=model.device)[None]  # [1, L]
    store = model.new_kv_store(1, L)
    device = str(canvas.device) if canvas.device.type != "cuda" else f"cuda:{torch.cuda.current_device()}"
    records = []
    with torch.inference_mode():
        model.forward_step(canvas, 0, L, store, position_ids, None, P, P + B)  # fill the store
        for block, start, end, first in all_windows:
            rows = end - start
            if rows <= args.min_rows:
                continue

            def step(start=start, end=end, first=first):
                return model.forward_step(canvas, start, end, store, position_ids, None, first, first + B)

            for (N, K, has_bias), (weight, bias) in shapes.items():
                key = (device, model.dtype, rows, N, K, has_bias)
                base = gemm_plan.plan().get(key, "default")
                names = candidates(key, weight, bias, args.max_lt)
                times: dict[str, list[float]] = {n: [] for n in names}
                try:
                    for _ in range(args.rounds):
                        for name in names:
                            gemm_plan._choose(key, name)
                            times[name].append(time_forward(model, step, args.forward_repeats))
                finally:
                    gemm_plan._choose(key, base)
                ms = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
                best = min(ms, key=ms.get)
                record = {"block": block, "rows": rows, "N": N, "K": K, "bias": has_bias, "baseline": base,
                          "baseline_ms": ms[base], "ms": ms, "best": best,
                          "gain": 1 - ms[best] / ms[base], "spread": {n: [min(t), max(t)] for n, t in times.items()}}
                records.append(record)
                print(f"{rows:4d} rows {N}x{K}{'+bias' if has_bias else ''}: baseline {base} {ms[base]:.3f} ms, "
                      f"best {best} {ms[best]:.3f} ms ({100 * record['gain']:+.1f} %)", flush=True)
            model._recapture()
    return records


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_gpu.model_arguments(p)
    p.add_argument("--mode", default="tuned", help="the bench_gpu.py mode whose plan is the baseline")
    p.add_argument("--min-rows", type=int, default=gemm_plan.LT_MAX_ROWS, help="probe windows of more rows")
    p.add_argument("--max-lt", type=int, default=8, help="ranked cuBLASLt candidates tried per shape")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--forward-repeats", type=int, default=15)
    bench_gpu.canvas_arguments(p)
    args = p.parse_args(argv)
    if args.mode not in bench_gpu.MODES:
        raise SystemExit(f"--mode {args.mode!r}: choose one of {', '.join(bench_gpu.MODES)}")
    if args.rounds < 1 or args.forward_repeats < 1:
        raise SystemExit(f"--rounds {args.rounds} and --forward-repeats {args.forward_repeats} must be at least 1")
    t0 = time.time()
    model = bench_gpu.build_model(args.family, args.small, args.device, torch.bfloat16 if args.device == "cuda" else torch.float32)
    mode = args.mode if args.device == "cuda" or args.mode not in bench_gpu.CUDA_MODES else "fused"
    bench_gpu.set_mode(model, mode)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/window_gemm_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "mode": mode, "records": probe(model, args), "seconds": None}
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)
    return out


if __name__ == "__main__":
    main()
