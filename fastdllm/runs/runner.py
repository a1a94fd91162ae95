"""``fastdllm run``: one validated :class:`RunConfig` → one run folder and one W&B run.

Order of work: config already validated → task and problems built (cheap; a bad file fails here)
→ W&B run opened (rank 0) → weights loaded → this rank's shard decoded and scored with
``fastdllm.evaluation.evaluate(..., keep_rows=True)`` → rows gathered on rank 0 → run folder
written and the same results logged to W&B. Any exception marks the W&B run failed
(``exit_code=1``) and propagates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from fastdllm.runs.config import RunConfig
from fastdllm.runs.distributed import Distributed, exchange, from_env, shard
from fastdllm.runs.folder import build_summary, merge_reports, run_name, sample_row, write_run_folder
from fastdllm.runs.loading import dump_yaml

ModelCache = dict  # (model, dtype, device) -> loaded model, shared by the points of a local sweep


def torch_dtype(name: str) -> torch.dtype | None:
    return None if name == "auto" else getattr(torch, name)


def load(config: RunConfig, device: str | None, models: ModelCache | None = None):
    """The config's model (from ``models`` when a sweep already loaded it)."""
    import fastdllm

    key = (config.model, config.dtype, device)
    if models is not None and key in models:
        return models[key]
    model = fastdllm.load_model(config.model_path(), dtype=torch_dtype(config.dtype), device=device)
    if models is not None:
        models[key] = model
    return model


def execute(config: RunConfig, *, command: str | None = None, models: ModelCache | None = None,
            progress: bool | None = None, log=print) -> Path | None:
    """Run ``config``; returns the run folder on rank 0 (``None`` on the other ranks)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.task.is_lm_eval:
        from fastdllm.runs.lm_eval_task import execute_lm_eval

        return execute_lm_eval(config, command=command, log=log)
    task = config.task.build()
    problems = task.generate(config.task.split, config.task.limit, seed=config.task.seed)
    if not problems:
        raise ValueError(f"task {config.task.name!r} has no {config.task.split!r} problems; pick the other split")
    ctx = from_env(config.device, config.dist_timeout_s)
    try:
        return _execute(config, ctx, task, problems, command, models, progress, log)
    finally:
        ctx.close()


def _execute(config: RunConfig, ctx: Distributed, task, problems, command, models, progress, log) -> Path | None:
    name = run_name(config)
    run_dir = Path(config.output_dir) / name
    if ctx.is_main and len(problems) < config.task.limit:
        log(f"note: {config.task.name} has {len(problems)} {config.task.split} problems (limit "
            f"{config.task.limit}); running all {len(problems)}")
    tracker = open_tracker(config, name, run_dir) if ctx.is_main else None
    try:
        mine = shard(problems, ctx.rank, ctx.world_size)
        payload, error = None, None
        try:
            payload = _decode_shard(config, ctx, task, mine, models,
                                    ctx.is_main if progress is None else progress and ctx.is_main)
        except Exception as err:  # noqa: BLE001 - sent to every rank, then raised everywhere (no hang)
            if ctx.world_size == 1:
                raise
            error = err
        parts = exchange(ctx, payload, error)
        if not ctx.is_main:
            return None
        result = _write(config, ctx, task, name, run_dir, parts, command)
        from fastdllm.tracking import finish

        _log_to_wandb(tracker, result)
        finish(tracker, result["summary"], exit_code=0)
        log(_one_line(result["summary"], run_dir))
        return run_dir
    except BaseException:
        from fastdllm.tracking import finish

        finish(tracker, exit_code=1)
        raise


def _decode_shard(config: RunConfig, ctx: Distributed, task, mine, models, progress: bool) -> dict[str, Any]:
    """This rank's rows (with their task indices) and its report; no rows when the rank got no problems."""
    from fastdllm.evaluation import evaluate

    started = time.perf_counter()
    model = load(config, ctx.device_for(config.device), models)
    load_s = time.perf_counter() - started
    if not mine:
        return {"rows": [], "report": None, "load_s": load_s}
    scorer = {"scorer": config.task.scorer} if config.task.scorer else {}
    report = evaluate(model, [p for _, p in mine], task, batch_size=config.task.batch_size, progress=progress,
                      keep_rows=True, **scorer, **config.decode.model_dump())
    rows = [sample_row(i, row) for (i, _), row in zip(mine, report.rows)]
    return {"rows": rows, "report": report.to_dict(), "load_s": load_s}


def _write(config: RunConfig, ctx: Distributed, task, name: str, run_dir: Path, parts: list[dict], command):
    from fastdllm.evaluation import torch_info

    rows = sorted((row for part in parts for row in part["rows"]), key=lambda r: r["index"])
    reports = [part["report"] for part in parts if part["report"] is not None]
    report = merge_reports(reports, rows, config.decode.gen_length)
    env = {**torch_info(), "device": str(config.device or ("cuda" if torch.cuda.is_available() else "cpu")),
           "load_time_s": max(part["load_s"] for part in parts)}
    summary = build_summary(config, name, report, _scorer(task), ctx.world_size, env, command)
    write_run_folder(run_dir, dump_yaml(config), summary, rows)
    return {"summary": summary, "rows": rows}


def _scorer(task) -> str:
    mode = getattr(task, "extract_mode", None)
    return f"{task.name} (extract={mode})" if mode else task.name


def open_tracker(config: RunConfig, name: str, run_dir: Path):
    from fastdllm.tracking import open_run

    t = config.tracking
    return open_run(project=t.project, entity=t.entity, name=name, group=t.group, tags=list(t.tags), mode=t.mode,
                    job_type="eval", directory=run_dir, config=config.model_dump(mode="json"))


def _log_to_wandb(tracker, result: dict[str, Any]) -> None:
    if tracker is None:
        return
    from fastdllm.tracking import log_table

    log_table(tracker, "samples", result["rows"])


def _one_line(summary: dict[str, Any], run_dir: Path) -> str:
    return (f"{summary['name']}: accuracy {summary['accuracy']:.1%} on {summary['n']} ({summary['scorer']}), "
            f"NFE {summary.get('nfe_mean', float('nan')):.1f}, TPF {summary.get('tpf_canvas', float('nan')):.2f}, "
            f"{summary.get('tokens_per_s_canvas', float('nan')):.0f} tok/s → {run_dir}")


def main_command() -> str:
    return " ".join(["fastdllm", *sys.argv[1:]])
