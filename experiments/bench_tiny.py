"""Accuracy and speed of every decoding setting on the shipped tiny model (CPU), tracked with W&B.

Writes ``experiments/results/tiny_<family>_cpu.json`` (device, versions, settings, every figure)
and a plot of the threshold sweep (accuracy vs tokens per forward, the shape of the paper's
Figure 5).

    python experiments/bench_tiny.py --n 500                 # the committed results
    python experiments/bench_tiny.py --n 20 --quick          # a smoke run
    python experiments/bench_tiny.py --n 200 --quick --block-length 16 --out results/tiny_llada_block16.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import evaluate, torch_info
from fastdllm.tasks import get_task
from fastdllm.tracking import log_table, start_run

RESULTS = Path(__file__).parent / "results"


def main_settings() -> list[tuple[str, dict]]:
    th, fa = {"name": "threshold", "threshold": 0.9}, {"name": "factor", "factor": 1.0}
    return [
        ("none+fixed", {"cache": "none", "unmask": "fixed"}),
        ("prefix+fixed", {"cache": "prefix", "unmask": "fixed"}),
        ("dual+fixed", {"cache": "dual", "unmask": "fixed"}),
        ("none+threshold0.9", {"cache": "none", "unmask": th}),
        ("prefix+threshold0.9", {"cache": "prefix", "unmask": th}),
        ("dual+threshold0.9", {"cache": "dual", "unmask": th}),
        ("dual+factor1.0", {"cache": "dual", "unmask": fa}),
    ]


def sweep_settings(gen_length: int) -> list[tuple[str, dict]]:
    rows = [(f"threshold{t}", {"cache": "none", "unmask": {"name": "threshold", "threshold": t}})
            for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)]
    rows += [(f"fixed-k{k}", {"cache": "none", "unmask": {"name": "fixed", "steps": gen_length // k}})
             for k in (2, 4)]
    return rows


def plot_sweep(sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    th = [r for r in sweep if r["label"].startswith("threshold")]
    fk = [r for r in sweep if r["label"].startswith("fixed")]
    ax.plot([r["tpf_answer"] for r in th], [100 * r["accuracy"] for r in th], "o-", label="threshold τ")
    for r in th:
        ax.annotate(r["label"].removeprefix("threshold"), (r["tpf_answer"], 100 * r["accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([r["tpf_answer"] for r in fk], [100 * r["accuracy"] for r in fk], "s--", label="fixed k tokens/step")
    ax.set_xlabel("tokens per forward (answer)")
    ax.set_ylabel("exact match (%)")
    ax.set_title("tiny model, held-out arithmetic, no cache")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped tiny model)")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--quick", action="store_true", help="main settings only, no sweep")
    p.add_argument("--block-length", type=int, default=None, help="override the model's stored block_length")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    path = args.model or tiny_model_path()
    model = fastdllm.load_model(path, device="cpu", dtype=torch.float32)
    decode = default_decode_options(path)
    if args.block_length:
        decode["block_length"] = args.block_length
    task = get_task(args.task)
    problems = task.generate("test", args.n, seed=0)
    run = start_run(project="fastdllm", name=f"bench-tiny-{model.name}-{args.task}", job_type="bench",
                    config={"model": str(path), "n": args.n, "task": args.task, **decode, **torch_info()})
    groups = {"main": main_settings()} if args.quick else {"main": main_settings(),
                                                          "sweep": sweep_settings(decode["gen_length"])}
    out: dict = {"model": str(path), "family": model.name, "task": args.task, "n": args.n, "batch_size": args.batch_size, "decode": decode,
                 "env": torch_info(), "date": time.strftime("%Y-%m-%d"), "command": "python experiments/bench_tiny.py "
                 + " ".join(sys.argv[1:] if argv is None else argv), "main": [], "sweep": []}
    for group, settings in groups.items():
        for label, setting in settings:
            report = evaluate(model, problems, task, batch_size=args.batch_size, progress=True, **decode, **setting)
            row = {"label": label, **report.to_dict()}
            out[group].append(row)
            print(f"{group:5} {label:<22} acc {report.accuracy:6.1%}  NFE {report.nfe_mean:5.1f}  "
                  f"TPF {report.tpf_canvas:5.2f}  TPF(ans) {report.tpf_answer:4.2f}  "
                  f"{report.tokens_per_s_canvas:6.0f} tok/s  {report.wall_time_s:6.1f}s", flush=True)
        log_table(run, f"{group}_results", [{k: v for k, v in r.items() if k != "setting"} for r in out[group]])
    base = out["main"][0]
    for row in out["main"]:
        row["speedup"] = base["wall_time_s"] / row["wall_time_s"]
    target = Path(args.out) if args.out else RESULTS / f"tiny_{model.name}_{args.task}_cpu.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2))
    if out["sweep"]:
        plot_sweep(out["sweep"], target.with_suffix(".png"))
    run.summary.update({f"{r['label']}/accuracy": r["accuracy"] for r in out["main"]})
    run.finish()
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
