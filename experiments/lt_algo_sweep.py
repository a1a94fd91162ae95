"""cuBLASLt's ranked candidates (``fastdllm.kernels.lt_algos``) against PyTorch's two BLAS paths, per projection
and row count of a prefix-cache window or cached step.

For each fused weight shape of a family's layer and each row count, every candidate the heuristic returns
(up to ``--max-algos``) is checked against an fp32 ``F.linear`` and timed as a forward runs it: a CUDA graph
of one product per rotating weight copy (every weight read from DRAM), all candidates' graphs replayed in
interleaved rounds (``gemm_plan.graph_times_us``). Times are against the weight's read time and the matmul
time at the rates measured here (``bench_gpu.ceilings``).

    python experiments/lt_algo_sweep.py --family llada --rows 32,96,128,160,192,224,256 --out $OUT/lt_llada.json
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
from gemm_sweep import LAYER_SHAPES  # noqa: E402

from fastdllm.evaluation import torch_info  # noqa: E402
from fastdllm.kernels import gemm_plan, lt_algos  # noqa: E402

BIASED = {"dream": {"qkv"}}  # projections with a bias


def header_check() -> dict:
    """Our enum values against the headers next to the loaded library (if the wheel ships them); a name no
    header defines is listed with None (``lt_algos`` refuses only values that differ)."""
    lib = lt_algos.library_path() or ""
    headers = lt_algos.header_paths(lib)
    return {"library": lib, "headers": headers, "mismatches": lt_algos.check_header(headers) if headers else None}


def prescreen_us(lt: lt_algos.LtGemm, ranks, x, copies, b, calls: int = 6) -> dict[int, float]:
    """A quick µs per product for each candidate rank: ``calls`` products over the weight copies between two CUDA
    events, each candidate's run behind a ~0.4 ms sleep kernel so that the host has queued its launches before
    the GPU reaches them (the ctypes call costs more host time than a small product takes); one synchronisation
    at the end. A candidate that fails to launch is left out."""
    events = {}
    for rank in ranks:
        try:
            lt(rank, x, copies[0], b)
        except RuntimeError:
            continue
        torch.cuda._sleep(800_000)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(calls):
            lt(rank, x, copies[i % len(copies)], b)
        end.record()
        events[rank] = (start, end)
    torch.cuda.synchronize()
    return {rank: start.elapsed_time(end) * 1e3 / calls for rank, (start, end) in events.items()}


def sweep_shape(family: str, name: str, rows: str, max_algos: int, ceil: dict, gen: torch.Generator, enumerate_keep: int = 0,
                prescreen_max: int = 1500, stop_at: float = float("inf")):
    """One record per row count for projection ``name``: every candidate checked and graph-timed. With
    ``enumerate_keep``, the configurations beyond the heuristic's (``LtGemm.add_configurations``, over the algorithm
    ids, stage ids and cluster shapes the heuristic's own candidates use, every tile and split-K count) are prescreened
    (``prescreen_us``; at most ``prescreen_max`` of them, evenly spread over the enumeration order) and the
    ``enumerate_keep`` fastest join the heuristic's candidates in the graph timing. No row starts after ``stop_at``
    (``time.time()``)."""
    N, K = LAYER_SHAPES[family][name]
    if time.time() > stop_at:  # before the ~400 MB of weight copies
        print(f"deadline: {name} not swept", flush=True)
        yield {"gemm": name, "not_swept": rows}
        return
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02  # [N, K]
    copies = [w] + [w.clone() for _ in range(max(2, int(4e8 // (N * K * 2))))]
    has_bias = name in BIASED.get(family, ())
    b = torch.randn(N, device="cuda", dtype=torch.bfloat16, generator=gen) if has_bias else None  # [N]
    floor_read = N * K * 2 / ceil["copy_bytes_per_s"] * 1e6
    for M in (int(r) for r in rows.split(",")):
        if time.time() > stop_at:
            print(f"deadline: {name} from {M} rows on not swept", flush=True)
            yield {"gemm": name, "not_swept": ",".join(r for r in rows.split(",") if int(r) >= M)}
            return
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=gen)  # [M, K]
        ref = F.linear(x.float(), w.float(), None if b is None else b.float())  # [M, N]
        lt = lt_algos.LtGemm(M, N, K, torch.bfloat16, has_bias, max_algos=max_algos)
        heuristic = len(lt)
        ranks, screen = list(range(heuristic)), {}
        if enumerate_keep:
            t_enum = time.time()
            used = [lt.describe(r) for r in range(heuristic)]  # the heuristic's algorithm ids, stages and clusters
            def known(key: str) -> list[int]:  # the values the heuristic's candidates have (None: no such attribute)
                return sorted({c[key] for c in used if c[key] is not None})

            screen["enumeration"] = lt.add_configurations(ids=known("id"), stages=known("stages_id") or None,
                                                          clusters=sorted(set(known("cluster_shape_id")) | {0, 2}),  # 2: 1x1x1
                                                          customs=sorted(set(known("custom_option")) | {0}))
            screen["enumeration"]["seconds"] = time.time() - t_enum
            enumerated = range(heuristic, len(lt))
            step = max(1, -(-len(enumerated) // prescreen_max))  # ceil: at most prescreen_max of them
            quick = prescreen_us(lt, [*range(heuristic), *enumerated[::step]], x, copies, b)
            extra = sorted((t, r) for r, t in quick.items() if r >= heuristic)
            ranks += [r for _, r in extra[:enumerate_keep]]
            screen.update(prescreened=len(quick), prescreen_step=step, seconds=time.time() - t_enum,
                          heuristic_best_us=min((t for r, t in quick.items() if r < heuristic), default=None),
                          enumerated_best_us=extra[0][0] if extra else None)
        calls = {"default": lambda wt: F.linear(x, wt, b),
                 "cublaslt": lambda wt: gemm_plan.run("cublaslt", x, wt, b)}
        errors = {}
        for rank in ranks:  # each candidate, and a heuristic one through the plan's backend name
            y = lt(rank, x, w, b)
            if rank < heuristic:
                assert torch.equal(y, gemm_plan.run(f"lt{rank}", x, w, b)), f"lt{rank} differs through gemm_plan.run"
            errors[rank] = err = (y.float() - ref).abs().max().item() / ref.abs().max().item()
            if err < 0.02:
                calls[f"lt{rank}"] = lambda wt, r=rank: lt(r, x, wt, b)
        shifted = torch.empty(M * K + 8, device="cuda", dtype=torch.bfloat16)[8:].view(M, K).copy_(x)  # 16-byte offset
        assert not lt.fits(shifted, w, b) and torch.equal(gemm_plan.run("lt0", shifted, w, b),
                                                          gemm_plan.run("default", shifted, w, b)), "no fallback"
        us = gemm_plan.graph_times_us(calls, copies)
        floor = max(floor_read, 2 * M * N * K / ceil["matmul_flop_per_s"] * 1e6)
        ranked = sorted((t, k) for k, t in us.items() if k.startswith("lt"))
        row = {"gemm": name, "rows": M, "N": N, "K": K, "bias": has_bias, "floor_us": floor, "candidates_offered": len(lt),
               "weight_read_us": floor_read, "us": us, "relative_error": errors,
               "candidates": {f"lt{r}": lt.describe(r) for r in ranks}, "heuristic_candidates": heuristic,
               **({"enumerated": screen} if screen else {})}
        if ranked:
            best_us, best = ranked[0]
            row.update(best=best, best_us=best_us, best_floor_ratio=best_us / floor,
                       best_vs_torch=best_us / min(us["default"], us["cublaslt"]))
        yield row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--family", default="llada", choices=sorted(LAYER_SHAPES))
    p.add_argument("--rows", default="32,96,128,160,192,224,256")
    p.add_argument("--shapes", default="qkv,o_proj,gate_up,down")
    p.add_argument("--enumerate", type=int, default=0, metavar="KEEP",
                   help="also enumerate cuBLASLt's configurations beyond its heuristic (LtGemm.add_configurations), "
                        "prescreen them and graph-time the KEEP fastest")
    p.add_argument("--prescreen-max", type=int, default=1500, help="with --enumerate: the most configurations prescreened per shape")
    p.add_argument("--deadline", type=float, default=0, help="start no row once this many seconds have passed")
    p.add_argument("--max-algos", type=int, default=lt_algos.MAX_ALGOS, choices=range(1, lt_algos.MAX_ALGOS + 1),
                   metavar=f"1..{lt_algos.MAX_ALGOS}")
    args = p.parse_args()
    t0 = time.time()
    check = header_check()
    print("header", check, flush=True)
    differ = {k: v for k, v in (check.get("mismatches") or {}).items() if v[1] is not None}
    if differ:
        raise SystemExit(f"lt_algos.ENUMS disagree with {check['headers']}: {differ}")
    ceil = bench_gpu.ceilings("cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {"env": torch_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "commit": os.environ.get("FASTDLLM_COMMIT"), "command": "python experiments/lt_algo_sweep.py " + " ".join(sys.argv[1:]),
           "header": check, "ceilings": ceil, "gemm": []}
    stop_at = t0 + args.deadline if args.deadline else float("inf")
    for name in args.shapes.split(","):
        for row in sweep_shape(args.family, name, args.rows, args.max_algos, ceil, gen, args.enumerate,
                               args.prescreen_max, stop_at):
            if "not_swept" in row:  # the deadline passed: recorded, nothing to print
                out.setdefault("not_swept", []).append(row)
                bench_gpu.save(out, args.out)
                continue
            out["gemm"].append(row)
            us = row["us"]
            print(f"{name} {row['rows']}: floor {row['floor_us']:.1f} default {us['default']:.1f} cublaslt "
                  f"{us['cublaslt']:.1f} lt0 {us.get('lt0', float('nan')):.1f} best {row.get('best')} "
                  f"{row.get('best_us', float('nan')):.1f} ({row['candidates_offered']} candidates, "
                  f"{row['candidates'].get(row.get('best'), {})}) {row.get('enumerated', '')}", flush=True)
            bench_gpu.save(out, args.out)
    out["seconds"] = time.time() - t0
    bench_gpu.save(out, args.out)


if __name__ == "__main__":
    main()
