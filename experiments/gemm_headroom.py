"""What a perfect GEMM would give each prefix-cache decode of a ``bench_gpu.py`` result file.

A ``tuned`` decode's file holds the GEMM plan it ran with (``gemm_plan``: for each fused projection shape and each
row count its forwards use, every backend's µs per product, timed in that run, and the backend chosen). Each
forward of a prefix decode runs every layer's projections at one row count; which, forward by forward, is what the
package's own decoder plans (``work_floors.forward_positions``, a decode of the family's tiny model on the CPU). If
every one of those products ran at its floor — max(weight bytes / copy rate, 2·N·K·rows / matmul rate), the rates
measured in the same run, the matmul rate the one held under load where the file has it — the decode would save,
per forward, the layers times the sum over the shapes of (the chosen backend's time − that floor). This script
prints, per prefix decode, the wall time, the floor sum, the saving and the ratio the decode would reach. The plan's
times were taken by ``tune_gemms`` before the decodes, at the clock the GPU ran then, and the floors use the rate
held over a 6 s load: a product timed under its floor (the large refreshes can be) counts as no saving. The LM head
and the last layer's products on the logit rows are left as measured (they are not in the plan's row counts of a
window). No GPU: it reads the file and decodes the tiny model.

    python experiments/gemm_headroom.py experiments/results/speed/h200_346a220/gpu_llada_b1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from work_floors import forward_positions  # noqa: E402

import fastdllm  # noqa: E402


def product_us(record: dict) -> float:
    """µs per product of the backend the plan chose for this shape and row count (``default`` where none)."""
    return record["us"][record.get("choice") or "default"]


def floor_us(record: dict, copy_bytes_per_s: float, matmul_flop_per_s: float, bytes_per_weight: int = 2) -> float:
    """The product's floor: the weight read or the matmul, whichever takes longer."""
    n, k, rows = record["N"], record["K"], record["rows"]
    return max(n * k * bytes_per_weight / copy_bytes_per_s, 2 * n * k * rows / matmul_flop_per_s) * 1e6


def headroom(run: dict, layers: int, held: bool = True) -> list[dict]:
    """One record per batch-1 prefix decode that ran with a GEMM plan: wall, floor sum and the saving of GEMMs at
    their floors (ms), and the ratios before and after."""
    ceil = run["ceilings"]
    rate = ceil.get("matmul_flop_per_s_sustained") if held else None
    rate = rate or ceil["matmul_flop_per_s"]
    out = []
    for s in run["settings"]:
        if s["cache"] != "prefix" or s["batch"] != 1 or not s.get("gemm_plan"):
            continue
        excess = {}  # rows -> ms per forward above the floors, all layers
        for record in s["gemm_plan"]:
            gap = product_us(record) - floor_us(record, ceil["copy_bytes_per_s"], rate)
            excess[record["rows"]] = excess.get(record["rows"], 0.0) + max(gap, 0.0) * layers / 1e3
        rows = forward_positions(run["family"], "prefix", s["tokens_per_step"], run["prompt_length"], run["gen_length"],
                                 run["block_length"])
        if len(rows) != s["nfe"]:
            raise ValueError(f"gemm_headroom: {len(rows)} forwards rebuilt for prefix k={s['tokens_per_step']}, the file "
                             f"records {s['nfe']}")
        missing = sorted({r for r in rows if r not in excess})
        if missing:
            raise ValueError(f"gemm_headroom: the plan of {s['mode']} k={s['tokens_per_step']} has no entry for {missing} rows")
        saving = sum(excess[r] for r in rows)
        wall, floor = s["wall_s"] * 1e3, s["floor_sum_s"] * 1e3
        out.append({"mode": s["mode"], "k": s["tokens_per_step"], "forwards": len(rows), "wall_ms": wall,
                    "floor_sum_ms": floor, "saving_ms": saving, "ratio": wall / floor, "ratio_after": (wall - saving) / floor,
                    "rate": "held" if rate != ceil["matmul_flop_per_s"] else "burst"})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="bench_gpu.py result files (batch 1, prefix cache, a tuned mode)")
    p.add_argument("--burst", action="store_true", help="floors at the burst matmul rate the decode's floor sum uses")
    args = p.parse_args()
    for path in args.files:
        run = json.loads(Path(path).read_text())
        cls = fastdllm.model_adapters.get(run["family"])
        layers = cls.arch_from_hf(cls.reference_config()).n_layers  # the files are of the reference shapes
        for r in headroom(run, layers, held=not args.burst):
            print(f"{path}: {run['family']} prefix k={r['k']} {r['mode']}: {r['forwards']} forwards, wall {r['wall_ms']:.0f} ms, "
                  f"floor sum {r['floor_sum_ms']:.0f} ms ({r['ratio']:.2f}x); GEMMs at their floors ({r['rate']} rate) "
                  f"would save {r['saving_ms']:.0f} ms -> {r['ratio_after']:.2f}x")


if __name__ == "__main__":
    main()
