"""Where a decode's wall time goes, forward by forward, and whether the GPU keeps its pace through a long run.

``bench_gpu.py`` times whole decodes and single forwards; this script splits a decode's wall time into its forwards
and what lies between them, and compares each forward with the same forward replayed alone:

- **timeline**: one decode per cache (after a warm-up decode that captures graphs and compiles), with a CUDA event
  pair around every ``forward_step``. Per forward: its GPU time inside the decode; per gap: the time from one
  forward's end to the next one's start (the step's proposal, selection and commit kernels, plus any wait for
  the host). Then every distinct window of that decode replayed alone, back to back, on the same buffers: the
  forward's time without the decode around it;
- **sustained** (``--sustain-s``): the ``bench_floors.ceilings`` matmul (8192³ bf16) and one forward (the
  widest cached window of the caches given) replayed back to back for that many seconds each, timed per call:
  the first calls against the last quarter. Both run after the decodes, on a GPU already at its power limit, so
  the matmul's figures are to be compared with the burst rate in ``ceilings`` (measured at process start), not
  with its own first calls;
- **gaps** (``--trace-blocks N``): one more decode of N blocks under ``torch.profiler`` (CPU and CUDA), its trace
  read back: for each pair of consecutive forwards (CUDA-graph launches), the kernels between them, the time the
  GPU sat idle, and on the host the time from the step's sync returning to the next graph launch;
- **clocks**: on a GPU with ``nvidia-smi``, the SM clock, memory clock, power draw, temperature and active
  clock-event (throttle) reasons sampled every 100 ms through all of it, each sample tagged with the phase it fell in.

    python experiments/decode_timeline.py --family llada --caches none,prefix,dual --out $OUT/timeline_llada.json
    python experiments/decode_timeline.py --small --device cpu --sustain-s 0.2   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import fastdllm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_floors import Floors, build_model, canvas_arguments, ceilings, model_arguments  # noqa: E402
from bench_gpu import save  # noqa: E402 - written after every timeline: a run cut short keeps what it measured
from bench_modes import set_mode  # noqa: E402
from gpu_clocks import ClockSampler  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402


class Stopwatch:
    """Marks on the device's timeline: CUDA events on a GPU (no sync when marking), the host clock on the CPU
    (whose ops finish before they return)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, a, b) -> float:
        """Milliseconds from mark ``a`` to mark ``b`` (synchronises on ``b`` on a GPU)."""
        if not self.cuda:
            return 1000 * (b - a)
        b.synchronize()
        return a.elapsed_time(b)


class ForwardClock:
    """Wraps ``model.forward_step`` (an instance attribute shadowing the method) and marks each call's start and
    end; ``calls`` keeps (positional args, keyword args, start mark, end mark) of each forward."""

    def __init__(self, model, watch: Stopwatch) -> None:
        self.model, self.watch, self.calls = model, watch, []
        self.inner = model.forward_step

    def __enter__(self) -> "ForwardClock":
        def timed(*args, **kwargs):
            start = self.watch.mark()
            logits = self.inner(*args, **kwargs)
            self.calls.append((args, kwargs, start, self.watch.mark()))
            return logits

        self.model.forward_step = timed
        return self

    def __exit__(self, *exc) -> None:
        del self.model.forward_step  # the class's method again


class EagerCommit:
    """Within the block, the decoder commits with the PyTorch ops even where the one-launch kernel would serve
    (``fastdllm.core.commit``): the A/B of ``--commits``."""

    def __enter__(self):
        from fastdllm.core import commit

        self.saved, commit._fused = commit._fused, lambda *a, **k: False

    def __exit__(self, *exc):
        from fastdllm.core import commit

        commit._fused = self.saved


def timeline(model, prompt, cache: str, k: int, args, floors: Floors, watch: Stopwatch, sampler=None,
             commit: str = "fused") -> dict:
    """One warm decode with every forward marked, then its windows replayed alone on the same buffers.
    ``commit`` "eager": the decoder's commit in PyTorch ops (``EagerCommit``)."""
    sampler = sampler or ClockSampler()
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": args.gen_length // k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    with EagerCommit() if commit == "eager" else contextlib.nullcontext():
        with sampler.phase(f"warm-up {cache} k={k} {commit}"):
            decoder.generate(prompt)  # captures graphs, compiles
        with sampler.phase(f"decode {cache} k={k} {commit}"), ForwardClock(model, watch) as clock:
            result = decoder.generate(prompt)
    forwards = [{"rows": a[2] - a[1], "ms": watch.ms(s, e)} for a, _, s, e in clock.calls]
    gaps = [watch.ms(clock.calls[i][3], clock.calls[i + 1][2]) for i in range(len(clock.calls) - 1)]
    wall_ms = 1000 * result.wall_time_s
    by_window: dict[tuple, dict] = {}
    for (a, kw, _, _), f in zip(clock.calls, forwards):
        entry = by_window.setdefault((a[1], a[2], a[6], a[7]), {"args": (a, kw), "in_decode_ms": []})
        entry["in_decode_ms"].append(f["ms"])
    windows = []
    with sampler.phase(f"alone {cache} k={k} {commit}"), torch.inference_mode():
        for (start, end, _, _), entry in sorted(by_window.items(), key=lambda kv: kv[0][1] - kv[0][0]):
            a, kw = entry.pop("args")
            for _ in range(2):
                model.forward_step(*a, **kw)
            marks = [watch.mark()]
            for _ in range(args.alone_repeats):
                model.forward_step(*a, **kw)
                marks.append(watch.mark())
            alone = [watch.ms(marks[i], marks[i + 1]) for i in range(len(marks) - 1)]
            in_decode, floor_s = entry["in_decode_ms"], floors.forward_s(end - start)
            windows.append({"start": start, "end": end, "rows": end - start, "forwards": len(in_decode),
                            "in_decode_ms_median": statistics.median(in_decode),
                            "alone_ms_median": statistics.median(alone),
                            "floor_ms": None if floor_s is None else 1000 * floor_s})
    forward_ms = sum(f["ms"] for f in forwards)
    alone_sum = sum(w["alone_ms_median"] * w["forwards"] for w in windows)
    decoder.release()
    stats = [result.nfe_per_row, result.refresh_per_row, result.commit_forward, result.sequences]
    return {"cache": cache, "tokens_per_step": k, "commit": commit, "nfe": result.nfe, "wall_ms": wall_ms,
            "tokens_sha1": hashlib.sha1(result.sequences.cpu().numpy().tobytes()).hexdigest(),
            "tallies_sha1": hashlib.sha1(b"".join(t.cpu().numpy().tobytes() for t in stats)
                                         + bytes([result.forced_commits % 256, result.bound_flushes % 256])).hexdigest(),
            "forward_ms_sum": forward_ms, "gap_ms_sum": sum(gaps), "gap_ms_median": statistics.median(gaps) if gaps else 0.0,
            "alone_ms_sum": alone_sum, "unaccounted_ms": wall_ms - forward_ms - sum(gaps),
            "in_decode_over_alone": forward_ms / alone_sum, "windows": windows,
            "forward_ms_series": [round(f["ms"], 4) for f in forwards]}


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")  # the host waits (an async
# copy is not one: the graph's index refill before a replay is a device-to-device cudaMemcpyAsync)


def gap_anatomy(trace: dict) -> dict:
    """From a chrome trace of a graphed decode: per gap between consecutive ``cudaGraphLaunch`` forwards, the GPU
    time from one forward's last kernel to the next one's first, the kernels launched in between (their busy time
    and count), the idle rest, and on the host the time from the last synchronising call's return to the next
    graph launch and that launch's own duration. Medians over the gaps, µs."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    runtime = sorted((e for e in events if e.get("cat") == "cuda_runtime"), key=lambda e: e["ts"])
    kernels = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")), key=lambda e: e["ts"])
    launches = [e for e in runtime if e.get("name") == "cudaGraphLaunch"]
    graph_ids = {e["args"].get("correlation") for e in launches}
    spans = {}
    for k in kernels:
        c = k.get("args", {}).get("correlation")
        if c in graph_ids:
            lo, hi = spans.get(c, (float("inf"), 0.0))
            spans[c] = (min(lo, k["ts"]), max(hi, k["ts"] + k.get("dur", 0)))
    others = [k for k in kernels if k.get("args", {}).get("correlation") not in graph_ids]
    syncs = [e for e in runtime if e.get("name") in SYNC_CALLS]
    rows, names = [], collections.Counter()
    for a, b in zip(launches, launches[1:]):
        ca, cb = a["args"].get("correlation"), b["args"].get("correlation")
        if ca not in spans or cb not in spans:
            continue
        end, start = spans[ca][1], spans[cb][0]
        between = [k for k in others if end <= k["ts"] < start]
        busy = sum(k.get("dur", 0) for k in between)
        names.update(k["name"][:60] for k in between)
        before = [s for s in syncs if s["ts"] + s.get("dur", 0) <= b["ts"]]
        host = b["ts"] - (before[-1]["ts"] + before[-1].get("dur", 0)) if before else None
        rows.append({"gap_us": start - end, "kernels": len(between), "busy_us": busy, "idle_us": start - end - busy,
                     "host_sync_to_launch_us": host, "launch_call_us": b.get("dur", 0),
                     "launch_to_first_kernel_us": start - b["ts"]})

    def med(key):
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.median(values) if values else None

    keys = ("gap_us", "kernels", "busy_us", "idle_us", "host_sync_to_launch_us", "launch_call_us", "launch_to_first_kernel_us")
    return {"gaps": len(rows), "median": {k: med(k) for k in keys},
            "kernels_between_per_gap": {n: c / max(1, len(rows)) for n, c in names.most_common(40)}}


def trace_steps(model, prompt, cache: str, k: int, blocks: int, args, out_dir: Path | None) -> dict:
    """A warm decode of ``blocks`` blocks under the profiler; ``gap_anatomy`` of its trace (saved gzipped)."""
    import gzip
    import json

    from torch.profiler import ProfilerActivity, profile

    gen_length = blocks * args.block_length
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": gen_length // k},
                                        gen_length=gen_length, block_length=args.block_length)
    decoder.generate(prompt)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if prompt.is_cuda else [])
    with profile(activities=activities) as prof:
        decoder.generate(prompt)
    decoder.release()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            with gzip.open(out_dir / f"trace_{cache}_k{k}.json.gz", "wt") as f:
                f.write(path.read_text())
    return {"cache": cache, "tokens_per_step": k, "blocks": blocks, **gap_anatomy(trace)}


def sustained(fn, seconds: float, watch: Stopwatch, head: int = 20) -> dict:
    """Call ``fn`` back to back for ``seconds``, timing each call: the median of the first ``head`` calls against
    the median of the calls in the last quarter of the run."""
    fn()
    marks, t0 = [watch.mark()], time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(marks) < 2 * head + 1:
        fn()
        marks.append(watch.mark())
        if len(marks) % 50 == 0 and watch.cuda:
            marks[-1].synchronize()  # keep the host within ~50 calls of the device so the run lasts ``seconds``
    ms = [watch.ms(marks[i], marks[i + 1]) for i in range(len(marks) - 1)]
    tail = ms[-max(1, len(ms) // 4):]
    return {"calls": len(ms), "seconds": sum(ms) / 1000, "first_ms_median": statistics.median(ms[:head]),
            "last_quarter_ms_median": statistics.median(tail), "slowdown": statistics.median(tail) / statistics.median(ms[:head]),
            "ms_series_every_10th": [round(v, 4) for v in ms[::10]]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(p)
    p.add_argument("--mode", default="kernels", help="a bench_gpu.py mode (tuned modes are not tuned here)")
    p.add_argument("--caches", default="prefix,dual")
    p.add_argument("--ks", default="1", help="tokens per step, comma-separated")
    p.add_argument("--commits", default="fused", help="fused,eager: the decoder's commit kernel, its PyTorch ops, or both")
    canvas_arguments(p)
    p.add_argument("--alone-repeats", type=int, default=10)
    p.add_argument("--sustain-s", type=float, default=5.0, help="seconds of each sustained run (0: none)")
    p.add_argument("--trace-blocks", type=int, default=0, help="profile a decode of this many blocks per cache (0: none)")
    args = p.parse_args(argv)
    if args.small:
        args.prompt_length, args.gen_length, args.block_length = min(args.prompt_length, 16), min(args.gen_length, 16), min(args.block_length, 4)
    bad = [k for k in args.ks.split(",") if args.gen_length % int(k)]
    if bad:
        raise SystemExit(f"--ks {bad} must divide --gen-length {args.gen_length}")
    args.k = int(args.ks.split(",")[0])  # the traces' and the sustained forward's
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t0 = time.time()
    sampler = ClockSampler().start() if device.type == "cuda" else ClockSampler()
    model = build_model(args.family, args.small, args.device, dtype)
    params = sum(t.numel() for t in model.parameters())
    watch = Stopwatch(device)
    with sampler.phase("ceilings"):
        ceil = ceilings(args.device)
    floors = Floors(params, params * torch.finfo(dtype).bits // 8, ceil)
    set_mode(model, args.mode if device.type == "cuda" else "plain")
    prompt = torch.randint(0, model.mask_token_id, (1, args.prompt_length), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/decode_timeline.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "mode": args.mode, "ceilings": ceil, "params": params, "settings": {
               "prompt_length": args.prompt_length, "gen_length": args.gen_length, "block_length": args.block_length,
               "tokens_per_step": args.ks, "commits": args.commits, "alone_repeats": args.alone_repeats, "sustain_s": args.sustain_s},
           "timelines": [], "sustained": {}}
    caches = [c.strip() for c in args.caches.split(",") if c.strip()]
    try:
        run(model, prompt, caches, args, floors, watch, sampler, out)
    finally:  # the sampler's nvidia-smi process ends with the run, whatever happened
        out["clocks"] = sampler.stop()
        out["seconds"] = time.time() - t0
        save(out, args.out)
    return out


def run(model, prompt, caches: list[str], args, floors: Floors, watch: Stopwatch, sampler: ClockSampler, out: dict) -> None:
    device = prompt.device
    for k in [int(v) for v in args.ks.split(",")]:
        for cache in caches:
            for commit in [c.strip() for c in args.commits.split(",") if c.strip()]:
                row = timeline(model, prompt, cache, k, args, floors, watch, sampler, commit)
                out["timelines"].append(row)
                save(out, args.out)
                print(cache, k, commit, {key: round(v, 3) for key, v in row.items() if isinstance(v, float)},
                      row["tokens_sha1"][:10], row["tallies_sha1"][:10], flush=True)
    if args.trace_blocks:
        out["gap_anatomy"] = []
        for cache in caches:
            with sampler.phase(f"trace {cache}"):
                row = trace_steps(model, prompt, cache, args.k, args.trace_blocks, args,
                                  Path(args.out).parent if args.out else None)
            out["gap_anatomy"].append(row)
            save(out, args.out)
            print("gaps", cache, row["gaps"], row["median"], flush=True)
    if args.sustain_s <= 0:
        return
    if device.type == "cuda":
        a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)  # [8192, 8192]
        b = torch.randn_like(a)
        with sampler.phase("sustained matmul"):
            out["sustained"]["matmul_8192"] = sustained(lambda: a @ b, args.sustain_s, watch)
        del a, b
    L = args.prompt_length + args.gen_length
    cached = [(w["rows"], row["cache"], row["tokens_per_step"], w) for row in out["timelines"] for w in row["windows"]
              if w["rows"] < L]
    if not cached:  # only full-canvas forwards (--caches none): no cached window to sustain
        out["sustained"]["forward"] = "no cached window among --caches"
        return
    _, cache, k, widest = max(cached, key=lambda c: c[0])
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": args.gen_length // k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    decoder.generate(prompt)
    canvas, _, position_ids, store = decoder._buffers[1:]
    P = args.prompt_length
    first = P + (widest["start"] + model.logit_shift - P) // args.block_length * args.block_length  # its block

    def forward():
        with torch.inference_mode():
            model.forward_step(canvas, widest["start"], widest["end"], store, position_ids, None, first,
                               first + args.block_length)

    with sampler.phase(f"sustained forward {widest['rows']} rows"):
        out["sustained"][f"forward_{widest['rows']}_rows"] = sustained(forward, args.sustain_s, watch)
    decoder.release()
    for name, row in out["sustained"].items():
        print("sustained", name, {key: round(v, 4) for key, v in row.items() if isinstance(v, float)}, flush=True)


if __name__ == "__main__":
    main()
