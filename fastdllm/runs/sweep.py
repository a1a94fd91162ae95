"""``fastdllm sweep SWEEP.yaml``: the grid of a W&B sweep file, run locally without a W&B server.

The same file drives ``wandb sweep SWEEP.yaml`` + ``wandb agent``: its ``command`` runs
``fastdllm run BASE.yaml ${args}`` (W&B passes each point as ``--key=value``). Locally, each point
is BASE + the command's fixed ``key=value`` items + the point's values: one run folder and one
(offline when no key) W&B run per point, grouped under the sweep's name.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import yaml

from fastdllm.runs.config import RunConfig
from fastdllm.runs.folder import run_name
from fastdllm.runs.loading import ConfigProblems, read_raw, validate_data


def read_sweep(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"sweep file {str(path)!r} does not exist (relative paths start at {Path.cwd()})")
    try:
        sweep = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ConfigProblems(str(path), [f"not valid YAML: {err}"]) from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict) or not sweep["parameters"]:
        raise ConfigProblems(str(path), ["a sweep file needs a 'parameters' mapping (W&B sweep format)"])
    return sweep


def grid(sweep: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Every point of the grid, in the file's parameter order (the last parameter varies fastest)."""
    problems = []
    method = sweep.get("method", "grid")
    if method != "grid":
        problems.append(f"method: {method!r} — a local sweep runs grids only (method: grid); run other methods "
                        "with wandb sweep/agent")
    axes: list[tuple[str, list[Any]]] = []
    for key, spec in sweep["parameters"].items():
        if isinstance(spec, dict) and isinstance(spec.get("values"), list) and spec["values"]:
            axes.append((key, spec["values"]))
        elif isinstance(spec, dict) and "value" in spec:
            axes.append((key, [spec["value"]]))
        else:
            problems.append(f"parameters.{key}: a grid parameter needs 'values: [...]' (non-empty) or 'value: x', "
                            f"got {spec!r}")
    if problems:
        raise ConfigProblems(source, problems)
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*(v for _, v in axes))]


def base_from_command(sweep: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The base config path and fixed ``key=value`` items of the sweep's ``command`` (after ``run``)."""
    command = [str(c) for c in sweep.get("command") or []]
    if "run" not in command:
        return None, []
    rest = [c for c in command[command.index("run") + 1:] if not c.startswith("${")]
    base = next((c for c in rest if c.endswith((".yaml", ".yml")) and "=" not in c), None)
    return base, [c.lstrip("-") for c in rest if "=" in c]


def sweep_configs(path: str | Path, base: str | Path | None = None, overrides: list[str] = ()) -> list[RunConfig]:
    """Every point's validated RunConfig; EVERY problem of every point is raised together."""
    sweep = read_sweep(path)
    points = grid(sweep, str(path))
    command_base, fixed = base_from_command(sweep)
    base = base or command_base
    configs, problems = [], []
    for i, point in enumerate(points):
        items = [*fixed, *overrides, *(f"{k}={json.dumps(v)}" for k, v in point.items())]
        data = read_raw(base, items)
        data.setdefault("tracking", {})
        if isinstance(data["tracking"], dict):
            data["tracking"].setdefault("group", f"sweep-{Path(path).stem}")
        try:
            configs.append(validate_data(data, f"point {i + 1} {point}"))
        except ConfigProblems as err:
            problems += [f"point {i + 1} {point}: {p}" for p in err.problems]
    if problems:
        raise ConfigProblems(str(path), problems)
    return _unique_names(configs)


def _unique_names(configs: list[RunConfig]) -> list[RunConfig]:
    """Points whose settings give the same run name (e.g. a swept seed) get ``-pN`` suffixes."""
    names = [run_name(c) for c in configs]
    if len(set(names)) == len(names):
        return configs
    return [c.model_copy(update={"tracking": c.tracking.model_copy(update={"name": f"{n}-p{i + 1}"})})
            for i, (c, n) in enumerate(zip(configs, names))]
