"""The ``fastdllm`` command's workflow side: issue 11's first-run defects (every option checked before the
weights load, one-line errors), generate's held-out problem/help/prompts file/JSON, the plot/lm-eval/live
wiring, and run/validate/bench/--plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastdllm
from cli_helpers import (DREAM_DIR, LLADA_DIR, SHORT, entry_names, library_result, run_cli, sections,  # noqa: F401
                         tiny_models)
from fastdllm.tasks import get_task

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- issue 11: options checked before the weights load, one-line errors -----------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Any weight loading fails the test: the option must be refused before."""

    def forbidden(*args, **kwargs):
        raise AssertionError("weights were loaded before the bad option was reported")

    monkeypatch.setattr(fastdllm, "load_model", forbidden)


@pytest.mark.parametrize("argv, needle", [
    (["--cache", "duel"], "Did you mean 'dual'"),
    (["--unmask", "treshold"], "'threshold'"),
    (["--unmask-opt", "threshold=1.5"], "threshold"),
    (["--unmask-opt", "treshold=0.5"], "treshold"),
    (["--cache-opt", "interval=4"], "interval"),
    (["--gen-length", "64", "--block-length", "5"], "does not divide"),
    (["--gen-length", "0"], "gen_length"),
    (["--model", "tiny-lada"], "Did you mean 'tiny-llada'"),
    (["--model", "/no/such/folder"], "does not exist"),
    (["--prompts-file", "/no/such/prompts.jsonl"], "does not exist"),
], ids=["cache", "unmask", "field-range", "field-name", "cache-field", "lengths", "gen0", "shipped-name",
        "model-path", "prompts-file"])
def test_generate_reports_bad_options_before_loading(argv, needle, capsys, no_loading):
    code, out, err = run_cli(["generate", "What is 2 plus 3?", *argv], capsys)
    assert code == 2
    assert out == ""
    assert "fastdllm: error:" in err and needle in err, err
    assert "AssertionError" not in err


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--dtype", "fp8"]])
def test_generate_bad_typed_options_are_usage_errors(argv, capsys, no_loading):
    code, _, err = run_cli(["generate", "hi", *argv], capsys)
    assert code == 2 and "usage:" in err and argv[0] in err


def test_empty_prompt_is_refused_before_loading(capsys, no_loading):
    code, out, err = run_cli(["generate", "What is 2 plus 3?", "  "], capsys)
    assert code == 2 and out == ""
    assert "prompt 2 is empty" in err


@pytest.mark.parametrize("flag", ["--batch-size", "--n"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_demo_sizes_must_be_positive(flag, value, capsys, monkeypatch):
    import fastdllm.demo

    monkeypatch.setattr(fastdllm.demo, "run_demo", lambda **kw: pytest.fail("demo ran"))
    code, out, err = run_cli(["demo", flag, value], capsys)
    assert code == 2 and out == ""
    assert f"argument {flag}: {value} is not allowed: use 1 or more" in err


@pytest.mark.parametrize("model", ["/no/such/model/folder", "tiny-dreem"])
def test_missing_model_is_one_line_without_traceback(model, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastdllm.cli", "generate", "hi", "--model", model],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastdllm: error: model ") and model in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr


# ---- generate: held-out problem, help, prompts file, JSON, shipped names, dtype/threads ------------------


def test_generate_without_prompt_decodes_a_held_out_problem(capsys, tiny_models):
    code, out, err = run_cli(["generate"], capsys)
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines()[1:])
    draw = int(re.search(r"draw (\d+)", out.splitlines()[0]).group(1))
    task = get_task("arithmetic")
    problem = task.generate("test", 1, seed=draw)[0]
    assert fields["prompt"].strip() == problem.prompt
    assert task.split_of(problem.prompt) == "test"  # held out from training
    assert fields["expected"].strip() == problem.response
    want = library_result(tiny_models[LLADA_DIR], problem.prompt, gen_length=64, block_length=8)
    assert fields["model"].strip() == want.texts[0].strip()
    assert fields["correct"].strip() == ("yes" if task.score(want.texts[0], problem) else "no")


def test_generate_help_says_the_shipped_model_answers_its_format_only(capsys):
    code, out, _ = run_cli(["generate", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "answer only problems in its exact format" in flat
    examples = re.findall(r'fastdllm generate "([^"]+)"', out)
    task = get_task("arithmetic")
    assert len(examples) == 2 and all(task.split_of(e) == "test" for e in examples)
    assert examples == [p.prompt for p in task.generate("test", 2, seed=0)]


def test_every_option_of_every_command_has_help():
    from fastdllm.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    assert set(subparsers.choices) == {"run", "sweep", "validate", "plot", "generate", "demo", "ls", "bench", "lm-eval"}
    for name, sub in [("fastdllm", parser), *subparsers.choices.items()]:
        for action in sub._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    assert all(a.help for a in subparsers._choices_actions)


def test_generate_prompts_file_with_json_output(tmp_path, capsys, tiny_models):
    prompts = [p.prompt for p in get_task("arithmetic").generate("test", 2, seed=3)]
    file = tmp_path / "prompts.jsonl"
    file.write_text(json.dumps({"prompt": prompts[0]}) + "\n\n" + json.dumps(prompts[1]) + "\n")
    code, out, err = run_cli(["generate", "--prompts-file", str(file), "--json", *SHORT], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    ids, mask = tiny_models[LLADA_DIR].encode(prompts, chat=True)
    want = fastdllm.generate(tiny_models[LLADA_DIR], ids, attention_mask=mask, gen_length=16, block_length=8)
    assert [r["output"] for r in rows] == want.texts
    assert [r["nfe"] for r in rows] == want.nfe_per_row.tolist()


def test_prompts_file_bad_line_names_the_line(tmp_path, capsys, no_loading):
    file = tmp_path / "prompts.jsonl"
    file.write_text('{"prompt": "What is 2 plus 3?"}\n{"prompt": oops}\n')
    code, _, err = run_cli(["generate", "--prompts-file", str(file)], capsys)
    assert code == 2 and f"{file}:2: invalid JSON" in err


def test_shipped_model_by_name_and_dtype_threads(capsys, tiny_models, monkeypatch):
    import torch

    seen = {}
    real = fastdllm.load_model

    def spy(path, **kwargs):
        seen.update(path=path, **kwargs, threads=torch.get_num_threads())
        return real(path, **kwargs)

    monkeypatch.setattr(fastdllm, "load_model", spy)
    code, out, err = run_cli(["generate", "What is 2 plus 3?", "--model", "tiny-dream", "--dtype", "float32",
                              "--threads", "2", *SHORT], capsys)
    torch.set_num_threads(1)
    assert code == 0, err
    assert seen["path"] == DREAM_DIR and seen["dtype"] is torch.float32 and seen["threads"] == 2
    want = library_result(tiny_models[DREAM_DIR], "What is 2 plus 3?", gen_length=16, block_length=8)
    assert out.strip() == want.texts[0].strip()


# ---- plot / lm-eval / live wiring (modules of the LMEVAL helper, imported lazily) -------------------------


def fake_run_folder(tmp_path, name="r1"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    return folder


def test_plot_calls_plot_runs(tmp_path, capsys, monkeypatch):
    import types

    calls = []
    module = types.SimpleNamespace(plot_runs=lambda runs, out: calls.append((runs, out)) or [Path(out) / "a.png"])
    monkeypatch.setitem(sys.modules, "fastdllm.plots", module)
    runs = [str(fake_run_folder(tmp_path, "a")), str(fake_run_folder(tmp_path, "b"))]
    code, out, err = run_cli(["plot", *runs, "--out", str(tmp_path / "png")], capsys)
    assert code == 0, err
    assert calls == [(runs, str(tmp_path / "png"))]
    assert out.strip() == str(tmp_path / "png" / "a.png")


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli(["plot", str(tmp_path)], capsys)
    assert code == 2 and "is not a run folder (no summary.json)" in err


@pytest.mark.parametrize("argv, module", [(["plot", "RUN"], "fastdllm.plots"), (["lm-eval", "--tasks", "x"],
                                          "fastdllm.lm_eval_model")])
def test_missing_modules_give_a_clear_message(argv, module, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import → ModuleNotFoundError
    argv = [str(fake_run_folder(tmp_path)) if a == "RUN" else a for a in argv]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    assert f"needs the module {module}, which this fastdllm installation lacks" in err


def test_missing_dependency_names_the_extra(tmp_path, capsys, monkeypatch):
    import types

    def plot_runs(runs, out):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setitem(sys.modules, "fastdllm.plots", types.SimpleNamespace(plot_runs=plot_runs))
    code, _, err = run_cli(["plot", str(fake_run_folder(tmp_path))], capsys)
    assert code == 2 and "plotting needs matplotlib: pip install 'fastdllm[plot]'" in err


def test_live_without_the_module_fails_before_loading(capsys, monkeypatch, no_loading):
    monkeypatch.setitem(sys.modules, "fastdllm.live", None)
    code, _, err = run_cli(["generate", "What is 2 plus 3?", "--live"], capsys)
    assert code == 2 and "--live needs the module fastdllm.live" in err


def test_lm_eval_arguments_pass_through_untouched(capsys, monkeypatch):
    import types

    seen = []
    monkeypatch.setitem(sys.modules, "fastdllm.lm_eval_model", types.SimpleNamespace(main=lambda a: seen.append(a) or 3))
    argv = ["--model", "fastdllm", "--model_args", "pretrained=x,cache=dual", "--tasks", "gsm8k", "--limit", "2", "-h"]
    code, _, _ = run_cli(["lm-eval", *argv], capsys)
    assert seen == [argv] and code == 3


# ---- run / validate / bench / --plugin ------------------------------------------------------------------


def test_validate_prints_the_resolved_config_or_every_problem(tmp_path, capsys):
    import yaml

    code, out, err = run_cli(["validate", "decode.unmask.threshold=0.8", "--task.limit=7"], capsys)
    assert code == 0, err
    data = yaml.safe_load(out)
    assert data["decode"]["unmask"]["threshold"] == 0.8 and data["task"]["limit"] == 7
    assert data["decode"]["gen_length"] == 64  # the shipped model's stored setting, resolved
    bad = tmp_path / "bad.yaml"
    bad.write_text("decode: {cache: duel}\ntask: {limt: 3}\n")
    code, out, err = run_cli(["validate", str(bad)], capsys)
    assert code == 2 and out == ""
    assert "2 problems" in err and "decode.cache:" in err and "task.limt: unknown key; did you mean 'limit'?" in err


def test_run_accepts_wandb_agent_arguments(tmp_path, capsys):
    code, out, err = run_cli(["run", "--decode.unmask.threshold=0.6", f"--output_dir={tmp_path}", "tracking.mode=disabled",
                              "task.limit=2", "decode.gen_length=16", "threads=1"], capsys)
    assert code == 0, err
    folder = tmp_path / "tiny-llada-arithmetic-dual-threshold0.6-g16-b8"
    assert (folder / "samples.jsonl").read_text().count("\n") == 2
    assert str(folder) in out


def test_run_with_a_bad_config_loads_nothing(tmp_path, capsys, no_loading):
    code, _, err = run_cli(["run", "decode.cache=duel", f"output_dir={tmp_path}"], capsys)
    assert code == 2 and "Did you mean 'dual'" in err
    assert not any(tmp_path.iterdir())


def test_bench_table(capsys):
    code, out, err = run_cli(["bench", "--settings", "none+fixed,dual+threshold", "--batch-size", "2",
                              "--prompt-length", "8", "--gen-length", "16", "--block-length", "8", "--repeats", "1",
                              "--threads", "1"], capsys)
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if "+" in line.split()[0]}
    assert set(rows) == {"none+fixed", "dual+threshold"}
    assert float(rows["none+fixed"][1]) == 16.0 and float(rows["none+fixed"][2]) == 1.0  # one token per forward
    assert float(rows["dual+threshold"][1]) <= 16.0
    assert all(float(r[0]) > 0 and float(r[3]) > 0 for r in rows.values())


def test_bench_bad_setting_before_loading(capsys, no_loading):
    code, _, err = run_cli(["bench", "--settings", "dual+treshold"], capsys)
    assert code == 2 and "'threshold'" in err


def test_global_plugin_option(tmp_path, capsys, monkeypatch):
    (tmp_path / "cli_plugin_mod.py").write_text(
        "from fastdllm.core.policy import UnmaskPolicy, at_least_one, unmask_policies\n"
        "@unmask_policies.register('cli-plugin-rule')\n"
        "class CliPluginRule(UnmaskPolicy):\n"
        "    '''A plugin's rule.'''\n"
        "    class Config(UnmaskPolicy.Config):\n        pass\n"
        "    def select(self, proposal, step):\n        return at_least_one(proposal.confidence > 2, proposal)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run_cli(["--plugin", "cli_plugin_mod", "ls"], capsys)
    assert code == 0, err
    assert "cli-plugin-rule" in entry_names(sections(out)["unmask policies"])
    code, _, err = run_cli(["--plugin", "no_such_plugin_xyz", "ls"], capsys)
    assert code == 2 and "no_such_plugin_xyz" in err
