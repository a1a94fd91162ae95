"""Each decode and forward of earlier ``bench_gpu.py`` result files against its **work floor**, added in place.

``bench_gpu.py`` records the work floor (``bench_floors.Work``: the bytes and flops a forward's own work needs)
since it was introduced; for files measured before, this script computes it from what the file holds: the
family and shape (reference or tiny), the dtype, the canvas, the ceilings measured in that run and each
decode's forwards. Those forwards depend only on the cache policy, k and the canvas (fixed-k unmasking), so the
same decode on the family's tiny model on the CPU, batch 1, gives them (``bench_gpu.run_setting``'s plans).
The measured figures are not touched; each file gets ``floor_sum_work_s`` / ``floor_ratio_work`` (and the
``_sustained`` pair where the held matmul rate was measured) per setting, ``floor_work_ms`` / ``floor_ratio_work``
per forward, and ``work_floors_added`` naming this script and the commit.

    python experiments/work_floors.py experiments/results/speed/h200_c21b536
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_floors import SMALL, Floors, Work, build_model  # noqa: E402
from bench_gpu import work_floors  # noqa: E402

import fastdllm  # noqa: E402


def forward_positions(family: str, cache: str, k: int, prompt_length: int, gen_length: int, block_length: int) -> list[int]:
    """The positions per sequence each forward of that decode recomputes (its cache plans), from a batch-1 decode
    of the family's tiny model on the CPU."""
    model = build_model(family, True, "cpu", torch.float32)
    decoder = fastdllm.DiffusionDecoder(model, cache=cache, unmask={"name": "fixed", "steps": gen_length // k},
                                        gen_length=gen_length, block_length=block_length)
    plans = []
    prompt = torch.randint(0, model.mask_token_id, (1, prompt_length), generator=torch.Generator().manual_seed(1))
    decoder.generate(prompt, callbacks=[lambda e: plans.append(e.plan.end - e.plan.start)])
    return plans


def shape_work(d: dict) -> tuple[Work, int]:
    """The file's model as ``Work`` over its canvas, and its logit shift; refuses a file whose recorded parameter
    count is not that shape's."""
    family, small = d["family"], d["model"] == "tiny"
    cls = fastdllm.model_adapters.get(family)
    config = {**cls.reference_config(), **(SMALL[family] if small else {})}
    with torch.device("meta"):
        model = cls(config)
    params = sum(t.numel() for t in model.parameters())
    if params != d["params"]:
        raise SystemExit(f"{d['_path']}: {params} parameters at the {family} {'tiny' if small else 'reference'} "
                         f"shape, the file records {d['params']}: not a shape this script knows")
    itemsize = getattr(torch, d["dtype"].removeprefix("torch.")).itemsize
    return Work.of(model, d["prompt_length"] + d["gen_length"], d["block_length"], itemsize), model.logit_shift


def add_work_floors(path: Path, commit: str | None) -> bool:
    """Add the work floors to one result file; False (untouched) for a file without settings or ceilings."""
    d = json.loads(path.read_text())
    if "settings" not in d or not d.get("ceilings"):
        return False
    d["_path"] = str(path)
    work, shift = shape_work(d)
    floors = Floors(d["params"], d["weight_bytes"], d["ceilings"], work)
    positions = {}
    for row in d["settings"]:
        key = (row["cache"], row["tokens_per_step"])
        if key not in positions:
            positions[key] = forward_positions(d["family"], *key, d["prompt_length"], d["gen_length"], d["block_length"])
        if len(positions[key]) != row["nfe"]:
            raise SystemExit(f"{path}: {len(positions[key])} forwards rebuilt for {key}, the file records {row['nfe']}")
        work_floors(row, positions[key], row["batch"], floors)
    for f in d.get("forwards", []):
        n = d["prompt_length"] + d["gen_length"] if f["kind"] == "refresh" else d["block_length"] + shift
        if f["rows"] != f["batch"] * n:
            raise SystemExit(f"{path}: a {f['kind']} forward of {f['rows']} rows at batch {f['batch']}; expected {n} each")
        f.update(floors.work_fields(f["batch"], n, f["ms"]))
    del d["_path"]
    d["work_floors_added"] = {"by": "experiments/work_floors.py", "commit": commit}
    path.write_text(json.dumps(d, indent=2))
    return True


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="folders of bench_gpu.py result files (each *.json in them)")
    args = p.parse_args(argv)
    done = []
    for folder in args.folders:
        for path in sorted(Path(folder).glob("*.json")):
            if add_work_floors(path, os.environ.get("FASTDLLM_COMMIT")):
                done.append(path)
                print(f"work floors added: {path}")
    return done


if __name__ == "__main__":
    main()
