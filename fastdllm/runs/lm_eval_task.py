"""``task.name: lm-eval:TASK[,TASK…]``: the run is handed to lm-evaluation-harness through the
``fastdllm`` lm-eval model (``fastdllm.lm_eval_model``), with the config's decode settings as model_args.

lm-eval writes its own results and samples under the run folder (``lm_eval/``); summary.json carries
lm-eval's metrics, the headline one as ``accuracy`` (named in ``accuracy_metric``), and the decode
statistics the fastdllm model recorded (NFE, TPF, tokens/s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastdllm.runs.config import RunConfig
from fastdllm.runs.folder import run_name
from fastdllm.runs.loading import dump_yaml

STATS_KEYS = ("nfe_mean", "tpf_canvas", "tpf_answer", "answer_tokens_mean", "wall_time_s", "tokens_per_s_canvas",
              "tokens_per_s_useful")


def model_args(config: RunConfig) -> str:
    """``pretrained=PATH,dtype=…,cache=dual,unmask=threshold,threshold=0.9,gen_length=256,block_length=32``."""
    d = config.decode
    items: dict[str, Any] = {"pretrained": str(config.model_path())}
    if config.dtype != "auto":
        items["dtype"] = config.dtype
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
    if config.device:  # lm-eval passes --device to the model itself (a model_args device would clash)
        argv += ["--device", config.device]
    if config.task.num_fewshot is not None:
        argv += ["--num_fewshot", str(config.task.num_fewshot)]
    return argv + list(config.task.lm_eval_args)


def headline(results: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """The first task's first numeric metric (not a stderr): ``("gsm8k/exact_match,strict-match", 0.78)``."""
    for task, metrics in results.items():
        for key, value in metrics.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and "," in key and "stderr" not in key:  # "metric,filter" (not sample_len, alias)
                return f"{task}/{key}", float(value)
    return None, None


def execute_lm_eval(config: RunConfig, command: str | None = None, log=print) -> Path:
    try:
        from fastdllm.lm_eval_model import main as lm_eval_main
    except ImportError as err:
        raise ImportError(f"lm-eval tasks need fastdllm.lm_eval_model and lm-eval ({err}): "
                          "pip install 'fastdllm[lmeval]'") from err
    run_dir = Path(config.output_dir).resolve() / run_name(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    from fastdllm.runs.runner import open_tracker
    from fastdllm.tracking import finish, log_table

    tracker = open_tracker(config, run_dir.name, run_dir)
    try:
        summary, samples = _run_lm_eval(config, run_dir, lm_eval_main, command)
        if tracker is not None:
            log_table(tracker, "samples", samples)
        finish(tracker, {k: v for k, v in summary.items() if k != "setting"}, exit_code=0)
    except BaseException:
        finish(tracker, exit_code=1)
        raise
    log(f"{run_dir.name}: lm-eval {summary['accuracy_metric']} = {summary['accuracy']} → {run_dir}")
    return run_dir


def _run_lm_eval(config: RunConfig, run_dir: Path, lm_eval_main, command) -> tuple[dict[str, Any], list[dict]]:
    output = run_dir / "lm_eval"
    argv = lm_eval_argv(config, output)
    code = lm_eval_main(argv)
    if code:
        raise RuntimeError(f"lm-eval exited with status {code} (its message is above; arguments: {' '.join(argv)})")
    results: dict[str, Any] = {}
    for file in sorted(output.rglob("results_*.json")):
        results = json.loads(file.read_text()).get("results", results)
    stats_files = sorted(output.rglob("fastdllm_decode_stats.json"))
    stats = json.loads(stats_files[-1].read_text()) if stats_files else []
    metric, accuracy = headline(results)
    summary: dict[str, Any] = {"name": run_dir.name, "setting": config.decode.model_dump(mode="json"),
                               "task": config.task.name, "n": sum(s.get("n") or 0 for s in stats) or None,
                               "accuracy": accuracy, "accuracy_metric": metric, "scorer": "lm-eval"}
    if stats:
        summary.update({k: stats[0].get(k) for k in STATS_KEYS}, env=stats[0].get("env"),
                       world_size=stats[0].get("world_size", 1))
    summary.update(model=config.model, lm_eval_results=results, lm_eval_argv=argv, command=command)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    samples = []
    for file in sorted(output.rglob("samples_*.jsonl")):
        for line in file.read_text().splitlines():
            s = json.loads(line)
            output_text = s.get("filtered_resps") or s.get("resps")
            samples.append({"task": file.stem.removeprefix("samples_").rsplit("_", 1)[0], "index": s.get("doc_id"),
                            "target": s.get("target"), "output": json.dumps(output_text),
                            **{k: v for k, v in s.items() if isinstance(v, (int, float)) and k != "doc_id"}})
    return summary, samples
