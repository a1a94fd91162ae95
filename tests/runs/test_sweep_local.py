"""``fastdllm sweep``: a W&B sweep file's grid run locally, one run folder and one offline W&B run per point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runs_helpers import REPO, FAST, one_thread  # noqa: F401  (autouse fixture)
from fastdllm.cli import main
from fastdllm.runs import ConfigProblems
from fastdllm.runs.sweep import base_from_command, grid, read_sweep, sweep_configs

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def test_two_point_grid_runs_offline_on_the_shipped_model(tmp_path, capsys):
    pytest.importorskip("wandb")
    sweep = tmp_path / "two.yaml"
    sweep.write_text("method: grid\nparameters:\n  decode.unmask.threshold: {values: [0.5, 1.0]}\n"
                     "command: [fastdllm, run, base.yaml, '${args}']\n")
    (tmp_path / "base.yaml").write_text("model: tiny-llada\ntask: {limit: 3, batch_size: 3}\n")
    code = main(["sweep", str(sweep), "--config", str(tmp_path / "base.yaml"), *FAST,
                 f"output_dir={tmp_path / 'runs'}", "tracking.mode=offline"])
    assert code == 0, capsys.readouterr().err
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == ["tiny-llada-arithmetic-dual-threshold0.5-g32-b8",
                                         "tiny-llada-arithmetic-dual-threshold1.0-g32-b8"]
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    assert [s["setting"]["unmask"]["threshold"] for s in summaries] == [0.5, 1.0]
    assert all(s["n"] == 3 for s in summaries)
    # threshold 1.0 commits one token per forward (unless a confidence is exactly 1): more forwards than 0.5
    assert summaries[1]["nfe_mean"] > summaries[0]["nfe_mean"]
    for folder in folders:
        assert len(list((folder / "wandb").glob("offline-run-*"))) == 1, folder


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_committed_sweeps_validate_every_point(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their command names configs/tiny.yaml relative to the repository
    sweep = read_sweep(path)
    base, fixed = base_from_command(sweep)
    assert base is not None and (REPO / base).is_file()
    assert "${args}" in sweep["command"] and sweep["command"][:2] == ["fastdllm", "run"]
    configs = sweep_configs(path)
    assert len(configs) == len(grid(sweep, str(path))) >= 2
    assert len({c.tracking.name or repr(c.decode) for c in configs}) == len(configs)  # distinct settings


def test_threshold_sweep_covers_half_to_one():
    values = read_sweep(REPO / "sweeps/threshold.yaml")["parameters"]["decode.unmask.threshold"]["values"]
    assert min(values) == 0.5 and max(values) == 1.0


def test_cache_unmask_sweep_is_the_full_grid(monkeypatch):
    monkeypatch.chdir(REPO)
    configs = sweep_configs(REPO / "sweeps/cache_unmask.yaml")
    pairs = {(c.decode.cache["name"], c.decode.unmask["name"]) for c in configs}
    assert pairs == {(c, u) for c in ("none", "prefix", "dual") for u in ("fixed", "threshold", "factor")}


def test_bad_points_are_all_reported_before_anything_runs(tmp_path):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text("method: grid\nparameters:\n  decode.cache: {values: [dual, duel, prefx]}\n")
    with pytest.raises(ConfigProblems) as info:
        sweep_configs(sweep)
    assert len(info.value.problems) == 2
    assert "point 2" in info.value.problems[0] and "'dual'" in info.value.problems[0]
    assert "point 3" in info.value.problems[1] and "'prefix'" in info.value.problems[1]
    assert not (Path.cwd() / "runs" / "bad").exists()


def test_non_grid_sweeps_are_refused_with_the_reason(tmp_path):
    sweep = tmp_path / "random.yaml"
    sweep.write_text("method: bayes\nparameters:\n  decode.unmask.threshold: {min: 0.5, max: 1.0}\n")
    with pytest.raises(ConfigProblems) as info:
        sweep_configs(sweep)
    text = str(info.value)
    assert "grids only" in text and "'values: [...]'" in text


def test_identical_names_get_point_suffixes(tmp_path):
    sweep = tmp_path / "seeds.yaml"
    sweep.write_text("parameters:\n  task.seed: {values: [1, 2]}\n")
    names = [c.tracking.name for c in sweep_configs(sweep)]
    assert names[0].endswith("-p1") and names[1].endswith("-p2") and names[0][:-3] == names[1][:-3]


def test_grid_order_and_fixed_values():
    sweep = {"parameters": {"decode.cache": {"values": ["none", "dual"]}, "task.limit": {"value": 3},
                            "decode.unmask": {"values": ["fixed", "factor"]}}}
    assert grid(sweep, "s") == [
        {"decode.cache": c, "task.limit": 3, "decode.unmask": u} for c in ("none", "dual") for u in ("fixed", "factor")]
