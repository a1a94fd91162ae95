"""Where a decoding step's time goes besides its forward: a GPU timeline of one decode, step by step.

Runs one decode (LLaDA-8B shape, random bf16 weights, batch 1, fixed k tokens per step; default dual cache,
k = 1) in a ``bench_gpu.py`` mode with CUDA graphs, under ``torch.profiler``, and splits every step (from the
end of one forward graph's last kernel to the end of the next's) into: kernels replayed from the forward's
graph, kernels launched eagerly (the proposal, the unmask policy, the decoder's commit and bookkeeping,
the pre-replay index copies), and time the GPU had nothing to run (the host sync at the step's end, then
Python until the next launch). The profiler slows the host, so the idle figure is an upper bound; the
same decode unprofiled gives the true step time.

    python experiments/step_gaps.py --out $OUT/step_gaps.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402

import fastdllm  # noqa: E402
from fastdllm.evaluation import torch_info  # noqa: E402


def timeline(trace: dict) -> tuple[list[tuple[float, float, str, bool]], list[float]]:
    """Kernels (start µs, end µs, name, from a graph) sorted by start, and the end of every graph replay."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    graph_ids = {e["args"].get("correlation") for e in events
                 if e.get("cat") == "cuda_runtime" and "GraphLaunch" in e.get("name", "")}
    kernels = sorted((e["ts"], e["ts"] + e["dur"], e["name"], e["args"].get("correlation") in graph_ids)
                     for e in events if e.get("cat") == "kernel")
    ends, current = [], None
    for start, end, _, graphed in kernels:  # a replay = a maximal run of graph kernels
        if graphed:
            current = end if current is None else max(current, end)
        elif current is not None:
            ends.append(current)
            current = None
    if current is not None:
        ends.append(current)
    return kernels, ends


def host_prep(trace: dict) -> dict:
    """Median host µs from the end of the step's sync (a stream synchronisation) to the next graph launch,
    and of the graph launch call itself."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    runtime = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events if e.get("cat") == "cuda_runtime")
    gaps, launches, synced = [], [], None
    for start, end, name in runtime:
        if "Synchronize" in name:
            synced = end
        elif "GraphLaunch" in name:
            launches.append(end - start)
            if synced is not None:
                gaps.append(start - synced)
            synced = None
    return {"sync_to_launch_us": statistics.median(gaps) if gaps else None,
            "graph_launch_call_us": statistics.median(launches) if launches else None}


def split_steps(kernels, ends) -> dict:
    steps = []
    eager_names: collections.Counter = collections.Counter()
    for lo, hi in zip(ends, ends[1:]):
        inside = [(max(s, lo), min(e, hi), n, g) for s, e, n, g in kernels if e > lo and s < hi]
        graph = sum(e - s for s, e, _, g in inside if g)
        eager = sum(e - s for s, e, _, g in inside if not g)
        gaps_in_graph = sum(max(0.0, b[0] - a[1]) for a, b in zip(inside, inside[1:]) if a[3] and b[3])
        for s, e, n, g in inside:
            if not g:
                eager_names[n[:70]] += e - s
        steps.append({"period_us": hi - lo, "graph_us": graph, "eager_us": eager, "idle_us": hi - lo - graph - eager,
                      "idle_between_graph_kernels_us": gaps_in_graph, "idle_outside_graph_us": hi - lo - graph - eager - gaps_in_graph,
                      "eager_kernels": sum(1 for *_, g in inside if not g)})
    med = {k: statistics.median(s[k] for s in steps) for k in steps[0]} if steps else {}
    n = max(len(steps), 1)
    return {"steps": len(steps), "median": med, "eager_kernels_us_per_step": {k: v / n for k, v in eager_names.most_common(25)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada")
    p.add_argument("--mode", default="split-kv")
    p.add_argument("--cache", default="dual")
    p.add_argument("--k", type=int, default=1)
    bench_gpu.canvas_arguments(p)
    args = p.parse_args()
    from torch.profiler import ProfilerActivity, profile

    model = bench_gpu.build_model(args.family, False, "cuda", torch.bfloat16)
    bench_gpu.set_mode(model, args.mode)
    decoder = fastdllm.DiffusionDecoder(model, cache=args.cache, unmask={"name": "fixed", "steps": args.gen_length // args.k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    prompt = torch.randint(0, model.mask_token_id, (1, args.prompt_length), generator=torch.Generator().manual_seed(1)).cuda()
    decoder.generate(prompt)  # capture, compile
    walls = [decoder.generate(prompt).wall_time_s for _ in range(2)]
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        profiled = decoder.generate(prompt)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    kernels, ends = timeline(trace)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/step_gaps.py " + " ".join(sys.argv[1:]),
           "settings": vars(args), "unprofiled_wall_s": walls, "unprofiled_ms_per_forward": [1000 * w / profiled.nfe for w in walls],
           "profiled_wall_s": profiled.wall_time_s, "nfe": profiled.nfe, "replays": len(ends), **host_prep(trace),
           **split_steps(kernels, ends)}
    print(json.dumps({k: v for k, v in out.items() if k != "env"}, indent=1), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
