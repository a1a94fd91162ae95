"""Figures from run folders (``runs/<name>/summary.json`` + ``samples.jsonl``), as PNG.

``plot_runs(run_dirs, out_dir)`` draws what the runs support:

- ``pareto.png`` (2+ runs): accuracy against tokens per forward and against tokens/s, one point per
  setting, the Pareto front (no other setting both faster and more accurate) joined and ringed;
- ``tpf_vs_threshold.png`` (2+ threshold-rule runs with different thresholds): tokens per forward and
  accuracy against the confidence threshold, one line per cache policy / generation length (the
  paper's Figure 5, Fast-dLLM arXiv 2505.22618);
- ``order_<run>.png`` (runs whose samples carry ``commit_forward``): the decoding-order map, the forward
  at which each generated position was committed, per sample, with block boundaries.

The key/value similarity figure comes from decodes, not run folders: ``fastdllm.analysis.kv_similarity``.
matplotlib is imported lazily (``pip install 'fastdllm[plot]'``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from fastdllm.analysis.run_folder import Run, load_run

MAX_ORDER_SAMPLES = 24  # rows of a decoding-order map


def figure(width: float, height: float):
    """A matplotlib ``Figure`` bound to the Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"the plots need matplotlib: pip install 'fastdllm[plot]' ({err})") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (``>=`` in both, ``>`` in one), by increasing x."""
    front = [i for i in range(len(xs))
             if not any(xs[j] >= xs[i] and ys[j] >= ys[i] and (xs[j] > xs[i] or ys[j] > ys[i])
                        for j in range(len(xs)))]
    return sorted(front, key=lambda i: (xs[i], -ys[i]))


def setting_label(run: Run) -> str:
    """``dual + threshold=0.9`` from the run's resolved setting: each policy's name and the fields that differ
    from the policy's defaults (the run name when the summary has no policy specs)."""
    cache, unmask = run.setting("cache"), run.setting("unmask")
    if not isinstance(cache, dict) or not isinstance(unmask, dict):
        return run.name
    return f"{_policy_label(cache, 'cache')} + {_policy_label(unmask, 'unmask')}"


def _policy_label(spec: dict, kind: str) -> str:
    from fastdllm.core.policy import cache_policies, unmask_policies

    registry = cache_policies if kind == "cache" else unmask_policies
    name = str(spec.get("name"))
    try:
        defaults = registry.get(name).Config().model_dump()
    except Exception:  # a policy this process does not know (a plugin): show every field
        defaults = {}
    options = [f"{k}={v}" for k, v in spec.items()
               if k != "name" and (k == name or defaults.get(k, object()) != v)]  # the headline field always
    return name + (" " + ", ".join(options) if options else "")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def plot_pareto(runs: list[Run], out: Path) -> Path:
    metrics = [("tpf_canvas", "tokens per forward (TPF, canvas)"), ("tokens_per_s_canvas", "tokens / s (canvas)")]
    metrics = [(k, label) for k, label in metrics if all(r.summary.get(k) is not None for r in runs)]
    fig = figure(5.2 * len(metrics), 4.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    acc = [100 * r.summary["accuracy"] for r in runs]
    labels = [setting_label(r) for r in runs]
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, (key, xlabel) in zip(axes, metrics):
        xs = [float(r.summary[key]) for r in runs]
        front = pareto_front(xs, acc)
        ax.plot([xs[i] for i in front], [acc[i] for i in front], "-", color="0.6", lw=1.5, zorder=1,
                label="Pareto front")
        ax.scatter([xs[i] for i in front], [acc[i] for i in front], s=170, facecolors="none",
                   edgecolors="black", lw=1.2, zorder=2)
        for x, y, label, color in zip(xs, acc, labels, colors):
            ax.scatter([x], [y], color=color, s=45, zorder=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if key == "tokens_per_s_canvas":
            devices = {(r.summary.get("env") or {}).get("gpu") or (r.summary.get("env") or {}).get("cpu") for r in runs}
            ax.set_title(f"wall-clock tokens/s on {', '.join(sorted(str(d) for d in devices))}", fontsize=8)
    axes[0].legend(fontsize=7, loc="best")
    n = {r.summary.get("n") for r in runs}
    fig.suptitle(f"accuracy vs speed, {len(runs)} settings (n = {', '.join(str(v) for v in sorted(n, key=str))})",
                 fontsize=10)
    path = out / "pareto.png"
    fig.savefig(path)
    return path


def _threshold(run: Run) -> float | None:
    unmask = run.setting("unmask")
    if isinstance(unmask, dict) and unmask.get("name") == "threshold":
        return float(unmask.get("threshold", 0.9))
    return None


def plot_tpf_vs_threshold(runs: list[Run], out: Path) -> Path:
    series: dict[str, list[tuple[float, Run]]] = {}
    for run in runs:
        cache = run.setting("cache") or {}
        key = f"{cache.get('name', '?')} cache, gen {run.setting('gen_length')}, block {run.setting('block_length')}"
        series.setdefault(key, []).append((_threshold(run), run))  # type: ignore[arg-type]
    fig = figure(10, 4)
    ax_tpf, ax_acc = fig.subplots(1, 2)
    for i, (key, points) in enumerate(sorted(series.items())):
        points.sort(key=lambda p: p[0])
        ts = [t for t, _ in points]
        color = f"C{i % 10}"
        ax_tpf.plot(ts, [r.summary["tpf_canvas"] for _, r in points], "o-", color=color, label=f"{key}: canvas")
        if all(r.summary.get("tpf_answer") is not None for _, r in points):
            ax_tpf.plot(ts, [r.summary["tpf_answer"] for _, r in points], "s--", color=color, alpha=0.7,
                        label=f"{key}: answer")
        ax_acc.plot(ts, [100 * r.summary["accuracy"] for _, r in points], "o-", color=color, label=key)
    ax_tpf.set(xlabel="confidence threshold", ylabel="tokens per forward", title="parallelism vs threshold")
    ax_acc.set(xlabel="confidence threshold", ylabel="accuracy (%)", title="accuracy vs threshold")
    for ax in (ax_tpf, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    path = out / "tpf_vs_threshold.png"
    fig.savefig(path)
    return path


def order_grid(run: Run, max_samples: int = MAX_ORDER_SAMPLES):
    """``[S, G]`` float array of the first samples' ``commit_forward``; NaN where filled at an early stop (0)."""
    import numpy as np

    rows = [s["commit_forward"] for s in run.samples[:max_samples]]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{run.path}: samples' commit_forward lists differ in length; expected G each")
    grid = np.array(rows, dtype=float)  # [S, G]
    grid[grid == 0] = np.nan
    return grid


def plot_decoding_order(run: Run, out: Path) -> Path:
    """Heat map ``[samples, G]`` of ``commit_forward``; positions filled at an early stop (0) in grey."""
    grid = order_grid(run)
    S, G = grid.shape
    fig = figure(min(3 + G / 8, 14), 1.6 + 0.22 * S)
    ax = fig.subplots()
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap)
    block = run.setting("block_length")
    if block:
        for edge in range(block, G, block):
            ax.axvline(edge - 0.5, color="white", lw=1)
    ax.set(xlabel="generated position", ylabel="sample",
           title=f"{run.name}: forward that committed each position ({setting_label(run)}; grey = filled at stop)")
    ax.title.set_fontsize(9)
    fig.colorbar(image, ax=ax, label="forward (per sample)")
    path = out / f"order_{_slug(run.name)}.png"
    fig.savefig(path)
    return path


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Every figure the runs support (see the module doc), written to ``out_dir``; returns their paths."""
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run folder")
    runs = [load_run(d) for d in run_dirs]  # every folder checked before drawing anything
    for run in runs:
        missing = [k for k in ("accuracy", "setting") if k not in run.summary]
        if missing:
            raise ValueError(f"{run.path / 'summary.json'} lacks {missing}: not a summary written by `fastdllm run`")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    scored = [r for r in runs if isinstance(r.summary.get("accuracy"), (int, float))]  # lm-eval runs may have none
    if len(scored) >= 2 and all(r.summary.get("tpf_canvas") is not None for r in scored):
        written.append(plot_pareto(scored, out))
    swept = [r for r in scored if _threshold(r) is not None and r.summary.get("tpf_canvas") is not None]
    if len({_threshold(r) for r in swept}) >= 2:
        written.append(plot_tpf_vs_threshold(swept, out))
    for run in runs:
        if run.samples and all("commit_forward" in s for s in run.samples):
            written.append(plot_decoding_order(run, out))
    return written
