"""Does a cached forward at batch 8-32 run faster as two half-batch forwards on two CUDA streams?

At batch 16-32 a dual-cache block step is matmul-bound in its GEMMs and bound by the KV store's read in its
attention (LLaDA batch 32: 21.4 ms of GEMMs, 4.6 ms of attention reading 16 GiB, docs/speed.md). Run one after
the other, the two never share the GPU. The batch's rows are independent, so the forward of one half-batch does
not wait for the other's: captured as two branches of one CUDA graph, the GPU may run one half's attention
beside the other half's GEMMs. This probe measures whether it does, per batch size, against the whole batch's
graphed forward and the halves' forwards one after the other:

- ``whole``: the batch's forward, one graph (what the decoder runs today);
- ``serial``: the ``--splits`` part-batch forwards one after another, one graph;
- ``streams``: the same part-batch forwards, each on its own stream, as parallel branches of one graph.

The parts' logits must equal ``serial``'s bit for bit (the same kernels on the same data); against ``whole`` the
largest difference and the argmax agreement are recorded (GEMMs of another row count may round differently).
Each graph is replayed ``--repeats`` times per round, in ``--rounds`` interleaved rounds (median round).

    python experiments/two_stream_probe.py --family llada --batches 16,32 --out $OUT/two_stream_llada.json

On the CPU (``--small --device cpu``, what the test runs) there are no graphs or streams: the three variants
run eagerly, one after the other, and only the logits' checks mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_floors import Floors, build_model, canvas_arguments, ceilings, model_arguments  # noqa: E402
from bench_modes import MODES, set_mode  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.models.cuda_graphs import TorchCudaGraphs  # noqa: E402


class Problem:
    """One batch's dual-cache block step: its canvas ``[B, L]``, positions, a KV store filled by a refresh, and
    the step's index ``[n]`` and logit rows ``[m]`` (as ``DiffusionLM.forward_step`` builds them)."""

    def __init__(self, model, batch: int, prompt_length: int, gen_length: int, block_length: int, seed: int):
        device = model.device
        L, P = prompt_length + gen_length, prompt_length
        gen = torch.Generator().manual_seed(seed)
        self.canvas = torch.randint(0, model.mask_token_id, (batch, L), generator=gen).to(device)  # [B, L]
        self.canvas[:, P:] = model.mask_token_id
        self.position_ids = torch.arange(L, device=device).expand(batch, L).contiguous()  # [B, L]
        self.store = model.new_kv_store(batch, L)
        self.start = P - model.logit_shift
        self.index = torch.arange(self.start, P + block_length, device=device)  # [n]
        self.rows = torch.arange(0, block_length, device=device)  # [m]: the block's logits
        with torch.inference_mode():  # the refresh that fills the store
            model.forward_step(self.canvas, 0, L, self.store, self.position_ids, None, P, P + block_length)

    def part(self, model, lo: int, hi: int, template: "Problem") -> "Problem":
        """Batch rows [lo, hi) of ``template`` as a problem of its own (own canvas and store, the same contents)."""
        part = object.__new__(Problem)
        part.canvas = template.canvas[lo:hi].clone()
        part.position_ids = template.position_ids[lo:hi].clone()
        part.store = model.new_kv_store(hi - lo, template.canvas.shape[1])
        part.store.keys.copy_(template.store.keys[:, lo:hi])
        part.store.values.copy_(template.store.values[:, lo:hi])
        part.start, part.index, part.rows = template.start, template.index, template.rows
        return part

    def step(self, model) -> torch.Tensor:
        """The block step's logits ``[B, m, V]`` (eager; the caller captures it)."""
        return model.step_logits(self.canvas, self.start, self.index, self.store, self.position_ids, None, self.rows)


def capture(run: Callable[[], torch.Tensor], device: torch.device):
    """(replay, output) of ``run``: the library's own capture (``TorchCudaGraphs``: a warm-up on a side stream, then
    one CUDA graph); on the CPU, ``run`` itself."""
    if device.type != "cuda":
        return run, run()
    replay, out, _ = TorchCudaGraphs().capture(run, device, None)
    return replay, out


def on_streams(model, parts: list[Problem], streams: list | None) -> torch.Tensor:
    """The parts' steps, each on its own stream (forked from and joined to the current one; one after the other
    when ``streams`` is None): their logits concatenated over the batch ``[B, m, V]``."""
    if streams is None:
        return torch.cat([p.step(model) for p in parts])
    here = torch.cuda.current_stream()
    outs = []
    for p, s in zip(parts, streams):
        s.wait_stream(here)
        with torch.cuda.stream(s):
            outs.append(p.step(model))
    for s in streams:
        here.wait_stream(s)
    return torch.cat(outs)


def time_replays(replays: dict[str, Callable[[], None]], device: torch.device, repeats: int, rounds: int
                 ) -> dict[str, list[float]]:
    """ms per replay of each graph: ``rounds`` interleaved rounds of ``repeats`` replays, each timed by CUDA
    events (by the host clock on the CPU)."""
    times = {name: [] for name in replays}
    for _ in range(rounds):
        for name, replay in replays.items():
            if device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                for _ in range(repeats):
                    replay()
                end.record()
                end.synchronize()
                times[name].append(begin.elapsed_time(end) / repeats)
            else:
                t0 = time.perf_counter()
                for _ in range(repeats):
                    replay()
                times[name].append(1000 * (time.perf_counter() - t0) / repeats)
    return times


def probe_batch(model, batch: int, args, floors: Floors | None) -> dict:
    """The three variants at one batch size: times, floor, and the logits' checks."""
    splits = args.splits  # parse() checked that it divides every batch
    device = model.device
    whole = Problem(model, batch, args.prompt_length, args.gen_length, args.block_length, seed=batch)
    size = batch // splits
    parts = [whole.part(model, i * size, (i + 1) * size, whole) for i in range(splits)]
    streams = [torch.cuda.Stream(device) for _ in parts] if device.type == "cuda" else None
    with torch.inference_mode():
        replay_whole, out_whole = capture(lambda: whole.step(model), device)
        replay_serial, out_serial = capture(lambda: on_streams(model, parts, None), device)
        replay_streams, out_streams = capture(lambda: on_streams(model, parts, streams), device)
        for replay in (replay_whole, replay_serial, replay_streams):
            replay()
        times = time_replays({"whole": replay_whole, "serial": replay_serial, "streams": replay_streams},
                             device, args.repeats, args.rounds)
    ms = {name: statistics.median(t) for name, t in times.items()}
    rows = batch * whole.index.numel()
    floor_ms = None if floors is None or not floors.ceil else 1000 * floors.forward_s(rows)
    row = {"batch": batch, "splits": splits, "rows": rows, "ms": ms, "rounds_ms": times, "floor_ms": floor_ms,
           "floor_ratio": None if floor_ms is None else {k: v / floor_ms for k, v in ms.items()},
           "streams_vs_whole": ms["streams"] / ms["whole"],
           "streams_equal_serial": bool(torch.equal(out_streams, out_serial)),
           "parts_max_abs_diff_whole": (out_serial.double() - out_whole.double()).abs().max().item(),
           "parts_argmax_agreement_whole": (out_serial.argmax(-1) == out_whole.argmax(-1)).float().mean().item()}
    print(f"b{batch} ({splits} parts): whole {ms['whole']:.2f} ms, serial {ms['serial']:.2f}, streams "
          f"{ms['streams']:.2f} ({row['streams_vs_whole']:.3f}x whole)"
          + (f"; floor {floor_ms:.2f} ms" if floor_ms else "")
          + f"; streams == serial: {row['streams_equal_serial']}, parts vs whole max |diff| "
          f"{row['parts_max_abs_diff_whole']:.3g}", flush=True)
    return row


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model_arguments(p, "cuda" if torch.cuda.is_available() else "cpu")
    canvas_arguments(p)
    p.add_argument("--mode", default="kernels", choices=MODES, help="bench_modes' fast paths for every variant")
    p.add_argument("--batches", default="16,32")
    p.add_argument("--splits", type=int, default=2, help="part-batches, each on its own stream")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.splits < 1:
        p.error(f"--splits {args.splits}: give at least 1")
    bad = [b for b in args.batches if b % args.splits]
    if bad:
        p.error(f"--batches {bad} do not split into --splits {args.splits} equal parts; give multiples of it")
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    model = build_model(args.family, args.small, args.device,
                        torch.bfloat16 if args.device == "cuda" else torch.float32)
    dtype = model.dtype
    set_mode(model, args.mode)
    model.use_cuda_graphs(False)  # this probe captures its own graphs
    params = sum(t.numel() for t in model.parameters())
    floors = Floors(params, params * dtype.itemsize, ceilings(args.device))
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/two_stream_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "mode": args.mode, "ceilings": floors.ceil, "results": []}
    for batch in args.batches:
        out["results"].append(probe_batch(model, batch, args, floors))
        if args.device == "cuda":
            torch.cuda.empty_cache()
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
