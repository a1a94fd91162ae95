"""The round-4 kernels against what they replace, one at a time, on the GPU.

- GEMMs of a batch-1 cached step (32 or 33 rows times each LLaDA-8B / Dream-7B weight matrix): cuBLAS
  (``F.linear``) against the few-row Triton GEMM (``fastdllm.kernels.skinny_matmul``): every candidate
  configuration by ``triton.testing.do_bench`` (L2 flushed before each call), then cuBLAS against the
  configuration ``config_for`` picks (cuBLAS itself below ``MIN_COLUMNS``) back to back in a CUDA graph, each
  call reading another copy of the weight (as a forward's layers do); against the weight's read time at the
  copy bandwidth measured here, and the max relative difference from an fp32 product.
- With ``--fp8``: the same GEMMs with the weight in fp8 (``fastdllm.kernels.fp8_weights``: e4m3, a scale per
  output row) through the few-row kernel, in several configurations, against the bf16 path a forward runs
  (the rule: few-row kernel or cuBLAS) and against the fp8 weight's read time; the relative error of each
  against the fp32 product with the bf16 weight (what the rounding costs) and with the dequantized weight; and the
  same configurations with x given in fp16 (``fp8_fp16x_us``: e4m3 widens to fp16 in one conversion, where bf16
  takes a second; the products are the same wherever x is a normal fp16 number).
- The greedy proposal over ``[rows, V]`` bf16 logits: PyTorch's path (``propose`` on the CPU branch: float copy,
  argmax, log-sum-exp, gather) against the fused kernel (``fastdllm.kernels.greedy_proposal``); token equality
  and the confidence's max relative difference.

The proposal timings replay a CUDA graph of ``calls`` calls, so launch costs are excluded as in the decoder
(µs per call).

    python experiments/bench_kernels.py --out $OUT/kernels.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
from bench_attention import graph_time_us  # noqa: E402  (µs per call replayed from a CUDA graph)

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels.fp8_weights import FP8_CONFIG, dequantize_rows, fp8_linear, quantize_rows  # noqa: E402
from fastdllm.kernels.greedy_proposal import greedy_proposal  # noqa: E402
from fastdllm.kernels.skinny_matmul import CANDIDATES, config_for, linear, skinny_linear  # noqa: E402

GEMMS = [  # name, rows, N (outputs), K (inputs)
    ("llada qkv", 32, 3 * 4096, 4096), ("llada o_proj", 32, 4096, 4096), ("llada gate_up", 32, 2 * 12288, 4096),
    ("llada down", 32, 4096, 12288), ("llada lm_head", 32, 126464, 4096),
    ("dream qkv", 33, 3584 + 2 * 512, 3584), ("dream o_proj", 33, 3584, 3584), ("dream gate_up", 33, 2 * 18944, 3584),
    ("dream down", 33, 3584, 18944), ("dream lm_head", 32, 152064, 3584),
]


def copy_bandwidth() -> float:
    """Bytes read + written per second by an eager 1 GiB device copy (``bench_gpu.ceilings``, the rate every floor
    in the speed results uses). Up to the h200_f29b229 run this timed the copy replayed from a CUDA graph, where it is a
    memcpy node, which read 2.44 TB/s on the H100 and 2.72 on the H200 against 2.99 / 4.19 eager: the
    ``weight_read_us`` and floor ratios of earlier ``kernels.json`` files are too slow a floor by that factor."""
    return bench_gpu.ceilings("cuda")["copy_bytes_per_s"]


def gemms(bandwidth: float) -> list[dict]:
    """Each shape: cuBLAS and every candidate configuration, timed by ``triton.testing.do_bench`` (the L2 cache
    flushed before every call, as a forward's weights are never L2-resident), and the choice ``skinny_linear`` makes."""
    from triton.testing import do_bench

    gen = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for name, M, N, K in GEMMS:
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) / K ** 0.5
        ref = F.linear(x.float(), w.float())
        scale = ref.abs().max().item()
        floor_us = N * K * 2 / bandwidth * 1e6
        row = {"gemm": name, "rows": M, "N": N, "K": K, "weight_read_us": floor_us,
               "cublas_us": 1000 * do_bench(lambda: F.linear(x, w), warmup=10, rep=50),
               "cublas_rel_diff": (F.linear(x, w).float() - ref).abs().max().item() / scale, "candidates_us": {}}
        for config in CANDIDATES:
            try:
                row["candidates_us"][str(list(config))] = 1000 * do_bench(
                    lambda c=config: skinny_linear(x, w, config=c), warmup=10, rep=50)
            except Exception as err:  # noqa: BLE001 - e.g. more shared memory than the GPU has: not a candidate
                row["candidates_us"][str(list(config))] = f"{type(err).__name__}: {str(err)[:100]}"
        config = config_for(N, K)
        row["rule"] = str(config)
        row["skinny_rel_diff"] = (skinny_linear(x, w).float() - ref).abs().max().item() / scale
        # as in a forward: back to back in a CUDA graph, each call reading a different copy of the weight
        copies = [w] + [w.clone() for _ in range(max(2, int(4e8 // (N * K * 2))))]
        turn = iter(range(10 ** 9))
        row["graph_cublas_us"] = graph_time_us(lambda: F.linear(x, copies[next(turn) % len(copies)]), len(copies))
        row["graph_rule_us"] = graph_time_us(lambda: skinny_linear(x, copies[next(turn) % len(copies)]), len(copies))
        row["cublas_floor_ratio"] = row["graph_cublas_us"] / floor_us
        row["rule_floor_ratio"] = row["graph_rule_us"] / floor_us
        del copies
        out.append(row)
        print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "gemm"}, flush=True)
    return out


FP8_CANDIDATES = (FP8_CONFIG, (32, 256, 3, 4), (16, 256, 4, 4), (16, 512, 3, 4), (64, 256, 4, 4), (128, 256, 3, 8),
                  (64, 512, 3, 4), (32, 512, 3, 4), (64, 256, 3, 8), (64, 128, 4, 4), (128, 128, 4, 8), (64, 256, 5, 4))


def fp8_gemms(bandwidth: float) -> list[dict]:
    """Each shape's bf16 path (``linear``: what a forward runs, the few-row kernel or cuBLAS) against fp8 weights through the few-row kernel, in CUDA
    graphs over rotating weight copies (µs per call)."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for name, M, N, K in GEMMS:
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) / K ** 0.5
        w8, scale = quantize_rows(w)
        exact, dequantized = F.linear(x.float(), w.float()), F.linear(x.float(), dequantize_rows(w8, scale, torch.float32))
        top = exact.abs().max().item()
        n_copies = max(2, int(4e8 // (N * K * 2)))
        copies = [w] + [w.clone() for _ in range(n_copies)]
        copies8 = [(w8, scale)] + [(w8.clone(), scale.clone()) for _ in range(n_copies)]
        turn = iter(range(10 ** 9))
        row = {"gemm": name, "rows": M, "N": N, "K": K, "bf16_read_us": N * K * 2 / bandwidth * 1e6,
               "fp8_read_us": N * K / bandwidth * 1e6,
               "bf16_rule_us": graph_time_us(lambda: linear(x, copies[next(turn) % len(copies)]), len(copies)),
               "fp8_us": {}}
        del copies
        # fp16 x (converted before the timing): the kernel widens e4m3 to fp16 in one conversion, not fp16 then bf16
        x16, row["fp8_fp16x_us"] = x.half(), {}
        for config in FP8_CANDIDATES:
            for key, xin in (("fp8_us", x), ("fp8_fp16x_us", x16)):
                try:
                    row[key][str(list(config))] = graph_time_us(
                        lambda c=config, xin=xin: fp8_linear(xin, *copies8[next(turn) % len(copies8)], config=c),
                        len(copies8))
                except Exception as err:  # noqa: BLE001 - e.g. out of shared memory: not a candidate
                    row[key][str(list(config))] = f"{type(err).__name__}: {str(err)[:80]}"
        y16 = fp8_linear(x16, w8, scale, out_dtype=torch.bfloat16).float()  # bf16 out, as y: the same bits expected
        y = fp8_linear(x, w8, scale).float()
        row["fp8_rel_diff_vs_bf16_weight"] = (y - exact).abs().max().item() / top
        row["fp8_rel_diff_vs_dequantized"] = (y - dequantized).abs().max().item() / top
        row["fp8_fp16x_rel_diff_vs_dequantized"] = (y16 - dequantized).abs().max().item() / top
        row["fp8_fp16x_max_abs_diff_vs_bf16x"] = (y16 - y).abs().max().item()  # 0 where x is normal in fp16
        row["bf16_rel_diff"] = (linear(x, w).float() - exact).abs().max().item() / top
        timed = [(us, c) for c, us in row["fp8_us"].items() if isinstance(us, float)]
        if timed:
            best_us, best = min(timed)
            row.update(fp8_best=best, fp8_best_us=best_us, fp8_speedup=row["bf16_rule_us"] / best_us,
                       fp8_read_ratio=best_us / row["fp8_read_us"])
        timed16 = [(us, c) for c, us in row["fp8_fp16x_us"].items() if isinstance(us, float)]
        if timed16:
            best_us, best = min(timed16)
            row.update(fp8_fp16x_best=best, fp8_fp16x_best_us=best_us, fp8_fp16x_read_ratio=best_us / row["fp8_read_us"])
        del copies8
        out.append(row)
        print("fp8", name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "gemm"},
              flush=True)
    return out


def proposals() -> list[dict]:
    from fastdllm.confidences.prob import ProbConfidence

    gen = torch.Generator(device="cuda").manual_seed(1)
    out = []
    for rows, V in ((32, 126464), (512, 126464), (32, 152064), (512, 152064)):
        logits = torch.randn(rows // 32, 32, V, device="cuda", dtype=torch.bfloat16, generator=gen) * 4
        logits[..., 5] = float("-inf")  # the mask token

        def torch_path():
            f = logits.float()
            tokens = f.argmax(-1)
            return tokens, ProbConfidence.score(f, tokens)
        want_tokens, want_conf = torch_path()
        tokens, conf = greedy_proposal(logits)
        row = {"rows": rows, "vocab": V, "logits_megabytes": logits.numel() * 2 / 1e6,
               "torch_us": graph_time_us(torch_path, 8), "fused_us": graph_time_us(lambda: greedy_proposal(logits), 8),
               "tokens_equal": bool(torch.equal(tokens, want_tokens)),
               "confidence_max_rel_diff": ((conf - want_conf).abs() / want_conf).max().item()}
        out.append(row)
        print("proposal", row, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--fp8", action="store_true", help="also the fp8-weight GEMMs")
    p.add_argument("--fp8-only", action="store_true", help="only the fp8-weight GEMMs")
    args = p.parse_args()
    t0 = time.time()
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e12:.3f} TB/s", flush=True)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/bench_kernels.py " + " ".join(sys.argv[1:]),
           "copy_bytes_per_s": bandwidth}
    if not args.fp8_only:
        out.update(proposal=proposals(), gemm=gemms(bandwidth))
    if args.fp8 or args.fp8_only:
        out["fp8_gemm"] = fp8_gemms(bandwidth)
    out["seconds"] = time.time() - t0
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
