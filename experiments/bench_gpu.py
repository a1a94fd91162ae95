"""Speed of the decoder at full LLaDA-8B (or Dream-7B) shape on one GPU, against the physical floors measured in the same run.

Random bf16 weights at LLaDA-8B's shapes: with fixed-k unmasking the work of every forward does not
depend on the weights, so the figures are honest speed figures (BENCHMARKS.md). The settings are
those of the reference-implementation table in BENCHMARKS.md: batch 1, prompt 768, 256 generated,
block 32, k = 1 and 4 tokens per step, caches none / prefix / dual. Wall time is ``generate``'s own
(device synchronised), the median of ``--repeats`` runs after one warm-up.

    python experiments/bench_gpu.py --out results/gpu_llada8b.json          # on the GPU machine
    python experiments/bench_gpu.py --small --device cpu --repeats 1        # a CPU smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.evaluation import torch_info


def build_model(family: str, small: bool, device: str, dtype: torch.dtype) -> fastdllm.DiffusionLM:
    """LLaDA-8B's or Dream-7B's config (or a tiny one with ``small``), random weights (matrices N(0, 0.02²),
    norms 1, biases 0), built on ``device``."""
    from fastdllm.models.dream import dream_config

    if family == "llada":
        overrides = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=128, vocab_size=512,
                         mask_token_id=500, eos_token_id=1, pad_token_id=1) if small else {}
        config = fastdllm.llada_config(**overrides)
    else:
        overrides = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=512, max_position_embeddings=4096, mask_token_id=500,
                         eos_token_id=1, pad_token_id=1) if small else {}
        config = dream_config(**overrides)
    with torch.device("meta"):
        model = fastdllm.model_adapters.get(family)(config)
    model.to(dtype=dtype).to_empty(device=device)
    model.net.reset_rope()
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    return model.eval()


def ceilings(device: str) -> dict[str, float]:
    """Device copy bandwidth (bytes read + written per second) and bf16 matmul rate, measured now."""
    if device != "cuda":
        return {}
    x = torch.empty(2**30, dtype=torch.uint8, device=device)  # 1 GiB
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)

    def timed(fn, n: int) -> float:
        fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    copy_s = timed(lambda: y.copy_(x), 20)
    mm_s = timed(lambda: a @ b, 20)
    return {"copy_bytes_per_s": 2 * x.numel() / copy_s, "matmul_flop_per_s": 2 * 8192**3 / mm_s}


def run_setting(model, prompt, cache: str, k: int, gen_length: int, block_length: int, repeats: int,
                graphs: bool) -> dict:
    model.use_cuda_graphs(graphs)
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": gen_length // k},
                                        gen_length=gen_length, block_length=block_length)
    warmup = decoder.generate(prompt)  # warm-up; with graphs it captures them (replayed by the runs below)
    runs = [decoder.generate(prompt) for _ in range(repeats)]
    wall = statistics.median(r.wall_time_s for r in runs)
    first = runs[0]
    assert all(torch.equal(r.sequences, first.sequences) for r in runs), "decoding is not deterministic"
    model.use_cuda_graphs(False)
    return {"cache": cache, "tokens_per_step": k, "cuda_graphs": graphs, "nfe": first.nfe, "refresh_forwards": first.refresh_forwards,
            "wall_s": wall, "walls_s": [r.wall_time_s for r in runs], "warmup_wall_s": warmup.wall_time_s,
            "tokens_per_s": prompt.shape[0] * gen_length / wall, "ms_per_forward": 1000 * wall / first.nfe,
            "tokens_sha1": hashlib.sha1(first.sequences.cpu().numpy().tobytes()).hexdigest()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--family", choices=["llada", "dream"], default="llada", help="LLaDA-8B or Dream-7B shapes")
    p.add_argument("--small", action="store_true", help="a tiny model (CPU smoke runs)")
    p.add_argument("--prompt-length", type=int, default=768)
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ks", default="1,4", help="tokens per step to run, comma-separated")
    p.add_argument("--caches", default="none,prefix,dual", help="cache policies to run, comma-separated")
    args = p.parse_args(argv)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = build_model(args.family, args.small, args.device, dtype)
    params = sum(t.numel() for t in model.parameters())
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.mask_token_id, (args.batch, args.prompt_length), generator=gen)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d"), "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/bench_gpu.py "
           + " ".join(sys.argv[1:] if argv is None else argv), "model": "tiny" if args.small else
           f"{'LLaDA-8B' if args.family == 'llada' else 'Dream-7B'} shape, random weights", "family": args.family,
           "params": params, "dtype": str(dtype), "batch": args.batch, "prompt_length": args.prompt_length,
           "gen_length": args.gen_length, "block_length": args.block_length, "ceilings": ceilings(args.device),
           "rows": []}
    if out["ceilings"]:
        weight_bytes = params * dtype.itemsize
        canvas = args.prompt_length + args.gen_length
        # BENCHMARKS.md's floors: weight bytes / copy bandwidth (read + written), 2 * params * tokens / matmul rate
        out["floors_ms"] = {"weight_read": 1000 * weight_bytes / out["ceilings"]["copy_bytes_per_s"],
                            "full_canvas_forward": 1000 * 2 * params * canvas * args.batch
                            / out["ceilings"]["matmul_flop_per_s"]}
    modes = (False, True) if args.device == "cuda" else (False,)
    for k in (int(k) for k in args.ks.split(",")):
        for cache in args.caches.split(","):
            for graphs in modes:
                row = run_setting(model, prompt, cache, k, args.gen_length, args.block_length, args.repeats, graphs)
                out["rows"].append(row)
                print(f"{cache:>6} k={k} graphs={graphs!s:5}: NFE {row['nfe']:4d}  {row['tokens_per_s']:8.1f} tok/s  "
                      f"{row['ms_per_forward']:6.2f} ms/forward", flush=True)
            if graphs:  # the optimisation must not change a token
                eager, graphed = out["rows"][-2:]
                graphed["tokens_equal_eager"] = graphed["tokens_sha1"] == eager["tokens_sha1"]
    for row in out["rows"]:  # a cached forward's time, given that a refresh costs what a `none` forward costs
        refresh_ms = next((r["ms_per_forward"] for r in out["rows"] if r["cache"] == "none"
                           and r["tokens_per_step"] == row["tokens_per_step"]
                           and r["cuda_graphs"] == row["cuda_graphs"]), None)
        if refresh_ms is None:
            continue
        cached = row["nfe"] - row["refresh_forwards"]
        row["cached_ms_per_forward"] = ((1000 * row["wall_s"] - refresh_ms * row["refresh_forwards"]) / cached
                                        if cached else None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
