"""Speed of the decoder at full model shape on one GPU, against the physical floors measured in the same run.

Random bf16 weights at a registered family's reference shape (LLaDA-8B, Dream-7B): with fixed-k
unmasking the work of every forward does not depend on the weights, so the figures are honest speed
figures. Default settings: prompt 768, 256 generated, block 32, k = 1 and 4 tokens per step, caches
none / prefix / dual. Every setting runs in several modes (``--modes``; ``bench_modes.py`` says what each turns
on): ``plain`` (eager, every row through the whole network: the reference the others are checked against),
``graphs``, ``compiled``, ``kernels``, ``tuned`` and their ablations.

Each setting records wall time (``generate``'s own, device synchronised; the median of ``--repeats``
runs after a warm-up that captures graphs and compiles; ``plain`` runs once), tokens/s, the **floor
sum** (over the forwards the decode ran, each forward's max(weight bytes / copy bandwidth,
2 · params · rows / matmul rate), rows = batch × positions recomputed) and wall / floor sum, peak GPU
memory, the KV store's size, and whether the tokens equal the plain path's (with the share of
generated positions that agree). ``forwards`` times single refresh and dual-cache forwards directly.

Random-weight logits are nearly flat, so bf16 rounding alone flips argmaxes and the bf16 modes' decodes diverge
from plain's. ``--fp32-check CACHES`` asks which of them is nearer the exact decode: before the timed modes it
decodes those caches' settings (and runs the two forwards) once more, plain eager, on a copy of the same
weights in fp32 (float64 when the model already runs in fp32), frees that copy, and records every mode's
agreement with it (plain included): ``token_agreement_fp32``, ``argmax_agreement_fp32``.

    python experiments/bench_gpu.py --family llada --batches 1 --out $OUT/gpu_llada.json   # on the GPU
    python experiments/bench_gpu.py --small --device cpu --repeats 1                      # a CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import hashlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.core.policy import cache_policies
from fastdllm.evaluation import torch_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_floors import Floors, Work, build_model, canvas_arguments, ceilings, held_matmul_rate, model_arguments  # noqa: E402 - also read as bench_gpu.X by the other scripts
from bench_modes import CUDA_MODES, FP8_MODES, MODES, TUNED_MODES, set_mode  # noqa: E402 - set_mode also read as bench_gpu.set_mode
from bench_forwards import _logit_agreement, forward_records, store_bytes, time_forwards  # noqa: E402, F401 - the tests read them here
from bench_profile import profile_decode  # noqa: E402
from gpu_clocks import ClockSampler  # noqa: E402



def run_setting(model, prompt, cache: str, k: int, args, mode: str, floors: Floors, plain_tokens) -> dict:
    set_mode(model, mode)
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": args.gen_length // k},
                                        gen_length=args.gen_length, block_length=args.block_length)
    cuda = prompt.is_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plans = []
    record = lambda e: plans.append((e.plan.start, e.plan.end))  # noqa: E731
    gemm_plan = None
    phase = args.clocks.phase(phase_name(prompt.shape[0], cache, k, mode))
    timed_warmup = mode == "plain"  # plain decodes once: its warm-up is its timed run
    saved_plan = (args.gemm_plan or {}).get((prompt.shape[0], cache, k)) if mode == "tuned" else None
    if saved_plan is not None:  # --gemm-plan: the earlier run's choices, nothing timed
        model.use_gemm_plan(saved_plan)
        gemm_plan = saved_plan
        warmup = decoder.generate(prompt, callbacks=[record])
    elif mode in TUNED_MODES:  # its warm-up decode finds the row counts to time; then warm up (capture) again
        gemm_plan = model.tune_gemms_for(decoder, prompt, callbacks=[record], backends=TUNED_MODES[mode])
        warmup = decoder.generate(prompt)
    else:
        with phase if timed_warmup else contextlib.nullcontext():
            warmup = decoder.generate(prompt, callbacks=[record])
    with contextlib.nullcontext() if timed_warmup else phase:
        runs = [decoder.generate(prompt) for _ in range(0 if mode == "plain" else args.repeats)] or [warmup]
    wall = statistics.median(r.wall_time_s for r in runs)
    first = runs[0]
    assert all(torch.equal(r.sequences, first.sequences) for r in runs), "decoding is not deterministic"
    batch = prompt.shape[0]
    row = {"batch": batch, "cache": cache, "tokens_per_step": k, "mode": mode, "nfe": first.nfe,
           "refresh_forwards": first.refresh_forwards, "wall_s": wall, "walls_s": [r.wall_time_s for r in runs],
           "warmup_wall_s": warmup.wall_time_s, "tokens_per_s": batch * args.gen_length / wall,
           "ms_per_forward": 1000 * wall / first.nfe,
           "tokens_sha1": hashlib.sha1(first.sequences.cpu().numpy().tobytes()).hexdigest()}
    if gemm_plan is not None:
        row["gemm_plan"] = gemm_plan
        row["tune_s"] = sum(r.get("tune_s", 0.0) for r in gemm_plan)  # the timing alone (saved plans: the earlier run's)
        if saved_plan is not None:
            row["gemm_plan_from"] = args.gemm_plan_path
    floor_sum = [floors.forward_s(batch * (end - start)) for start, end in plans]
    if floor_sum and floor_sum[0] is not None:
        row["floor_sum_s"] = sum(floor_sum)
        row["floor_ratio"] = wall / row["floor_sum_s"]
        sustained = [floors.forward_s(batch * (end - start), sustained=True) for start, end in plans]
        if sustained[0] is not None:  # --sustained-ceiling: the same forwards at the rate the GPU holds under load
            row["floor_sum_sustained_s"] = sum(sustained)
            row["floor_ratio_sustained"] = wall / row["floor_sum_sustained_s"]
        work_floors(row, [end - start for start, end in plans], batch, floors)
        if mode in FP8_MODES:  # its own floor: forwards of at most 32 rows read the fp8 copies (1 byte) instead
            from fastdllm.kernels.fp8_weights import MAX_ROWS

            saved = sum(w.numel() * (w.element_size() - 1) - 4 * w.shape[0] for w in model.net._fp8_weights)
            row["fp8_weight_bytes_saved"] = saved
            row["floor_sum_fp8_s"] = sum(floors.forward_s(batch * (end - start), 0 if batch * (end - start) > MAX_ROWS
                                                          else saved) for start, end in plans)
            row["floor_ratio_fp8"] = wall / row["floor_sum_fp8_s"]
    row["kv_store_bytes"] = store_bytes(decoder._buffers[-1] if decoder._buffers else None)
    if cuda:
        row["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    if plain_tokens is not None:
        row["tokens_equal_plain"], row["token_agreement_plain"] = _agreement(first.sequences, plain_tokens,
                                                                             first.prompt_length)
    decoder.release()
    set_mode(model, "plain")
    return row, first.sequences


def work_floors(row: dict, positions: list[int], batch: int, floors: Floors) -> None:
    """A decode's work floor sum (``bench_floors.Work``: the bytes and flops its forwards' own work needs, each
    forward recomputing ``positions[i]`` per sequence) and its wall time against it, at the burst and (when
    measured) the held matmul rate."""
    for suffix, sustained in (("", False), ("_sustained", True)):
        floor = [floors.work_s(batch, n, sustained) for n in positions]
        if floor and None not in floor:
            row[f"floor_sum_work{suffix}_s"] = sum(floor)
            row[f"floor_ratio_work{suffix}"] = row["wall_s"] / row[f"floor_sum_work{suffix}_s"]


def phase_name(batch: int, cache: str, k: int, mode: str) -> str:
    """The ``--clocks`` phase of a setting's timed decodes."""
    return f"b{batch} {cache} k={k} {mode}"


def _agreement(tokens: torch.Tensor, reference: torch.Tensor, prompt_length: int) -> tuple[bool, float]:
    """(every generated token equal, the share of generated positions equal) of two decodes [B, P + G]."""
    same = tokens[:, prompt_length:] == reference[:, prompt_length:].to(tokens.device)  # [B, G]
    return bool(same.all()), same.float().mean().item()


def wide_reference(model, prompt: torch.Tensor, args, floors: Floors) -> dict:
    """``--fp32-check``: plain eager on a copy of ``model``'s weights in fp32 (float64 for an fp32 model).
    Returns {"dtype", "tokens": {(cache, k): [B, P + G] on the CPU}, "logits": {kind: [B, rows, V] on the CPU},
    "decodes": [{cache, k, wall_s, tokens_sha1}]}; the copy is freed before returning, so the timed modes' peak
    memory does not hold it."""
    dtype = torch.float64 if next(model.parameters()).dtype == torch.float32 else torch.float32
    wide = build_model(args.family, args.small, args.device, dtype, weights_from=model)
    clocks, args.clocks = args.clocks, ClockSampler()  # the fp32 decodes' phases would share the bf16 ones' names
    out = {"dtype": str(dtype), "tokens": {}, "logits": {}, "decodes": []}
    for k in args.ks:
        for cache in (c for c in args.caches if c in args.fp32_check):
            row, tokens = run_setting(wide, prompt, cache, k, args, "plain", floors, None)
            out["tokens"][(cache, k)] = tokens.cpu()
            out["decodes"].append({"batch": prompt.shape[0], "cache": cache, "tokens_per_step": k, "dtype": str(dtype),
                                   "wall_s": row["wall_s"], "tokens_sha1": row["tokens_sha1"]})
    once = copy.copy(args)
    once.forward_repeats, once.forward_profile = 1, False  # the fp32 forwards give logits, not timings
    for f in time_forwards(wide, prompt.shape[0], once, "plain", floors, args.device):
        out["logits"][f["kind"]] = f["logits"].cpu()
    del wide
    args.clocks = clocks
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return out


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(p, device="cuda" if torch.cuda.is_available() else "cpu")
    canvas_arguments(p)
    p.add_argument("--batches", default="1", help="batch sizes, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--forward-repeats", type=int, default=10)
    p.add_argument("--ks", default="1,4", help="tokens per step, comma-separated")
    p.add_argument("--caches", default="none,prefix,dual", help="registered cache policies, comma-separated")
    p.add_argument("--modes", default="plain,graphs,compiled", help=f"of {', '.join(MODES)}; plain always runs")
    p.add_argument("--profile", nargs="?", const="all", default=None,
                   help="write torch.profiler kernel tables (plain and the last mode; dual cache, largest k) for "
                        "every batch, or for the comma-separated batches given")
    p.add_argument("--forward-profile", action="store_true",
                   help="profile each timed single forward once more without graphs: GPU kernel time by kind")
    p.add_argument("--fp32-check", default="", metavar="CACHES",
                   help="decode these caches' settings (comma-separated) and the timed forwards once more, plain eager "
                        "on an fp32 copy of the weights (float64 for an fp32 model), and compare every mode with it")
    p.add_argument("--gemm-plan", default=None, metavar="RESULT_JSON",
                   help="tuned mode installs the GEMM plan an earlier bench_gpu run recorded for the same batch, "
                        "cache and k (use_gemm_plan) instead of timing a new one: a re-run with the same backend choices")
    p.add_argument("--clocks", action="store_true",
                   help="sample the GPU's SM clock, power and throttle reasons with nvidia-smi during each setting's "
                        "timed decodes (each setting's clocks field; the ceilings' too)")
    p.add_argument("--sustained-ceiling", type=float, default=0.0, metavar="SECONDS",
                   help="also measure the matmul rate over SECONDS of back-to-back load (the rate under the GPU's "
                        "power limit) and report every decode against floors at that rate too (floor_ratio_sustained)")
    args = p.parse_args(argv)
    if args.family not in fastdllm.model_adapters:
        p.error(f"--family {args.family!r} is not a registered model adapter: {fastdllm.model_adapters.names()}")
    for cache in _csv(args.caches):
        if cache not in cache_policies:
            p.error(f"--caches: {cache!r} is not a registered cache policy: {cache_policies.names()}")
    modes = _csv(args.modes)
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"--modes: unknown {bad}; choose from {', '.join(MODES)}")
    requested = list(modes)
    if args.device != "cuda":
        modes = [m for m in modes if m not in CUDA_MODES]  # graphs and compile are CUDA-only; fused runs eagerly
    modes = [m for m in modes if m != "plain"] or ["eager"]
    args.modes = ["plain"] + modes
    args.batches, args.ks, args.caches = [int(b) for b in _csv(args.batches)], [int(k) for k in _csv(args.ks)], _csv(args.caches)
    args.fp32_check = _csv(args.fp32_check)
    if any(c not in args.caches for c in args.fp32_check):
        p.error(f"--fp32-check {','.join(args.fp32_check)}: each must be one of --caches {','.join(args.caches)}")
    if any(b < 1 for b in args.batches) or any(k < 1 or args.gen_length % k for k in args.ks):
        p.error("--batches must be >= 1 and every --ks must divide --gen-length")
    args.gemm_plan_path, args.gemm_plan = args.gemm_plan, _saved_plans(p, args, requested) if args.gemm_plan else None
    return args


def _saved_plans(p: argparse.ArgumentParser, args, requested: list[str]) -> dict[tuple[int, str, int], list[dict]]:
    """--gemm-plan: (batch, cache, k) -> the tuned records of that earlier run; every setting this run will tune
    must have one (checked before the model is built)."""
    try:
        settings = json.loads(Path(args.gemm_plan).read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        p.error(f"--gemm-plan {args.gemm_plan}: not a bench_gpu result file ({type(err).__name__}: {err})")
    plans = {(r["batch"], r["cache"], r["tokens_per_step"]): r["gemm_plan"] for r in settings
             if r.get("mode") == "tuned" and r.get("gemm_plan")}
    missing = [(b, c, k) for b in args.batches for c in args.caches for k in args.ks if (b, c, k) not in plans]
    if missing:
        p.error(f"--gemm-plan {args.gemm_plan} has no tuned plan for (batch, cache, k) {missing}; it has {sorted(plans)}")
    if "tuned" not in requested:
        p.error(f"--gemm-plan is for the tuned mode: --modes {','.join(requested)} lacks it")
    return plans


def main(argv=None) -> dict:
    args = parse(argv)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = build_model(args.family, args.small, args.device, dtype)
    params = sum(t.numel() for t in model.parameters())
    clocks = args.clocks
    args.clocks = ClockSampler().start() if clocks and args.device == "cuda" else ClockSampler()
    with args.clocks.phase("ceilings"):
        ceil = ceilings(args.device)
    if args.sustained_ceiling > 0 and ceil:
        with args.clocks.phase("held matmul rate"):
            ceil.update(held_matmul_rate(args.device, args.sustained_ceiling))
    floors = Floors(params, params * dtype.itemsize, ceil,
                    Work.of(model, args.prompt_length + args.gen_length, args.block_length, dtype.itemsize))
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"),
           "command": "python experiments/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "family": args.family, "model": "tiny" if args.small else f"{args.family} reference shape, random weights",
           "params": params, "weight_bytes": floors.weight_bytes, "dtype": str(dtype),
           "prompt_length": args.prompt_length, "gen_length": args.gen_length, "block_length": args.block_length,
           "modes": args.modes, "ceilings": ceil, "settings": [], "forwards": [], "profiles": [], "errors": [],
           "fp32_reference": []}
    if ceil:
        canvas = args.prompt_length + args.gen_length
        out["floors_ms"] = {"weight_read": 1000 * floors.forward_s(0),
                            "full_canvas_forward_b1": 1000 * floors.forward_s(canvas)}
    stop = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # gpu_all.sh's `timeout`: keep what was measured
    try:
        _measure(model, args, floors, out)
    finally:
        signal.signal(signal.SIGTERM, stop)
        if clocks:  # attached when the run ends, cut or not
            sampled = args.clocks.stop()
            phases = sampled.pop("by_phase", {})
            out["clocks"] = {**sampled, "ceilings": phases.get("ceilings"),
                             "held_matmul_rate": phases.get("held matmul rate")}
            for row in out["settings"]:
                row["clocks"] = phases.get(phase_name(row["batch"], row["cache"], row["tokens_per_step"], row["mode"]))
        save(out, args.out)
    return out


def _stop_on_sigterm(signum, frame):
    raise SystemExit("bench_gpu.py: terminated (SIGTERM, a time limit); the settings measured so far are saved")


def _measure(model, args, floors: Floors, out: dict) -> None:
    """Every batch × k × cache × mode setting, then each batch's single forwards (and profiles), into ``out``,
    saved after each."""
    gen = torch.Generator().manual_seed(1)
    for batch in args.batches:
        prompt = torch.randint(0, model.mask_token_id, (batch, args.prompt_length), generator=gen).to(args.device)
        wide = wide_reference(model, prompt, args, floors) if args.fp32_check else None
        if wide:
            out["fp32_reference"] += wide["decodes"]
        for k in args.ks:
            for cache in args.caches:
                plain_tokens = None
                for mode in args.modes:
                    try:
                        row, tokens = run_setting(model, prompt, cache, k, args, mode, floors, plain_tokens)
                    except Exception as err:  # noqa: BLE001 - recorded in the result, the other settings still run
                        set_mode(model, "plain")
                        out["errors"].append(f"b{batch} {cache} k={k} {mode}: {type(err).__name__}: {err}")
                        print(out["errors"][-1], flush=True)
                        continue
                    plain_tokens = tokens if mode == "plain" else plain_tokens
                    if wide and (cache, k) in wide["tokens"]:
                        row["tokens_equal_fp32"], row["token_agreement_fp32"] = _agreement(
                            tokens, wide["tokens"][(cache, k)], args.prompt_length)
                    out["settings"].append(row)
                    ratio = f"{row['floor_ratio']:.2f}x floor" if "floor_ratio" in row else ""
                    ratio += f" {row['floor_ratio_work']:.2f}x work" if "floor_ratio_work" in row else ""
                    print(f"b{batch} {cache:>6} k={k} {mode:>8}: NFE {row['nfe']:4d} {row['tokens_per_s']:8.1f} tok/s "
                          f"{row['ms_per_forward']:7.2f} ms/fwd {ratio} equal={row.get('tokens_equal_plain', '-')}"
                          + (f" fp32 agreement {100 * row['token_agreement_fp32']:.0f} %" if "token_agreement_fp32" in row
                             else ""),
                          flush=True)
                    save(out, args.out)
        out["forwards"] += forward_records(model, batch, args, floors, wide, out["errors"])
        save(out, args.out)
        if args.profile and args.out and (args.profile == "all" or str(batch) in _csv(args.profile)):
            cache = "dual" if "dual" in args.caches else args.caches[0]
            for mode in ("plain", args.modes[-1]):
                path = Path(args.out).with_name(f"{Path(args.out).stem}_profile_b{batch}_{mode}.txt")
                try:
                    out["profiles"].append(profile_decode(model, prompt, cache, max(args.ks), args, mode, path))
                except Exception as err:  # noqa: BLE001
                    set_mode(model, "plain")
                    out["errors"].append(f"b{batch} profile {mode}: {type(err).__name__}: {err}")
        save(out, args.out)


def save(out: dict, path: str | None) -> None:
    """Written after every setting: a run cut short keeps what it measured."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
