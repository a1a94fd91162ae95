"""The RoPE + KV-write kernel against what it replaced, per layer, at the shapes of a cached step and of a prefix
window: graph-timed µs per call (CUDA graphs of 32 calls) for

- ``kv_write`` alone (the copy of round 7) and a compiled RoPE of q and k (``torch.compile`` of ``apply_rope``,
  as the layer function ran it) followed by ``kv_write``;
- ``rope_kv_write`` for each (rows per program, warps, whether the tables' second halves are read).

    python experiments/rope_write_sweep.py --out $OUT/rope_write_sweep.json    # on the GPU
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
from bench_attention import graph_time_us  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels.kv_write import kv_write  # noqa: E402
from fastdllm.kernels.rope_kv_write import rope_kv_write  # noqa: E402
from fastdllm.models.layer_functions import apply_rope, rope_tables  # noqa: E402

SHAPES = {"llada": (32, 32, 128, 5e5), "dream": (28, 4, 128, 1e6)}  # query heads, kv heads, head dim, rope theta


def sweep(family: str, n: int, L: int = 1024) -> dict:
    H, H_kv, D, theta = SHAPES[family]
    gen = torch.Generator(device="cuda").manual_seed(0)
    qkv = torch.randn(1, n, (H + 2 * H_kv) * D, device="cuda", generator=gen).bfloat16()  # [1, n, (H+2H_kv)·D]
    q, k, v = qkv.split([H * D, H_kv * D, H_kv * D], dim=-1)
    q, k, v = (t.unflatten(-1, (-1, D)).transpose(1, 2) for t in (q, k, v))  # [1, heads, n, D] views
    cos_t, sin_t = (t.cuda() for t in rope_tables(D, L, theta))
    pos = torch.arange(L - n, L, device="cuda")[None]  # [1, n]
    cos, sin = cos_t[pos].unsqueeze(1), sin_t[pos].unsqueeze(1)  # [1, 1, n, D]
    index = pos[0]
    store_k, store_v = (torch.zeros(1, H_kv, L, D, device="cuda").bfloat16() for _ in range(2))
    rope = torch.compile(lambda q, k: (apply_rope(q, cos, sin), apply_rope(k, cos, sin)))
    want_q = apply_rope(q, cos, sin)

    def compiled_then_write():
        q_rot, k_rot = rope(q, k)
        kv_write(store_k, store_v, index, k_rot, v)

    row = {"family": family, "rows": n, "kv_write_us": graph_time_us(lambda: kv_write(store_k, store_v, index, k, v)),
           "compiled_rope_and_kv_write_us": graph_time_us(compiled_then_write), "rope_kv_write_us": {}}
    for rows, warps, same in itertools.product((8, 16, 32), (1, 2, 4), (False, True)):
        def call():
            return rope_kv_write(q, k, v, cos, sin, cos, sin, store_k, store_v, index, same, rows, warps)
        exact = torch.equal(call(), want_q)
        row["rope_kv_write_us"][f"rows{rows}_warps{warps}_{'same' if same else 'both'}"] = [graph_time_us(call), exact]
    best = min(row["rope_kv_write_us"].items(), key=lambda kv: kv[1][0])
    print(family, n, {k: round(v, 2) for k, v in row.items() if isinstance(v, float)}, "best", best, flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    t0 = time.time()
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "python experiments/rope_write_sweep.py " + " ".join(sys.argv[1:]),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "rows": []}
    for family, n in (("llada", 32), ("dream", 33), ("llada", 256), ("dream", 257)):
        out["rows"].append(sweep(family, n))
        bench_gpu.save(out, args.out)
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
