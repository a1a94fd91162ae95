"""Does prefetching the output projection's weight into L2 during the attention make a forward faster?

At a family's full shape with random bf16 weights, in ``bench_gpu.py``'s ``tuned`` mode (GEMM plan timed at
the row counts below), this script captures one CUDA graph per (forward, prefetch variant) and replays them in
interleaved rounds (the median per variant), then decodes with the fastest variant against none:

- forwards: a dual-cache block step (32 rows; Dream 33) and prefix-cache windows (``--windows`` rows);
- variants: none; ``DiffusionLM.use_l2_prefetch`` with each PTX prefetch kind and ``mlp_bytes`` of the gate/up
  weight after the output projection's (``fastdllm.kernels.l2_prefetch``);
- decodes: ``bench_gpu.run_setting`` (dual k=1, k=4, prefix k=4), tokens compared with prefetch off.

    python experiments/l2_prefetch_probe.py --family llada --out $OUT/l2_prefetch_llada.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.models.cuda_graphs import CudaGraphSteps  # noqa: E402

MB = 2**20
VARIANTS = {  # name: use_l2_prefetch options (None: off)
    "off": None,
    "line": {"kind": "line"},
    "line_evict_last": {"kind": "line_evict_last"},
    "bulk": {"kind": "bulk"},
    "line_p64": {"kind": "line", "programs": 64},
    "line+mlp8MB": {"kind": "line", "mlp_bytes": 8 * MB},
    "line+mlp16MB": {"kind": "line", "mlp_bytes": 16 * MB},
}


def set_variant(model, options) -> None:
    """Prefetch options set on the network without dropping the captured graphs (each variant keeps its own)."""
    model.use_l2_prefetch(False)
    if options is not None:
        model.use_l2_prefetch(True, **options)


def time_forwards(model, args, floors) -> list[dict]:
    P, G, blk, shift = args.prompt_length, args.gen_length, args.block_length, model.logit_shift
    L = P + G
    device = model.device
    canvas = torch.randint(0, model.mask_token_id, (1, L), generator=torch.Generator().manual_seed(2)).to(device)
    canvas[:, P:] = model.mask_token_id
    position_ids = torch.arange(L, device=device)[None]  # [1, L]
    store = model.new_kv_store(1, L)
    shapes = [("dual", P - shift, P + blk, P)] + [
        (f"prefix{rows}", L - rows - shift, L, L - rows) for rows in args.windows]
    out = []
    with torch.inference_mode():
        model.forward_step(canvas, 0, L, store, position_ids, None, P, P + blk)  # fill the store
        for kind, start, end, first in shapes:
            steps, logits = {}, {}
            for name in args.variants:
                set_variant(model, VARIANTS[name])
                graphs = model.cuda_graphs = CudaGraphSteps(model) if args.graphs else None
                for _ in range(3):  # capture, compile, warm
                    logits[name] = model.forward_step(canvas, start, end, store, position_ids, None, first,
                                                      first + blk).clone()
                steps[name] = graphs
            times = {name: [] for name in args.variants}
            for _ in range(args.rounds):
                for name in args.variants:
                    model.cuda_graphs = steps[name]
                    set_variant(model, VARIANTS[name]) if not args.graphs else None
                    bench_gpu._sync(device)
                    t0 = time.perf_counter()
                    for _ in range(args.forward_repeats):
                        model.forward_step(canvas, start, end, store, position_ids, None, first, first + blk)
                    bench_gpu._sync(device)
                    times[name].append(1000 * (time.perf_counter() - t0) / args.forward_repeats)
            floor = floors.forward_s(end - start)
            row = {"kind": kind, "rows": end - start, "floor_ms": None if floor is None else 1000 * floor,
                   "ms": {name: statistics.median(t) for name, t in times.items()}, "ms_rounds": times,
                   "logits_equal_off": {name: bool(torch.equal(logits[name], logits["off"])) for name in args.variants}}
            out.append(row)
            print(kind, end - start, {n: round(v, 3) for n, v in row["ms"].items()}, flush=True)
    set_variant(model, None)
    model.use_cuda_graphs(args.graphs)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada")
    p.add_argument("--small", action="store_true", help="a tiny model on the CPU (a smoke run: prefetch is a no-op)")
    p.add_argument("--prompt-length", type=int, default=768)
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--windows", default="192,128", help="prefix-cache window rows to time (comma-separated)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--forward-repeats", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2, help="decodes per setting")
    p.add_argument("--decodes", default="dual:1,dual:4,prefix:4", help="cache:k settings decoded off and on")
    args = p.parse_args(argv)
    args.windows = [int(w) for w in args.windows.split(",") if w]
    args.variants = ["off"] + [v for v in args.variants.split(",") if v and v != "off"]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    device = "cpu" if args.small else "cuda"
    args.graphs = device == "cuda"
    dtype = torch.bfloat16 if args.graphs else torch.float32
    model = bench_gpu.build_model(args.family, args.small, device, dtype)
    params = sum(t.numel() for t in model.parameters())
    ceil = bench_gpu.ceilings(device)
    floors = bench_gpu.Floors(params, params * dtype.itemsize, ceil)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/l2_prefetch_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "ceilings": ceil, "variants": {v: VARIANTS[v] for v in args.variants}}
    mode = "tuned" if args.graphs else "eager"
    bench_gpu.set_mode(model, mode)
    if args.graphs:
        blk, shift = args.block_length, model.logit_shift
        out["tuned_rows"] = sorted({blk, blk + shift, *(w + shift for w in args.windows)})
        model.tune_gemms(out["tuned_rows"])
    out["forwards"] = time_forwards(model, args, floors)
    best = min((row["ms"][v], v) for row in out["forwards"][:1] for v in args.variants if v != "off")[1] \
        if len(args.variants) > 1 else "off"
    out["decode_variant"] = best
    out["decodes"] = []
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.mask_token_id, (1, args.prompt_length), generator=gen).to(device)
    for setting in args.decodes.split(","):
        cache, k = setting.split(":")
        tokens = None
        for name in ("off", best, "off", best):
            set_variant(model, VARIANTS[name])
            row, seq = bench_gpu.run_setting(model, prompt, cache, int(k), args, mode, floors, tokens)
            tokens = seq if tokens is None else tokens
            row["variant"] = name
            out["decodes"].append(row)
            print(cache, k, name, round(row["tokens_per_s"], 1), "tok/s", round(row.get("floor_ratio") or 0, 3),
                  "x floor", "tokens equal" if row.get("tokens_equal_plain", True) else "TOKENS DIFFER", flush=True)
    set_variant(model, None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        import json

        Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
