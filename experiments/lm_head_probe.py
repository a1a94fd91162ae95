"""Why does the few-row kernel take longer for the LM head inside a forward than alone? (a probe, H200)

Builds the family at full shape (random bf16 weights, ``kernels`` mode, no CUDA graphs), runs one cached
dual-cache forward under ``torch.profiler`` and lists every few-row GEMM launch with its GPU time; then times
the LM head product alone on the forward's own hidden rows, replayed from a CUDA graph (one call per replay,
L2 flushed by a 256 MB write before each) and back to back.

    python experiments/lm_head_probe.py --family dream --out $OUT/lm_head_dream.json
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

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import skinny_matmul  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="dream")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from torch.profiler import ProfilerActivity, profile

    model = bench_gpu.build_model(args.family, False, "cuda", torch.bfloat16)
    bench_gpu.set_mode(model, "kernels")
    model.use_cuda_graphs(False)
    P, G, B = 768, 256, 32
    L = P + G
    canvas = torch.randint(0, model.mask_token_id, (1, L), device="cuda")  # [1, L]
    canvas[:, P:] = model.mask_token_id
    pos = torch.arange(L, device="cuda")[None]  # [1, L]
    store = model.new_kv_store(1, L)
    shift = model.logit_shift
    head = model.net.lm_head
    out = {"env": torch_info(), "commit": os.environ.get("FASTDLLM_COMMIT"), "family": args.family,
           "command": "python experiments/lm_head_probe.py " + " ".join(sys.argv[1:])}
    with torch.inference_mode():
        model.forward_step(canvas, 0, L, store, pos, None, P, P + B)
        step = lambda: model.forward_step(canvas, P - shift, P + B, store, pos, None, P, P + B)  # noqa: E731
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        launches = [(e.name[:60], e.device_time if hasattr(e, "device_time") else e.cuda_time) for e in prof.events()
                    if e.device_type == torch.autograd.DeviceType.CUDA]
        # the kernel's own name: Inductor's norm kernels that feed it carry "skinny_linear" in theirs (the
        # committed round6_dev/lm_head_probe/ files were listed with "skinny", so LLaDA's hold those ~2 µs too)
        out["skinny_launches_us"] = [us for name, us in launches if name.startswith("_skinny_kernel")]
        out["kernel_count"] = len(launches)
        print("skinny launches (us):", [round(u, 1) for u in out["skinny_launches_us"]], flush=True)
        # the LM head's input: the forward's hidden rows, through the same call the forward makes
        w = head.weight
        captured = {}
        orig = skinny_matmul._launch

        def spy(x2, weight, *a, **k):
            if weight.shape == w.shape:
                captured["x"] = x2.clone()
            return orig(x2, weight, *a, **k)
        skinny_matmul._launch = spy
        step()
        skinny_matmul._launch = orig
        x = captured["x"]
        out["x"] = {"shape": list(x.shape), "stride": list(x.stride())}
        flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")

        def timed(fn, n=20, flush_between=True):
            g = torch.cuda.CUDAGraph()
            fn()
            torch.cuda.synchronize()
            with torch.cuda.graph(g):
                for _ in range(n):
                    if flush_between:
                        flush.fill_(1)
                    fn()
            g.replay()
            torch.cuda.synchronize()
            t = []
            for _ in range(5):
                s = time.perf_counter()
                g.replay()
                torch.cuda.synchronize()
                t.append((time.perf_counter() - s) / n * 1e6)
            return sorted(t)[2]
        fill_us = timed(lambda: None, flush_between=True)
        out["flush_us"] = fill_us
        out["alone_us"] = {
            "few_row_flushed": timed(lambda: skinny_matmul.skinny_linear(x, w)) - fill_us,
            "cublas_flushed": timed(lambda: torch.nn.functional.linear(x, w)) - fill_us,
            "few_row_back_to_back": timed(lambda: skinny_matmul.skinny_linear(x, w), flush_between=False),
        }
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                skinny_matmul.skinny_linear(x, w)
            torch.cuda.synchronize()
        out["alone_profiled_us"] = [e.device_time if hasattr(e, "device_time") else e.cuda_time for e in prof.events()
                                    if e.device_type == torch.autograd.DeviceType.CUDA and e.name.startswith("_skinny_kernel")]
        out["weight_bytes"] = w.numel() * w.element_size()
        out["ceilings"] = bench_gpu.ceilings("cuda")
        out["floor_us"] = out["weight_bytes"] / out["ceilings"]["copy_bytes_per_s"] * 1e6
    print({k: v for k, v in out.items() if k not in ("env",)}, flush=True)
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
