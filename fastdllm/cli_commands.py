"""The subcommands of ``fastdllm`` (each imports what it needs when it runs)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import fastdllm
from fastdllm.cli_generate import cmd_bench, cmd_generate  # noqa: F401  (dispatched by name)


def _config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG.yaml] KEY=VALUE …``: the first item is the config unless it is an override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_run(args: argparse.Namespace) -> int:
    from fastdllm.runs import execute, load_run_config

    path, overrides = _config_and_overrides(args.items)
    config = load_run_config(path, overrides)  # every problem reported here, before any weights load
    execute(config, command=" ".join(["fastdllm", "run", *args.items]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from fastdllm.runs import dump_yaml, load_run_config

    path, overrides = _config_and_overrides(args.items)
    print(dump_yaml(load_run_config(path, overrides)), end="")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from fastdllm.runs import execute
    from fastdllm.runs.folder import run_name
    from fastdllm.runs.sweep import sweep_configs

    configs = sweep_configs(args.sweep_file, args.config, args.items)
    print(f"sweep {args.sweep_file}: {len(configs)} points")
    for i, config in enumerate(configs, 1):
        print(f"  {i:>3}. {run_name(config)}")
    if args.dry_run:
        return 0
    models: dict = {}  # one load per model for all the points
    for i, config in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] ", end="", flush=True)
        execute(config, command=f"fastdllm sweep {args.sweep_file} (point {i})", models=models)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    for run in args.runs:
        if not (Path(run) / "summary.json").is_file():
            raise FileNotFoundError(f"{run!r} is not a run folder (no summary.json); pass folders written by "
                                    "`fastdllm run`, e.g. runs/*")
    try:
        from fastdllm.plots import plot_runs

        written = plot_runs(args.runs, args.out)
    except ImportError as err:
        raise ImportError(_missing("plotting", "fastdllm.plots", "plot", err)) from None
    for path in written:
        print(path)
    return 0


def cmd_lm_eval(args: argparse.Namespace) -> int:
    try:
        from fastdllm.lm_eval_model import main as lm_eval_main
    except ImportError as err:
        raise ImportError(_missing("the lm-eval integration", "fastdllm.lm_eval_model", "lmeval", err)) from None
    return int(lm_eval_main(list(args.args)) or 0)


def _missing(what: str, module: str, extra: str, err: ImportError) -> str:
    """One line naming what is missing: the optional dependency (its extra) or fastdllm's own module."""
    if err.name and (err.name == module or err.name.startswith("fastdllm")):
        return f"{what} needs the module {module}, which this fastdllm installation lacks; update fastdllm"
    return f"{what} needs {err.name or err}: pip install 'fastdllm[{extra}]'"


def cmd_demo(args: argparse.Namespace) -> int:
    from fastdllm.demo import run_demo
    from fastdllm.runs.models import resolve_model

    path = resolve_model(args.model)  # a bad name fails before any work
    run_demo(model_path=path, n=args.n, device=args.device, batch_size=args.batch_size, threads=args.threads)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from fastdllm.core.registry import describe_fields
    from fastdllm.runs.models import SHIPPED_MODELS
    from fastdllm.tasks import TASKS

    for title, registry in [("cache policies", fastdllm.cache_policies), ("unmask policies", fastdllm.unmask_policies)]:
        print(f"{title}:")
        for name, cls in registry:
            print(f"  {name:<18} {_summary(cls)}")
            for field, kind, default in describe_fields(cls.Config):
                print(f"  {'':<18}   {field}: {kind} = {default!r}")
    print("models (config.json fields read, with the full-size checkpoint's values):")
    for name, cls in fastdllm.model_adapters:
        print(f"  {name:<18} {_summary(cls)}")
        fields = [f"{k}={v!r}" for k, v in cls.reference_config().items()]
        for line in textwrap.wrap(", ".join(fields), width=96):
            print(f"  {'':<18}   {line}")
    print("tasks (task.name in a run config):")
    for name in sorted(TASKS):
        print(f"  {name:<18} {_summary(TASKS[name])}")
    print(f"  {'FILE.jsonl':<18} your problems, one JSON object per line: {{\"prompt\": ..., \"answer\": ...}}")
    print(f"  {'lm-eval:TASK,…':<18} lm-evaluation-harness tasks (needs pip install 'fastdllm[lmeval]')")
    print("shipped models (--model NAME, or model: NAME in a run config):")
    for name, text in SHIPPED_MODELS.items():
        print(f"  {name:<18} {text}")
    return 0


def _summary(cls: type) -> str:
    """A class docstring's first paragraph, on one line."""
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())

