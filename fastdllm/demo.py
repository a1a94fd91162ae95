"""``fastdllm demo``: the baseline against Fast-dLLM's settings on held-out problems, as one table.

Runs the shipped tiny model on CPU; every figure is measured in the run. Each setting decodes the
same problems with the same batch size after a warm-up (every setting once on a few problems,
untimed), so the speedup column compares like with like. Accuracy is shown three ways: strict
(the task's answer sentence, well formed), lenient (GSM8K-style extraction of the last number)
and chain (strict, and every intermediate step correct): parallel decoding's errors show up as a
gap between them.

On CPU the demo runs on one torch thread unless told otherwise: for a model this small, one
thread is as fast as two on an idle machine and 10-30x faster per forward when another process
keeps a core busy (two threads then wait for each other at every operation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.evaluation import EvalReport, evaluate
from fastdllm.tasks import Problem, get_task

DEMO_SETTINGS: list[tuple[str, dict]] = [
    ("baseline: no cache, 1 token/step", {"cache": "none", "unmask": "fixed"}),
    ("prefix cache + threshold 0.9", {"cache": "prefix", "unmask": {"name": "threshold", "threshold": 0.9}}),
    ("dual cache + threshold 0.9", {"cache": "dual", "unmask": {"name": "threshold", "threshold": 0.9}}),
    ("dual cache + factor 1.0", {"cache": "dual", "unmask": {"name": "factor", "factor": 1.0}}),
]
WARMUP_PROBLEMS = 1  # per setting, untimed: first-call costs (allocations, kernel choice) stay out of the timings
# problems by default: the no-cache baseline costs about one CPU-second per problem on one core (64 full-canvas
# forwards), so 12 problems keep the whole demo under 30 s on a 2-core laptop-class CPU; pass n for tighter accuracy
DEMO_N = 12

SPEEDUP_MEANING = ("speedup = the baseline's decode wall time / this setting's, on the same problems and batch "
                   "size after a warm-up (loading excluded); on a machine other processes load, it moves with them")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def format_table(rows: list[tuple[str, EvalReport]]) -> str:
    """The demo's table: strict/lenient/chain accuracy, forwards, tokens per forward, speed; speedup vs row 0."""
    base = rows[0][1]
    head = (f"{'setting':<34} {'strict':>7} {'lenient':>7} {'chain':>7} {'NFE':>6} {'TPF':>5} {'TPF ans':>7} "
            f"{'tok/s':>7} {'speedup':>7}")
    lines = [head, "-" * len(head)]
    for label, r in rows:
        lines.append(f"{label:<34} {_pct(r.accuracy):>7} {_pct(r.accuracy_lenient):>7} {_pct(r.accuracy_chain):>7} "
                     f"{r.nfe_mean:>6.1f} {r.tpf_canvas:>5.2f} {r.tpf_answer:>7.2f} {r.tokens_per_s_canvas:>7.0f} "
                     f"{base.wall_time_s / r.wall_time_s:>6.1f}x")
    return "\n".join(lines)


def _mark(row: dict) -> str:
    chain = "" if row["chain_ok"] is None else f", chain {'ok' if row['chain_ok'] else 'WRONG'}"
    return f"[strict {'ok' if row['correct'] else 'WRONG'}, lenient {'ok' if row['correct_lenient'] else 'WRONG'}{chain}]"


def example_indices(rows: list[tuple[str, EvalReport]], count: int) -> list[int]:
    """The first ``count - 1`` problems, and the first one some setting got wrong (strict or chain), if any."""
    n = rows[0][1].n
    shown = list(range(min(count, n)))
    wrong = next((i for i in range(n) for _, r in rows
                  if not r.rows[i]["correct"] or r.rows[i]["chain_ok"] is False), None)
    if wrong is not None and wrong not in shown and shown:
        shown[-1] = wrong
    return shown


def format_examples(rows: list[tuple[str, EvalReport]], problems: Sequence[Problem], count: int) -> str:
    """A few problems: the expected response beside each setting's output and its verdicts."""
    width = max(len(label) for label, _ in rows)
    blocks = []
    for i in example_indices(rows, count):
        lines = [f"problem {i}: {problems[i].prompt}", f"  {'expected':<{width}}  {problems[i].response}"]
        lines += [f"  {label:<{width}}  {r.rows[i]['output']}  {_mark(r.rows[i])}" for label, r in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def run_demo(model_path=None, n: int | None = None, device: str | None = None, batch_size: int | None = None,
             threads: int | None = None, settings=DEMO_SETTINGS, seed: int = 0,
             examples: int = 3) -> list[tuple[str, EvalReport]]:
    """Decode ``n`` held-out arithmetic problems with each setting and print the comparison.

    Args:
        n: problems (``None``: :data:`DEMO_N`).
        batch_size: prompts per batch (``None``: all ``n`` in one batch).
        threads: torch threads for the run (restored afterwards). ``None``: one thread on CPU for the
            shipped tiny model, torch's current setting otherwise.
        examples: how many problems to show with every setting's output beside the expected one.

    Returns: ``(label, report)`` per setting, each report with its rows.
    """
    n = DEMO_N if n is None else n
    _check_count("n", n)
    batch_size = n if batch_size is None else batch_size
    _check_count("batch_size", batch_size)
    _check_count("examples", examples, minimum=0)
    if threads is not None:
        _check_count("threads", threads)
    if not settings:
        raise ValueError("settings is empty; pass at least one (label, options) pair")
    started = time.perf_counter()
    path = model_path or tiny_model_path()
    on_cpu = (device or "cpu") == "cpu"
    if threads is None and on_cpu and model_path is None:
        threads = 1
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return _run(path, n, device, batch_size, settings, seed, examples, on_cpu, started)
    finally:
        torch.set_num_threads(before)


def _run(path, n, device, batch_size, settings, seed, examples, on_cpu, started) -> list[tuple[str, EvalReport]]:
    model = fastdllm.load_model(path, device=device, dtype=torch.float32 if on_cpu else None)
    decode = default_decode_options(path)
    task = get_task("arithmetic")
    problems = task.generate("test", n, seed=seed)
    threads = torch.get_num_threads()
    print(f"fastdllm demo: {model.name} model from {path} on {model.device}, {threads} thread{'s' * (threads > 1)}; "
          f"{n} held-out arithmetic problems, batch {batch_size}; gen_length {decode['gen_length']}, "
          f"block_length {decode['block_length']}", flush=True)
    warm_started = time.perf_counter()
    for _, setting in settings:  # untimed warm-up of every setting's code path
        evaluate(model, problems[:WARMUP_PROBLEMS], task, batch_size=batch_size, **decode, **setting)
    warm = min(WARMUP_PROBLEMS, n)
    print(f"  warm-up: every setting on {warm} problem{'s' * (warm > 1)}, {time.perf_counter() - warm_started:.1f}s "
          "(untimed)", flush=True)
    rows = []
    for label, setting in settings:
        report = evaluate(model, problems, task, batch_size=batch_size, keep_rows=True, **decode, **setting)
        rows.append((label, report))
        print(f"  {label}: strict {report.accuracy:.1%} in {report.wall_time_s:.1f}s", flush=True)
    print()
    print(format_table(rows))
    print(f"\nstrict = the answer sentence \"The answer is N.\" well formed, with the right N; lenient = GSM8K-style "
          f"(the number after the last \"The answer is\", else the last number); chain = strict and every step "
          f"\"a op b = c.\" correct and following from the problem. TPF = tokens committed per forward (over the "
          f"{decode['gen_length']}-token canvas); TPF ans = over the answer (tokens before the first end token); "
          f"tok/s = canvas tokens per second of decoding; {SPEEDUP_MEANING}.")
    if examples:
        print("\n" + format_examples(rows, problems, examples))
    print(f"\nTotal {time.perf_counter() - started:.1f}s (loading, warm-up and every setting).")
    return rows
