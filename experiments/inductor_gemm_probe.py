"""Inductor's Triton GEMM templates against cuBLAS, at the row counts of the prefix-cache windows.

The middle prefix windows (129-257 rows) are the decodes' worst ratio to their floor: their products sit near the
H200's ridge point, and cuBLAS runs the narrow ones (output and down projections) at 58-76 % of the matmul rate.
``tune_gemms`` only chooses among cuBLAS, cuBLASLt and the few-row kernel. This probe asks whether a Triton GEMM
does better there: for each projection shape of the model (fused q/k/v and gate/up) and each row count, it
compiles ``F.linear`` with ``torch.compile(mode="max-autotune-no-cudagraphs")`` restricted to Inductor's Triton
templates (``--persistent`` adds the persistent TMA ones), then times the compiled product against the default
(cuBLAS) and cuBLASLt on CUDA graphs of one product per layer's weight (every weight read from DRAM, as in a
forward: ``gemm_plan.graph_times_us``). Inductor's own autotuning table (its timings repeat one weight, so L2
flatters them) goes to stderr.

    python experiments/inductor_gemm_probe.py --family llada --rows 160,192,224,256 --out $OUT/inductor_gemm_llada.json

On the CPU (``--small --device cpu``) every backend is ``F.linear`` and nothing is compiled: the flow runs, the
times mean nothing.
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

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import gemm_plan  # noqa: E402


def shape_groups(model) -> dict[tuple, tuple[list[torch.Tensor], list[torch.Tensor | None]]]:
    """(N, K, has bias) -> (the layers' weights of that shape, their biases), the LM head left out (it runs on
    the block's rows only)."""
    groups: dict[tuple, tuple[list, list]] = {}
    for weight, bias in model.net.products()[:-1]:
        ws, bs = groups.setdefault((weight.shape[0], weight.shape[1], bias is not None), ([], []))
        ws.append(weight.detach())
        bs.append(bias)
    return groups


def compiled_linear(persistent: bool):
    """A fresh ``torch.compile``d ``F.linear`` (one per shape, so no dynamo cache limit is reached), autotuned
    over Inductor's Triton templates only."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)  # one code object, a fresh compile per call
    inductor_config.max_autotune_gemm_backends = "TRITON"
    inductor_config.triton.enable_persistent_tma_matmul = persistent

    def linear(x, w, b):
        return F.linear(x, w, b)

    return torch.compile(linear, mode="max-autotune-no-cudagraphs", dynamic=False, fullgraph=True)


def probe(model, args) -> list[dict]:
    records = []
    cuda = model.device.type == "cuda"
    started = time.time()
    groups = shape_groups(model)
    order = sorted(groups, key=lambda s: args.shapes.index(f"{s[0]}x{s[1]}") if f"{s[0]}x{s[1]}" in args.shapes else len(args.shapes))
    for N, K, has_bias in order:
        weights, biases = groups[(N, K, has_bias)]
        if args.shapes and f"{N}x{K}" not in args.shapes:
            continue
        pairs = dict(zip((id(w) for w in weights), biases))
        for rows in args.rows:
            if time.time() - started > args.budget_s:
                print(f"budget of {args.budget_s} s spent: stopping before {rows} rows of {N}x{K}", flush=True)
                return records
            x = torch.randn(rows, K, dtype=weights[0].dtype, device=weights[0].device)  # [rows, K]
            calls = {b: (lambda w, b=b: gemm_plan.run(b, x, w, pairs[id(w)])) for b in ("default", "cublaslt")}
            compile_s = 0.0
            if cuda:
                t0 = time.time()
                fn = compiled_linear(args.persistent)
                with torch.no_grad():
                    expected = F.linear(x.float(), weights[0].float(), None if pairs[id(weights[0])] is None else pairs[id(weights[0])].float())
                    got = fn(x, weights[0], pairs[id(weights[0])])
                compile_s = time.time() - t0
                err = (got.float() - expected).abs().max().item()
                calls["inductor"] = lambda w, fn=fn: fn(x, w, pairs[id(w)])
            else:
                err = 0.0
            with torch.no_grad():
                us = gemm_plan.graph_times_us(calls, weights, rounds=args.rounds) if cuda else {b: 0.0 for b in calls}
            flop = 2 * rows * N * K
            record = {"rows": rows, "N": N, "K": K, "bias": has_bias, "us": us, "compile_s": compile_s,
                      "inductor_max_abs_err_vs_fp32": err,
                      "tflops": {b: flop / t / 1e6 for b, t in us.items() if t > 0}}
            records.append(record)
            print(f"{rows:4d} x {N}x{K}{'+bias' if has_bias else ''}: " +
                  ", ".join(f"{b} {t:.1f} us" for b, t in us.items()) + f"  (compile {compile_s:.0f} s, err {err:.3g})",
                  flush=True)
    return records


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_gpu.model_arguments(p)
    p.add_argument("--rows", default="160,192,224,256", help="row counts, comma-separated")
    p.add_argument("--shapes", default="", help="only these N x K shapes, in this order, e.g. 4096x4096,4096x12288 (default: all)")
    p.add_argument("--persistent", action="store_true", help="also offer Inductor's persistent TMA templates")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget-s", type=float, default=480, help="start no new product (shape × row count) after this many seconds")
    args = p.parse_args(argv)
    args.rows = [int(r) for r in args.rows.split(",") if r]
    args.shapes = [s for s in args.shapes.split(",") if s]
    if not args.rows or min(args.rows) < 1:
        raise SystemExit(f"--rows {args.rows}: give positive row counts")
    t0 = time.time()
    model = bench_gpu.build_model(args.family, args.small, args.device, torch.bfloat16 if args.device == "cuda" else torch.float32)
    model.fuse_projections(True)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/inductor_gemm_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "persistent": args.persistent, "records": probe(model, args), "seconds": None}
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)
    return out


if __name__ == "__main__":
    main()
