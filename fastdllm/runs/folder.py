"""The run folder ``OUTPUT_DIR/<run name>/`` (config.yaml, summary.json, samples.jsonl) and run names.

Its format is pinned (the plots read it): see docs/workflow.md.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from fastdllm.core.policy import cache_policies, unmask_policies
from fastdllm.runs.config import RunConfig
from fastdllm.runs.models import short_model_name

# Report fields that are not means over the rows (merged across ranks by their own rule).
_NOT_ROW_MEANS = {"n", "setting", "rows", "wall_time_s", "tokens_per_s_canvas", "tokens_per_s_useful",
                  "refresh_share", "scorer"}


def _policy_label(registry, spec: dict[str, Any]) -> str:
    """``threshold0.9``, ``fixed-steps8``: the policy name, its own-named field, and non-default fields."""
    name = spec["name"]
    defaults = {k: f.default for k, f in registry.get(name).Config.model_fields.items()} if name in registry else {}
    fields = {k: v for k, v in spec.items() if k != "name" and (k == name or defaults.get(k, object()) != v)}
    head = f"{name}{fields.pop(name)}" if name in fields else name
    return "-".join([head, *(f"{k}{v}" for k, v in fields.items())])


def run_name(config: RunConfig) -> str:
    """``tracking.name``, else ``<model>-<task>-<cache>-<unmask>-g<G>-b<B>`` (a stable folder name)."""
    if config.tracking.name:
        name = config.tracking.name
    else:
        d = config.decode
        task = Path(config.task.name).stem if config.task.name.endswith(".jsonl") else config.task.name
        name = "-".join([short_model_name(config.model), task, _policy_label(cache_policies, d.cache),
                         _policy_label(unmask_policies, d.unmask),
                         f"g{d.gen_length}", f"b{d.block_length}"])
        if d.temperature:
            name += f"-t{d.temperature}-s{d.seed}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "run"


def sample_row(index: int, row: dict[str, Any]) -> dict[str, Any]:
    """A samples.jsonl line: the row's own keys, with ``index`` first and ``target`` (the reference answer)."""
    row = {k: v for k, v in row.items() if k != "index"}  # evaluate's index is within this rank's shard
    if "target" not in row and "answer" in row:
        row["target"] = row.pop("answer")
    return {"index": index, **row}


def merge_reports(reports: list[dict[str, Any]], rows: list[dict[str, Any]], gen_length: int) -> dict[str, Any]:
    """One summary from the ranks' reports (one report: as is). Means over rows are n-weighted; wall time
    is the slowest rank's; throughput is all tokens over that wall time."""
    if len(reports) == 1:
        return {k: v for k, v in reports[0].items() if k != "rows"}
    n = sum(r["n"] for r in reports)
    merged: dict[str, Any] = {"setting": reports[0]["setting"], "n": n}
    for key in reports[0]:
        if key in _NOT_ROW_MEANS:
            continue
        have = [r for r in reports if _is_number(r.get(key))]
        if have:  # a mean over rows; None in a shard (e.g. no chained problem) leaves it out
            merged[key] = sum(r[key] * r["n"] for r in have) / sum(r["n"] for r in have)
        elif all(r.get(key) is None for r in reports):
            merged[key] = None
    wall = max(r["wall_time_s"] for r in reports)
    forwards = [r["n"] * r.get("nfe_mean", 1.0) for r in reports]
    merged.update(
        wall_time_s=wall, tokens_per_s_canvas=n * gen_length / max(wall, 1e-9),
        tokens_per_s_useful=sum(row.get("answer_tokens", 0) for row in rows) / max(wall, 1e-9),
        refresh_share=sum(r.get("refresh_share", 0.0) * f for r, f in zip(reports, forwards)) / max(sum(forwards), 1e-9),
    )
    if "scorer" in reports[0]:
        merged["scorer"] = reports[0]["scorer"]
    return merged


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_summary(config: RunConfig, name: str, report: dict[str, Any], scorer: str, world_size: int,
                  env: dict[str, Any], command: str | None) -> dict[str, Any]:
    summary = {"name": name, "setting": report["setting"], "task": config.task.name, "n": report["n"],
               "accuracy": report["accuracy"], "scorer": report.get("scorer", scorer)}
    summary.update({k: v for k, v in report.items() if k not in summary})
    summary.update(model=config.model, env=env, world_size=world_size, date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   command=command or " ".join(["fastdllm", *sys.argv[1:]]))
    return summary


def write_run_folder(run_dir: Path, config_yaml: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (run_dir / "samples.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
