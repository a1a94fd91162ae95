"""The four policies beyond the paper on the shipped tiny model (CPU), next to the baseline and Fast-dLLM.

Each setting decodes the same held-out arithmetic problems with ``fastdllm.evaluation.evaluate`` at the
model's stored decode setting (gen_length 64, block_length 8): accuracy, forwards (NFE) per sequence,
tokens per forward over the canvas and over the answer, refresh forwards, positions recomputed and
wall time. The drift cache is swept over its tolerance and plotted.

    python experiments/bench_policies.py --n 200            # the committed results
    python experiments/bench_policies.py --n 20 --only dual  # a smoke run
    python experiments/bench_policies.py --render experiments/results/policies_tiny_cpu.json  # docs table
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

RESULTS = Path(__file__).parent / "results"
TH = {"name": "threshold", "threshold": 0.9}


def main_settings() -> list[tuple[str, dict]]:
    return [
        ("none+fixed", {"cache": "none", "unmask": "fixed"}),
        ("dual+threshold0.9", {"cache": "dual", "unmask": TH}),
        ("prompt-reuse+threshold0.9", {"cache": "prompt-reuse", "unmask": TH}),
        ("dual+entropy-bounded0.1", {"cache": "dual", "unmask": {"name": "entropy-bounded", "gamma": 0.1}}),
        ("dual+entropy-bounded1.0", {"cache": "dual", "unmask": {"name": "entropy-bounded", "gamma": 1.0}}),
        ("dual+kl-stable", {"cache": "dual", "unmask": {"name": "kl-stable"}}),
        ("dual+kl-stable-h1", {"cache": "dual", "unmask": {"name": "kl-stable", "history": 1}}),
    ]


def drift_settings(tolerances: list[float]) -> list[tuple[str, dict]]:
    return [(f"drift{t:g}+threshold0.9" if t < 1e6 else "drift-never+threshold0.9",
             {"cache": {"name": "drift", "tolerance": t}, "unmask": TH}) for t in tolerances]


class CountingModel:
    """The model, counting the batch-level forwards and the positions they recompute (the decoder's own
    ``recomputed_positions`` is not in ``evaluate``'s report)."""

    def __init__(self, model) -> None:
        self.model, self.forwards, self.refreshes, self.positions = model, 0, 0, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_step(self, canvas, start, end, store, *args, extra=None, **kwargs):
        self.forwards += 1
        self.refreshes += start == 0 and end == canvas.shape[1] and extra is None
        self.positions += end - start + (0 if extra is None else extra.numel())
        return self.model.forward_step(canvas, start, end, store, *args, extra=extra, **kwargs)


def measure(model, problems, task, batch_size: int, decode: dict, label: str, setting: dict) -> dict:
    counting = CountingModel(model)
    report = evaluate(counting, problems, task, batch_size=batch_size, **decode, **setting)
    batches = -(-len(problems) // batch_size)
    row = {"label": label, **report.to_dict(), "batch_forwards": counting.forwards,
           "refresh_forwards": counting.refreshes, "refreshes_per_batch": counting.refreshes / batches,
           "recomputed_positions": counting.positions}
    print(f"{label:<28} acc {report.accuracy:6.1%}  NFE {report.nfe_mean:5.1f}  TPF {report.tpf_canvas:5.2f}  "
          f"TPF(ans) {report.tpf_answer:4.2f}  refreshes/batch {row['refreshes_per_batch']:5.1f}  "
          f"{report.wall_time_s:6.1f}s", flush=True)
    return row


def plot_drift(sweep: list[dict], references: dict[str, dict], path: Path) -> None:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the plot needs matplotlib: pip install 'fastdllm[plots]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(sweep, key=lambda r: r["setting"]["cache"]["tolerance"])
    tol = [r["setting"]["cache"]["tolerance"] for r in rows]
    xs = list(range(len(tol)))  # categorical axis: 0 and "never" sit with the rest
    names = [f"{t:g}" if t < 1e6 else "never" for t in tol]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    top.plot(xs, [100 * r["accuracy"] for r in rows], "o-", label="drift + threshold 0.9")
    for label, style in (("dual+threshold0.9", "--"), ("none+fixed", ":")):
        if label in references:
            top.axhline(100 * references[label]["accuracy"], linestyle=style, color="gray", label=label)
    top.set_ylabel("exact match (%)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(xs, [r["refreshes_per_batch"] for r in rows], "s-", color="tab:red", label="refresh forwards / batch")
    bottom.set_ylabel("refresh forwards per batch", color="tab:red")
    wall = bottom.twinx()
    wall.plot(xs, [r["wall_time_s"] for r in rows], "^--", color="tab:green", label="wall time")
    wall.set_ylabel("wall time (s, shared CPU)", color="tab:green")
    bottom.set_xticks(xs, names)
    bottom.set_xlabel("drift tolerance (relative K/V change that triggers a refresh)")
    bottom.grid(alpha=0.3)
    fig.suptitle("drift cache on the tiny model: accuracy and refreshes against tolerance", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def render_table(results: dict) -> str:
    """The markdown table of docs/policies.md, from a results file (so the doc never hand-copies a figure)."""
    lines = ["| setting | exact match | NFE / seq | TPF canvas | TPF answer | refresh forwards / batch "
             "| positions recomputed | wall time (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for group in ("main", "drift_sweep"):
        for r in results[group]:
            lines.append(f"| {r['label']} | {100 * r['accuracy']:.1f}% | {r['nfe_mean']:.1f} | {r['tpf_canvas']:.2f} "
                         f"| {r['tpf_answer']:.2f} | {r['refreshes_per_batch']:.1f} | {r['recomputed_positions']:,} "
                         f"| {r['wall_time_s']:.1f} |")
    return "\n".join(lines)


def git_commit() -> str:
    """The commit measured (``+dirty`` with uncommitted changes), or ``unknown`` outside a git checkout."""
    import subprocess

    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped tiny model)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tolerances", default="0,0.25,0.5,1,1.5,2,2.5,1e9", help="comma-separated drift tolerances")
    p.add_argument("--only", default=None, help="run only the settings whose label contains this text")
    p.add_argument("--note", default="", help="recorded with the results (e.g. the machine's load)")
    p.add_argument("--out", default=None)
    p.add_argument("--render", default=None, metavar="JSON", help="print the markdown table of a results file")
    args = p.parse_args(argv)
    if args.render:
        print(render_table(json.loads(Path(args.render).read_text())))
        return
    if args.n < 1 or args.batch_size < 1:
        p.error(f"--n and --batch-size must be >= 1 (got {args.n}, {args.batch_size})")
    tolerances = [float(t) for t in args.tolerances.split(",") if t.strip()]
    torch.set_num_threads(args.threads)
    path = args.model or tiny_model_path()
    model = fastdllm.load_model(path, device="cpu", dtype=torch.float32)
    decode = default_decode_options(path)
    task = get_task("arithmetic")
    problems = task.generate("test", args.n, seed=0)
    groups = {"main": main_settings(), "drift_sweep": drift_settings(tolerances)}
    out: dict = {"model": str(path), "family": model.name, "task": "arithmetic", "split": "test", "seed": 0,
                 "n": args.n, "batch_size": args.batch_size, "decode": decode, "env": torch_info(),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(), "note": args.note,
                 "command": "python experiments/bench_policies.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    for group, settings in groups.items():
        out[group] = [measure(model, problems, task, args.batch_size, decode, label, setting)
                      for label, setting in settings if args.only is None or args.only in label]
    target = Path(args.out) if args.out else RESULTS / "policies_tiny_cpu.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2))
    print(f"wrote {target}")
    if len(out["drift_sweep"]) > 1:
        references = {r["label"]: r for r in out["main"]}
        plot_drift(out["drift_sweep"], references, target.with_suffix(".png"))
        print(f"wrote {target.with_suffix('.png')}")


if __name__ == "__main__":
    main()
