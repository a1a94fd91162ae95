"""Accuracy and speed of every decoding setting on the shipped tiny model (CPU), tracked with W&B.

Writes ``experiments/results/tiny_<family>_<task>_cpu.json`` (device, versions, settings, every
figure: strict, lenient and chain accuracy per setting), the generated outputs beside it
(``..._outputs.json``, so the answers can be re-read and re-scored without decoding again) and a
plot of the threshold sweep (accuracy vs tokens per forward, the shape of the paper's Figure 5).

Runs on one torch thread by default (``--threads``): on a shared machine one thread is much faster
per forward than two when a core is busy. The load average and this process's share of a CPU
(process CPU time / wall time) are recorded per setting: wall times measured on a busy machine
are slower than on an idle one, and the speedup column compares settings measured under the
load of their own moment.

    python experiments/bench_tiny.py --n 500                 # the committed results
    python experiments/bench_tiny.py --n 20 --quick          # a smoke run
    python experiments/bench_tiny.py --n 200 --quick --block-length 16 --out results/tiny_llada_block16.json
"""

from __future__ import annotations

import argparse
import json
import os
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
    ax.plot([r["tpf_answer"] for r in th], [100 * r["accuracy"] for r in th], "o-", color="C0",
            label="threshold τ, strict")
    ax.plot([r["tpf_answer"] for r in th], [100 * r["accuracy_chain"] for r in th], "o:", color="C0", alpha=0.6,
            label="threshold τ, strict + chain")
    for r in th:
        ax.annotate(r["label"].removeprefix("threshold"), (r["tpf_answer"], 100 * r["accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([r["tpf_answer"] for r in fk], [100 * r["accuracy"] for r in fk], "s--", color="C1",
            label="fixed k tokens/step, strict")
    ax.plot([r["tpf_answer"] for r in fk], [100 * r["accuracy_chain"] for r in fk], "s:", color="C1", alpha=0.6,
            label="fixed k, strict + chain")
    ax.set_xlabel("tokens per forward (answer)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("tiny model, held-out arithmetic, no cache")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: robust on a shared machine)")
    p.add_argument("--scorer", default=None, help="scorer behind 'accuracy' (default: the task's, strict)")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. what else loaded the machine)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1 or args.threads < 1:
        p.error(f"--n, --batch-size and --threads must be >= 1, got {args.n}, {args.batch_size}, {args.threads}")
    torch.set_num_threads(args.threads)
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
                 + " ".join(sys.argv[1:] if argv is None else argv), "note": args.note,
                 "commit": os.environ.get("FASTDLLM_COMMIT") or _git_commit(), "main": [], "sweep": []}
    outputs: dict[str, list[str]] = {}
    done: dict[str, dict] = {}  # identical settings (the sweep's threshold 0.9 is main's none+threshold0.9) run once
    for group, settings in groups.items():
        for label, setting in settings:
            key = json.dumps(setting, sort_keys=True)
            if key in done:
                row = {**done[key], "label": label, "same_run_as": done[key]["label"]}
                out[group].append(row)
                continue
            load_before, cpu_before = os.getloadavg()[0], time.process_time()
            started = time.perf_counter()
            report = evaluate(model, problems, task, batch_size=args.batch_size, progress=True, keep_rows=True,
                              scorer=args.scorer, **decode, **setting)
            elapsed = time.perf_counter() - started
            row = {"label": label, **report.to_dict(), "load_avg_1min": [load_before, os.getloadavg()[0]],
                   "cpu_share": (time.process_time() - cpu_before) / max(elapsed, 1e-9)}
            outputs[label] = [r["output"] for r in report.rows]
            done[key] = row
            out[group].append(row)
            print(f"{group:5} {label:<22} strict {report.accuracy:6.1%}  lenient {report.accuracy_lenient:6.1%}  "
                  f"chain {_pct(report.accuracy_chain)}  NFE {report.nfe_mean:5.1f}  "
                  f"TPF {report.tpf_canvas:5.2f}  TPF(ans) {report.tpf_answer:4.2f}  "
                  f"{report.tokens_per_s_canvas:6.0f} tok/s  {report.wall_time_s:6.1f}s  "
                  f"load {row['load_avg_1min'][1]:.1f}  cpu share {row['cpu_share']:.2f}", flush=True)
        log_table(run, f"{group}_results", [{k: v for k, v in r.items() if k != "setting"} for r in out[group]])
    base = out["main"][0]
    for row in out["main"]:
        row["speedup"] = base["wall_time_s"] / row["wall_time_s"]
    target = Path(args.out) if args.out else RESULTS / f"tiny_{model.name}_{args.task}_cpu.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2))
    target.with_name(target.stem + "_outputs.json").write_text(json.dumps(
        {"command": out["command"], "prompts": [p.prompt for p in problems], "targets": [p.answer for p in problems],
         "outputs": outputs}, indent=0))
    if out["sweep"]:
        plot_sweep(out["sweep"], target.with_suffix(".png"))
    run.summary.update({f"{r['label']}/accuracy": r["accuracy"] for r in out["main"]})
    run.finish()
    print(f"wrote {target}")


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.1%}"


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
