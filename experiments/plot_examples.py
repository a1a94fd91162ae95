"""Example figures on the shipped tiny model (CPU): run folders for a few settings, their plots, and the
key/value similarity figure. Writes ``experiments/results/examples/`` (the run folders' summaries, the
PNGs, ``kv_similarity.json``) and ``experiments/results/plot_examples.json`` (command, env, what was drawn).

    python experiments/plot_examples.py --n 24
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.analysis.kv_similarity import kv_similarity, plot_kv_similarity
from fastdllm.analysis.run_folder import write_run_folder
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import torch_info
from fastdllm.plots import plot_runs
from fastdllm.tasks import get_task

RESULTS = Path(__file__).parent / "results"
SETTINGS = [
    ("none+fixed", {"cache": "none", "unmask": "fixed"}),
    ("prefix+threshold0.9", {"cache": "prefix", "unmask": {"name": "threshold", "threshold": 0.9}}),
    *[(f"dual+threshold{t}", {"cache": "dual", "unmask": {"name": "threshold", "threshold": t}})
      for t in (0.5, 0.7, 0.8, 0.9, 1.0)],
    ("dual+factor1.0", {"cache": "dual", "unmask": {"name": "factor", "factor": 1.0}}),
]
ORDER_RUNS = ("none+fixed", "dual+threshold0.9")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=24, help="held-out arithmetic problems per setting")
    parser.add_argument("--kv-samples", type=int, default=4, help="prompts decoded for the K/V similarity figure")
    parser.add_argument("--out", type=Path, default=RESULTS / "examples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replot", action="store_true", help="redraw from the committed JSON (no decoding)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    path = tiny_model_path()
    model = fastdllm.load_model(path, device="cpu", dtype=torch.float32)
    decode = default_decode_options(path)
    task = get_task("arithmetic")
    problems = task.generate("test", args.n, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    kept = args.out / "runs"
    if not args.replot:
        with tempfile.TemporaryDirectory() as tmp:
            for name, setting in SETTINGS:
                run = write_run_folder(Path(tmp) / name, model, problems, task, name=name, batch_size=args.n,
                                       **decode, **setting)
                keep = kept / name  # the summaries (the pareto/threshold plots' data), two runs' samples
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(run / "summary.json", keep)
                if name in ORDER_RUNS:
                    shutil.copy(run / "samples.jsonl", keep)
    figures = plot_runs([kept / name for name, _ in SETTINGS], args.out)
    sim_path = args.out / "kv_similarity.json"
    if not args.replot:
        prompts = [p.prompt for p in problems[:args.kv_samples]]
        sim_path.write_text(json.dumps(kv_similarity(model, prompts, **decode), indent=2) + "\n")
    figures.append(plot_kv_similarity(json.loads(sim_path.read_text()), args.out / "kv_similarity.png"))
    record = {"command": " ".join([sys.executable.split("/")[-1], *sys.argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "env": torch_info(), "model": str(path), "n": args.n, "decode": decode,
              "settings": dict(SETTINGS), "figures": [str(f.relative_to(RESULTS)) for f in figures],
              "wall_time_s": time.time() - started,
              "note": "tokens/s measured on a shared 2-core CPU under load from other jobs: relative only"}
    if args.replot:  # keep the record of the run that decoded; note the redraw
        old = json.loads((RESULTS / "plot_examples.json").read_text())
        record = {**old, "figures": record["figures"], "redrawn": record["date"], "redraw_command": record["command"]}
    (RESULTS / "plot_examples.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(str(f) for f in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
