"""``fastdllm demo``: the baseline against Fast-dLLM's settings on held-out problems, as one table.

Runs the shipped tiny model on CPU in well under a minute; every figure is measured in the run.
"""

from __future__ import annotations

import time

import torch

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import EvalReport, evaluate
from fastdllm.tasks import get_task

DEMO_SETTINGS: list[tuple[str, dict]] = [
    ("baseline: no cache, 1 token/step", {"cache": "none", "unmask": "fixed"}),
    ("prefix cache + threshold 0.9", {"cache": "prefix", "unmask": {"name": "threshold", "threshold": 0.9}}),
    ("dual cache + threshold 0.9", {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}}),
    ("dual cache + factor 1.0", {"cache": "dual", "unmask": {"name": "factor", "factor": 1.0}}),
]


def format_table(rows: list[tuple[str, EvalReport]]) -> str:
    base = rows[0][1]
    head = f"{'setting':<34} {'accuracy':>8} {'NFE':>6} {'TPF':>5} {'TPF ans':>7} {'tok/s':>7} {'speedup':>7}"
    lines = [head, "-" * len(head)]
    for label, r in rows:
        lines.append(f"{label:<34} {r.accuracy:>8.1%} {r.nfe_mean:>6.1f} {r.tpf_canvas:>5.2f} {r.tpf_answer:>7.2f} "
                     f"{r.tokens_per_s_canvas:>7.0f} {base.wall_time_s / r.wall_time_s:>6.1f}x")
    return "\n".join(lines)


def run_demo(model_path=None, n: int = 50, device: str | None = None, batch_size: int = 50,
             settings=DEMO_SETTINGS, seed: int = 0) -> list[tuple[str, EvalReport]]:
    started = time.perf_counter()
    path = model_path or tiny_model_path()
    model = fastdllm.load_model(path, device=device, dtype=torch.float32 if (device or "cpu") == "cpu" else None)
    decode = default_decode_options(path)
    task = get_task("arithmetic")
    problems = task.generate("test", n, seed=seed)
    print(f"fastdllm demo: {model.name} model from {path} on {model.device}, {torch.get_num_threads()} threads; "
          f"{n} held-out arithmetic problems; gen_length {decode['gen_length']}, block_length {decode['block_length']}")
    rows = []
    for label, setting in settings:
        report = evaluate(model, problems, task, batch_size=batch_size, **decode, **setting)
        rows.append((label, report))
        print(f"  {label}: {report.accuracy:.1%} in {report.wall_time_s:.1f}s", flush=True)
    print()
    print(format_table(rows))
    print(f"\nTPF = tokens committed per forward (over the {decode['gen_length']}-token canvas); TPF ans = over the "
          f"answer (tokens before the first end token); tok/s = canvas tokens per second; speedup = baseline wall "
          f"time / setting wall time. Total {time.perf_counter() - started:.1f}s.")
    example = problems[0]
    print(f"\nexample prompt: {example.prompt}\nexpected:       {example.response}")
    return rows
