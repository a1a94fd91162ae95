"""Markdown tables for the README from the committed result files (so no figure is typed by hand).

    python experiments/report.py    # prints the tiny-model and GPU tables, draws results/gpu_llada8b_b1.png
    python experiments/report.py speed [FOLDER ...]   # only the speed tables of results/speed/ (or the folders given)
    python experiments/report.py speed NEWER --fill-from OLDER ...   # a partial check, the older ones' other runs
    python experiments/report.py forward-plot FOLDER  # FOLDER/forward_profiles.png

The speed tables and the forward picture live in report_speed.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_speed import SPEED, plot_forward_profiles, speed_report  # noqa: E402 - the speed tables' module

RESULTS = Path(__file__).parent / "results"
# the Fast-dLLM reference implementation on the same GPU (docs/benchmarks.md): (cache, k) -> tokens/s
REFERENCE_TOK_S = {("none", 1): 25.1, ("prefix", 1): 25.4, ("dual", 1): 23.0,
                   ("none", 4): 93.0, ("prefix", 4): 115.0, ("dual", 4): 71.9}


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def tiny_accuracies(row: dict) -> tuple:
    """(strict, lenient, chain) of a result row; files written before strict scoring (issue 14) hold only
    ``accuracy``, measured with the GSM8K-style extraction that is now the lenient scorer."""
    if "scorer" not in row:
        return None, row["accuracy"], None
    lenient = row["accuracy"] if row["scorer"] == "lenient" else row.get("accuracy_lenient")
    strict = row["accuracy"] if row["scorer"] == "strict" else None
    return strict, lenient, row.get("accuracy_chain")


def tiny_table(path: Path) -> str:
    """The README's table for one ``bench_tiny.py`` result file: strict, lenient and chain accuracy per setting."""
    d = json.loads(path.read_text())
    env = d["env"]
    scored = "scorer" in d["main"][0]
    command = d["command"].split(" --note ")[0] + (' --note "…"' if " --note " in d["command"] else "")
    lines = [f"`{command}` — {d['n']} held-out {d['task']} problems, {d['family']} tiny model, gen_length "
             f"{d['decode']['gen_length']}, block_length {d['decode']['block_length']}, batch {d['batch_size']}, CPU "
             f"({env['cpu']}, {env['threads']} thread{'s' * (env['threads'] > 1)}), torch {env['torch']}, {d['date']}"
             + (f", commit {d['commit'][:7]}" if d.get("commit") else "") + "."]
    if d.get("note"):
        lines += ["", f"Conditions: {d['note']}"]
    if not scored:
        lines += ["", "Recorded before strict scoring: its accuracy is the GSM8K-style extraction (the lenient "
                      "scorer); strict and chain accuracy were not measured."]
    load = all("cpu_share" in r for r in d["main"])
    if load:  # one thread: the process's CPU time is about the wall time it would take on an idle core
        lines += ["", "Speedup is the baseline's decode wall time over the setting's; with the machine this loaded, "
                      "CPU s (this process's CPU time, wall × CPU share) and its speedup are the better speed "
                      "figures: with one thread they approximate the wall time on an idle core."]
    base_cpu = d["main"][0]["wall_time_s"] * d["main"][0]["cpu_share"] if load else None
    lines += ["", "| setting | strict | lenient | chain | NFE / seq | TPF canvas | TPF answer | tokens/s (canvas) | "
                  "speedup |" + (" load avg · CPU share | CPU s | speedup (CPU s) |" if load else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if load else "")]
    for r in d["main"]:
        strict, lenient, chain = tiny_accuracies(r)
        cells = [r["label"], _pct(strict), _pct(lenient), _pct(chain), f"{r['nfe_mean']:.1f}", f"{r['tpf_canvas']:.2f}",
                 f"{r['tpf_answer']:.2f}", f"{r['tokens_per_s_canvas']:.0f}", f"{r['speedup']:.1f}×"]
        if load:
            cpu = r["wall_time_s"] * r["cpu_share"]
            cells += [f"{max(r['load_avg_1min']):.1f} · {r['cpu_share']:.2f}", f"{cpu:.0f}", f"{base_cpu / cpu:.1f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    if d.get("sweep"):
        lines += ["", "Sweep (no cache; accuracy against answer tokens per forward, the plot below):", "",
                  "| setting | strict | lenient | chain | NFE / seq | TPF answer |", "|---|---|---|---|---|---|"]
        for r in d["sweep"]:
            strict, lenient, chain = tiny_accuracies(r)
            lines.append(f"| {r['label']} | {_pct(strict)} | {_pct(lenient)} | {_pct(chain)} | {r['nfe_mean']:.1f} | "
                         f"{r['tpf_answer']:.2f} |")
    return "\n".join(lines)


def gpu_table(path: Path) -> str:
    d = json.loads(path.read_text())
    env, floors = d["env"], d["floors_ms"]
    lines = [f"`{d['command']}` — {env['gpu']}, torch {env['torch']}, CUDA {env['cuda']}, {d['date']}; "
             f"{d['model']} ({d['params'] / 1e9:.2f} B params, {d['dtype'].removeprefix('torch.')}), batch {d['batch']}, prompt "
             f"{d['prompt_length']}, {d['gen_length']} generated, block {d['block_length']}, fixed k tokens per "
             f"step. Floors measured in the same run: weight read {floors['weight_read']:.1f} ms per forward, "
             f"full-canvas forward {floors['full_canvas_forward']:.1f} ms.", "",
             "| cache | k | NFE | reference tok/s | eager tok/s | CUDA graphs tok/s | graphs: ms / cached forward "
             "(× floor) | tokens equal |", "|---|---|---|---|---|---|---|---|"]
    rows = {(r["cache"], r["tokens_per_step"], r["cuda_graphs"]): r for r in d["rows"]}
    for (cache, k, graphs), r in rows.items():
        if graphs:
            continue
        g = rows[(cache, k, True)]
        cached = g.get("cached_ms_per_forward")
        cell = f"{cached:.1f} ({cached / floors['weight_read']:.1f}×)" if cached else "—"
        reference = REFERENCE_TOK_S[(cache, k)] if d["batch"] == 1 and d.get("family", "llada") == "llada" else "—"
        lines.append(f"| {cache} | {k} | {r['nfe']} | {reference} | {r['tokens_per_s']:.1f} | "
                     f"{g['tokens_per_s']:.1f} | {cell} | {g['tokens_equal_eager']} |")
    return "\n".join(lines)


def plot_gpu(path: Path, out: Path) -> None:
    """Bars of tokens/s per setting: the reference implementation, eager, CUDA graphs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(path.read_text())
    rows = {(r["cache"], r["tokens_per_step"], r["cuda_graphs"]): r for r in d["rows"]}
    settings = [(c, k) for (c, k, g) in rows if not g]
    x = range(len(settings))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.27
    ax.bar([i - width for i in x], [REFERENCE_TOK_S[s] for s in settings], width, label="Fast-dLLM reference")
    ax.bar(list(x), [rows[(*s, False)]["tokens_per_s"] for s in settings], width, label="fastdllm eager")
    ax.bar([i + width for i in x], [rows[(*s, True)]["tokens_per_s"] for s in settings], width,
           label="fastdllm + CUDA graphs")
    ax.set_xticks(list(x), [f"{c}\nk={k}" for c, k in settings])
    ax.set_ylabel("tokens / s (batch 1)")
    ax.set_title(f"LLaDA-8B shape, {d['env']['gpu']}, 256 tokens, block 32")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=130)


def reworded_table(path: Path) -> str:
    """What held-out means: the same problems in the training wording, with other nouns, reworded."""
    d = json.loads(path.read_text())
    command = d["command"].split(" --note ")[0] + (' --note "…"' if " --note " in d["command"] else "")
    lines = [f"`{command}` — {d['n']} held-out problems asked three ways, dual cache + threshold 0.9, CPU, "
             f"{d['date']}.", "", "| wording | strict | lenient | example prompt → output |", "|---|---|---|---|"]
    for label, v in d["variants"].items():
        e = v["examples"][0]
        lines.append(f"| {label} | {_pct(v['accuracy_strict'])} | {_pct(v['accuracy_lenient'])} | "
                     f"{e['prompt']} → `{e['output']}` |")
    return "\n".join(lines)


def plot_tiny(path: Path) -> Path | None:
    """Redraw a bench_tiny result's sweep plot (strict and chain accuracy against TPF) beside the file."""
    d = json.loads(path.read_text())
    if not d.get("sweep") or "scorer" not in d["sweep"][0]:
        return None
    from bench_tiny import plot_sweep

    plot_sweep(d["sweep"], path.with_suffix(".png"))
    return path.with_suffix(".png")


def speed_args(args: list[str], root: Path = Path(".")) -> tuple[list[Path], list[Path]]:
    """``report.py speed``'s arguments as (run folders, older folders to fill from), resolved against ``root``."""
    cut = args.index("--fill-from") if "--fill-from" in args else len(args)
    folders, older = [(root / f).resolve() for f in args[:cut]], [(root / f).resolve() for f in args[cut + 1:]]
    if cut < len(args) and (len(folders) != 1 or not older):
        raise SystemExit("usage: report.py speed NEWER --fill-from OLDER [OLDER ...]: one run folder before "
                         "--fill-from, at least one after")
    return folders, older


if __name__ == "__main__":
    if sys.argv[1:2] == ["forward-plot"]:  # python experiments/report.py forward-plot RUN_FOLDER: a PNG beside its files
        for folder in sys.argv[2:]:
            print(plot_forward_profiles(Path(folder).resolve(), Path(folder).resolve() / "forward_profiles.png"))
        raise SystemExit
    if sys.argv[1:2] == ["speed"]:  # python experiments/report.py speed [RUN_FOLDER ...] [--fill-from OLDER ...]
        folders, older = speed_args(sys.argv[2:])
        for folder in folders or [SPEED]:
            print(speed_report(Path(folder), *older), end="\n\n")
        raise SystemExit
    for path in sorted(RESULTS.glob("tiny_*_cpu.json")):
        print(tiny_table(path), end="\n\n")
        plot_tiny(path)
    print(reworded_table(RESULTS / "tiny_llada_reworded.json"), end="\n\n")
    for path in sorted(RESULTS.glob("gpu_*.json")):  # LLaDA-8B batch 1 and 8, Dream-7B
        print(gpu_table(path), end="\n\n")
    plot_gpu(RESULTS / "gpu_llada8b_b1.json", RESULTS / "gpu_llada8b_b1.png")
    if SPEED.exists():
        print(speed_report())
