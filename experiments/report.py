"""Markdown tables for the README from the committed result files (so no figure is typed by hand).

    python experiments/report.py    # prints the tiny-model and GPU tables, draws results/gpu_llada8b_b1.png
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# the Fast-dLLM reference implementation on the same GPU (BENCHMARKS.md): (cache, k) -> tokens/s
REFERENCE_TOK_S = {("none", 1): 25.1, ("prefix", 1): 25.4, ("dual", 1): 23.0,
                   ("none", 4): 93.0, ("prefix", 4): 115.0, ("dual", 4): 71.9}


def tiny_table(path: Path) -> str:
    d = json.loads(path.read_text())
    env = d["env"]
    lines = [f"`{d['command']}` — {d['n']} held-out {d['task']} problems, {d['family']} tiny model, gen_length "
             f"{d['decode']['gen_length']}, block_length {d['decode']['block_length']}, batch {d['batch_size']}, CPU "
             f"({env['cpu']}, {env['threads']} threads), torch {env['torch']}, {d['date']}.", "",
             "| setting | exact match | NFE / seq | TPF canvas | TPF answer | tokens/s (canvas) | speedup |",
             "|---|---|---|---|---|---|---|"]
    for r in d["main"]:
        lines.append(f"| {r['label']} | {100 * r['accuracy']:.1f} % | {r['nfe_mean']:.1f} | {r['tpf_canvas']:.2f} | "
                     f"{r['tpf_answer']:.2f} | {r['tokens_per_s_canvas']:.0f} | {r['speedup']:.1f}× |")
    if d.get("sweep"):
        lines += ["", "Sweep (no cache): " + ", ".join(
            f"{r['label']} → {100 * r['accuracy']:.1f} % at TPF {r['tpf_answer']:.2f}" for r in d["sweep"]) + "."]
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


if __name__ == "__main__":
    for path in sorted(RESULTS.glob("tiny_*_cpu.json")):
        print(tiny_table(path), end="\n\n")
    for path in sorted(RESULTS.glob("gpu_*.json")):  # LLaDA-8B batch 1 and 8, Dream-7B
        print(gpu_table(path), end="\n\n")
    plot_gpu(RESULTS / "gpu_llada8b_b1.json", RESULTS / "gpu_llada8b_b1.png")
