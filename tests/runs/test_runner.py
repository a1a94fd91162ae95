"""``execute``: the run folder (INTERFACES 2), W&B logging (offline), a crash marks the W&B run failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import fastdllm
import fastdllm.tracking as tracking
from runs_helpers import read_samples, tiny_config, one_thread  # noqa: F401  (autouse fixture)
from fastdllm.evaluation import evaluate
from fastdllm.runs import RunConfig, execute

ROW_KEYS = {"index", "prompt", "target", "output", "correct", "nfe", "tpf_canvas", "tpf_answer", "answer_tokens"}


def test_run_folder_holds_config_summary_and_samples_equal_to_evaluate(tmp_path):
    config = tiny_config(tmp_path, "task.limit=5", "decode.unmask.threshold=0.7")
    run_dir = execute(config)
    assert run_dir == tmp_path / "runs" / "tiny-llada-arithmetic-dual-threshold0.7-g32-b8"
    assert RunConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text())) == config
    rows = read_samples(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    # the same problems and setting through the library
    task = config.task.build()
    problems = task.generate("test", 5, seed=0)
    model = fastdllm.load_model(config.model_path(), device="cpu", dtype="float32")
    want = evaluate(model, problems, task, batch_size=2, keep_rows=True, **config.decode.model_dump())
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["prompt"] for r in rows] == [p.prompt for p in problems]
    assert [r["target"] for r in rows] == [p.answer for p in problems]
    assert [r["output"] for r in rows] == [r["output"] for r in want.rows]
    assert [r["nfe"] for r in rows] == [r["nfe"] for r in want.rows]
    assert all(ROW_KEYS <= set(r) for r in rows)
    assert summary["accuracy"] == pytest.approx(want.accuracy)
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 5)
    for key in ("nfe_mean", "tpf_canvas", "tpf_answer"):
        assert summary[key] == pytest.approx(getattr(want, key)), key
    assert summary["n"] == 5 and summary["world_size"] == 1 and summary["task"] == "arithmetic"
    assert summary["setting"]["unmask"] == {"name": "threshold", "confidence": "prob", "threshold": 0.7}
    assert summary["name"] == run_dir.name and summary["scorer"] and summary["env"]["torch"]


def test_a_short_jsonl_task_runs_all_its_problems_and_says_so(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": str(i + 1)}) for i in range(3)))
    logged: list[str] = []
    run_dir = execute(tiny_config(tmp_path, f"task.name={data}", "task.limit=10"), log=logged.append)
    assert run_dir.name.startswith("tiny-llada-mine-")
    assert len(read_samples(run_dir)) == 3
    assert any("has 3 test problems (limit 10); running all 3" in line for line in logged)


class FakeRun:
    def __init__(self):
        self.summary, self.logged, self.exit_code = {}, [], None

    def log(self, data):
        self.logged.append(data)

    def finish(self, exit_code=0):
        self.exit_code = exit_code


def test_a_crash_marks_the_wandb_run_failed_and_propagates(tmp_path, monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(tracking, "open_run", lambda **kw: fake)

    def broken(*args, **kwargs):
        raise RuntimeError("decode exploded")

    monkeypatch.setattr("fastdllm.evaluation.evaluate", broken)
    with pytest.raises(RuntimeError, match="decode exploded"):
        execute(tiny_config(tmp_path, tracking="offline"))
    assert fake.exit_code == 1


def test_a_good_run_finishes_the_wandb_run_with_exit_code_0_and_the_table(tmp_path, monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(tracking, "open_run", lambda **kw: fake)
    monkeypatch.setattr(tracking, "log_table", lambda run, key, rows: run.log({key: rows}))
    run_dir = execute(tiny_config(tmp_path, tracking="offline"))
    assert fake.exit_code == 0
    assert fake.logged[0]["samples"] == read_samples(run_dir)
    assert fake.summary["accuracy"] == json.loads((run_dir / "summary.json").read_text())["accuracy"]


def test_wandb_offline_run_gets_the_config_the_table_and_the_summary(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    opened, finished = [], []
    real_open, real_finish = tracking.open_run, tracking.finish
    monkeypatch.setattr(tracking, "open_run", lambda **kw: opened.append(real_open(**kw)) or opened[-1])
    monkeypatch.setattr(tracking, "finish", lambda run, summary=None, exit_code=0: (
        finished.append((dict(summary or {}), exit_code)), real_finish(run, summary, exit_code)))
    config = tiny_config(tmp_path, tracking="offline")
    run_dir = execute(config)
    run = opened[0]
    assert run is not None and run.name == run_dir.name
    assert dict(run.config)["decode"]["unmask"] == config.decode.unmask
    assert dict(run.config)["task"]["limit"] == 4
    summary, code = finished[0]
    assert code == 0 and summary["accuracy"] == json.loads((run_dir / "summary.json").read_text())["accuracy"]
    tables = list((run_dir / "wandb").rglob("samples_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert {"prompt", "output", "target", "correct", "nfe", "tpf_canvas"} <= set(table["columns"])
    assert len(table["data"]) == 4


def test_wandb_failing_to_start_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")

    def no_service(*args, **kwargs):
        raise OSError("wandb service unreachable")

    monkeypatch.setattr(wandb, "init", no_service)
    with pytest.warns(UserWarning, match=r"W&B tracking skipped: wandb.init failed \(OSError: wandb service"):
        run_dir = execute(tiny_config(tmp_path, tracking="offline"))
    assert len(read_samples(run_dir)) == 4


def test_wandb_not_installed_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    with pytest.warns(UserWarning, match=r"pip install 'fastdllm\[track\]'"):
        run_dir = execute(tiny_config(tmp_path, tracking="offline"))
    assert (run_dir / "summary.json").is_file()


def test_an_lm_eval_task_runs_through_the_lm_eval_model(tmp_path, monkeypatch):
    """End to end on a local lm-eval task (no hub): the run folder carries lm-eval's metric as accuracy, equal
    to the fraction of its logged samples that match, and the fastdllm model's decode statistics."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("fastdllm.lm_eval_model")
    data = Path(__file__).resolve().parents[1] / "data"
    if not (data / "tiny_arithmetic.yaml").is_file():
        pytest.skip("the local lm-eval task (tests/data/tiny_arithmetic.yaml) is not in this checkout")
    monkeypatch.chdir(data)  # the task's data_files path is relative to the working directory
    config = tiny_config(tmp_path, "task.name=lm-eval:fastdllm_tiny_arithmetic", "task.limit=3",
                         "decode.gen_length=64", f"task.lm_eval_args=[--include_path, '{data}', --apply_chat_template]")
    run_dir = execute(config)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accuracy_metric"].startswith("fastdllm_tiny_arithmetic/exact_match")
    samples = [json.loads(line) for f in (run_dir / "lm_eval").rglob("samples_*.jsonl") for line in f.open()]
    assert len(samples) == 3
    assert summary["accuracy"] == pytest.approx(sum(s["exact_match"] for s in samples) / 3)
    assert summary["accuracy"] > 0  # the chat template reached the model (without it the tiny model scores 0)
    assert summary["n"] == 3 and summary["nfe_mean"] > 0 and summary["tpf_canvas"] > 0
    assert summary["setting"]["gen_length"] == 64
