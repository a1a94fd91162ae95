"""The split-KV attention kernel's tuning knobs at the shapes the decoder gives it, on the GPU.

For each shape (a 1024-key canvas; LLaDA-8B's 32 heads and Dream-7B's 28 query / 4 key-value heads;
the query rows of a dual-cache step and of the prefix-cache windows; batch 1 unless the name says otherwise) it times every
combination of query tile (``block_m``), key slices, keys per iteration (``block_n``), warps and pipelining
stages, each replayed from a CUDA graph of 32 calls (µs per call), checks its output against an fp32 SDPA,
and reports the configuration ``split_kv_attention`` uses by default next to the fastest. For Dream's
grouped-query heads it times both layouts (``pack_gqa``: the 7 query heads of a key/value head stacked in one
program's rows, or one head per program); ``default_unpacked_us`` is the default configuration unpacked.

    python experiments/split_kv_sweep.py --out $OUT/split_kv_sweep.json
    python experiments/split_kv_sweep.py --shapes "dream dual,dream prefix 97" --warps 4 --stages 3 --block-n 64,128
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
from fastdllm.kernels.split_kv_attention import split_kv_attention  # noqa: E402

SHAPES = [  # name, query heads, key/value heads, query rows, batch
    ("llada dual", 32, 32, 32, 1), ("dream dual", 28, 4, 33, 1), ("llada prefix 64", 32, 32, 64, 1),
    ("llada prefix 128", 32, 32, 128, 1), ("dream prefix 65", 28, 4, 65, 1), ("dream prefix 97", 28, 4, 97, 1),
    ("dream prefix 129", 28, 4, 129, 1), ("dream prefix 193", 28, 4, 193, 1), ("dream prefix 257", 28, 4, 257, 1),
    ("llada prefix 256", 32, 32, 256, 1), ("dream b4 dual", 28, 4, 33, 4), ("dream b16 dual", 28, 4, 33, 16),
    ("dream b32 dual", 28, 4, 33, 32), ("llada b4 dual", 32, 32, 32, 4),
    ("dream b16 prefix 65", 28, 4, 65, 16), ("dream b16 prefix 97", 28, 4, 97, 16),  # not measured yet (a 60 s run of
    ("dream b16 prefix 129", 28, 4, 129, 16),  # the three at c21b536 was cut compiling): the packed rule stops at 64 rows
]
KEYS, D = 1024, 128


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--shapes", default=",".join(name for name, *_ in SHAPES), help="comma-separated names of SHAPES")
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    p.add_argument("--block-m", type=ints, default=[16, 32, 64])
    p.add_argument("--splits", type=ints, default=[2, 4, 8])
    p.add_argument("--block-n", type=ints, default=[32, 64, 128])
    p.add_argument("--warps", type=ints, default=[2, 4, 8])
    p.add_argument("--stages", type=ints, default=[2, 3])
    p.add_argument("--packs", default="both", choices=("both", "packed", "unpacked"),
                   help="the layouts swept for grouped-query shapes")
    args = p.parse_args()
    wanted = args.shapes.split(",")
    unknown = sorted(set(wanted) - {name for name, *_ in SHAPES})
    if unknown:
        p.error(f"--shapes: unknown {unknown}; choose from {[name for name, *_ in SHAPES]}")
    t0 = time.time()
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/split_kv_sweep.py " + " ".join(sys.argv[1:]), "shapes": []}
    for name, H, H_kv, m, B in (shape for shape in SHAPES if shape[0] in wanted):
        q = torch.randn(B, m, H, D, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2)  # the model's layout
        keys = torch.randn(B, H_kv, KEYS, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        values = torch.randn_like(keys)
        ref = F.scaled_dot_product_attention(q.float(), keys.float(), values.float(), enable_gqa=H != H_kv)
        row = {"shape": name, "batch": B, "heads": H, "kv_heads": H_kv, "query_rows": m, "keys": KEYS,
               "sdpa_us": graph_time_us(lambda: F.scaled_dot_product_attention(q, keys, values, enable_gqa=H != H_kv)),
               "default_us": graph_time_us(lambda: split_kv_attention(q, keys, values)), "configs": {}}
        packs = ((False, True) if H != H_kv else (False,))
        packs = [pack for pack in packs if H == H_kv or args.packs == "both" or pack == (args.packs == "packed")]
        if H != H_kv:
            row["default_unpacked_us"] = graph_time_us(lambda: split_kv_attention(q, keys, values, pack_gqa=False))
        for pack, block_m, splits, block_n, warps, stages in itertools.product(
                packs, args.block_m, args.splits, args.block_n, args.warps, args.stages):
            rows = m * H // H_kv if pack else m  # a program's rows
            if block_m >= 2 * rows and block_m > 32 or block_m < 32 and rows > 4 * block_m:
                continue
            key = f"{'packed ' if pack else ''}m{block_m} s{splits} n{block_n} w{warps} st{stages}"
            fn = lambda: split_kv_attention(q, keys, values, None, splits, block_m, warps, block_n, stages,  # noqa: E731
                                            pack_gqa=pack)
            try:
                diff = (fn().float() - ref).abs().max().item()
                row["configs"][key] = graph_time_us(fn) if diff < 0.05 else f"wrong: max abs diff {diff}"
            except Exception as err:  # noqa: BLE001 - e.g. out of shared memory or registers: not a candidate
                row["configs"][key] = f"{type(err).__name__}: {str(err)[:60]}"
        ranked = sorted((us, k) for k, us in row["configs"].items() if isinstance(us, float))
        row["best"] = [{"config": k, "us": us} for us, k in ranked[:5]]
        out["shapes"].append(row)
        print(name, "sdpa", round(row["sdpa_us"], 1), "default", round(row["default_us"], 1),
              "default unpacked", round(row.get("default_unpacked_us", row["default_us"]), 1),
              "best", [(b["config"], round(b["us"], 1)) for b in row["best"][:3]], flush=True)
        bench_gpu.save(out, args.out)
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
