"""``task.name: lm-eval:TASK[,TASK…]``: the run is handed to lm-evaluation-harness through the
``fastdllm`` lm-eval model (``fastdllm.lm_eval_model``), with the config's decode settings as model_args.
lm-eval writes its own results under the run folder (``lm_eval/``); summary.json points at them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastdllm.runs.config import RunConfig
from fastdllm.runs.folder import run_name
from fastdllm.runs.loading import dump_yaml


def model_args(config: RunConfig) -> str:
    """``pretrained=PATH,dtype=…,cache=dual,unmask=threshold,threshold=0.9,gen_length=256,block_length=32``."""
    d = config.decode
    items: dict[str, Any] = {"pretrained": str(config.model_path())}
    if config.dtype != "auto":
        items["dtype"] = config.dtype
    if config.device:
        items["device"] = config.device
    items["cache"], items["unmask"] = d.cache["name"], d.unmask["name"]
    for spec in (d.cache, d.unmask):
        items.update({k: v for k, v in spec.items() if k != "name"})
    items.update(gen_length=d.gen_length, block_length=d.block_length, seed=d.seed,
                 max_steps_per_block=d.max_steps_per_block, stop_at_eos=True if d.stop_at_eos else None)
    return ",".join(f"{k}={v}" for k, v in items.items() if v is not None)


def lm_eval_argv(config: RunConfig, output: Path) -> list[str]:
    argv = ["--model", "fastdllm", "--model_args", model_args(config), "--tasks", ",".join(config.task.lm_eval_tasks),
            "--limit", str(config.task.limit), "--batch_size", str(config.task.batch_size),
            "--output_path", str(output), "--seed", str(config.task.seed), "--log_samples"]
    if config.task.num_fewshot is not None:
        argv += ["--num_fewshot", str(config.task.num_fewshot)]
    return argv


def execute_lm_eval(config: RunConfig, command: str | None = None, log=print) -> Path:
    try:
        from fastdllm.lm_eval_model import main as lm_eval_main
    except ImportError as err:
        raise ImportError(f"lm-eval tasks need fastdllm.lm_eval_model and lm-eval ({err}): "
                          "pip install 'fastdllm[lmeval]'") from err
    run_dir = Path(config.output_dir) / run_name(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    argv = lm_eval_argv(config, run_dir / "lm_eval")
    code = lm_eval_main(argv)
    results = {}
    for file in sorted((run_dir / "lm_eval").rglob("results_*.json")):
        results = json.loads(file.read_text()).get("results", results)
    summary = {"name": run_dir.name, "setting": config.decode.model_dump(mode="json"), "task": config.task.name,
               "lm_eval_argv": argv, "lm_eval_exit_code": code, "lm_eval_results": results, "command": command}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if code:
        raise RuntimeError(f"lm-eval exited with status {code} (arguments: {' '.join(argv)})")
    log(f"{run_dir.name}: lm-eval results → {run_dir / 'lm_eval'}")
    return run_dir
