"""The ``fastdllm`` console command (``fastdllm.cli.main``): ``ls``, ``generate`` and its error handling."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import fastdllm
from fastdllm.assets import default_decode_options, tiny_model_path
from fastdllm.core.registry import describe_fields
from fastdllm.tasks import TASKS, get_task
from cli_helpers import (DREAM_DIR, LLADA_DIR, SHORT, entry_names, library_result, run_cli, sections,  # noqa: F401
                         stats_line, tiny_models)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- ls ------------------------------------------------------------------------------------------------


def test_ls_lists_every_registered_name_per_section(capsys):
    code, out, err = run_cli(["ls"], capsys)
    assert code == 0, err
    parts = sections(out)
    assert set(parts) == {"cache policies", "unmask policies", "models", "tasks", "shipped models"}
    assert entry_names(parts["cache policies"]) == fastdllm.cache_policies.names()
    assert entry_names(parts["tasks"]) == [*sorted(TASKS), "FILE.jsonl", "lm-eval:TASK,…"]
    assert entry_names(parts["shipped models"]) == ["tiny-llada", "tiny-dream"]
    assert entry_names(parts["unmask policies"]) == fastdllm.unmask_policies.names()
    assert entry_names(parts["models"]) == fastdllm.model_adapters.names()
    # the built-ins are among them
    assert {"none", "prefix", "dual"} <= set(fastdllm.cache_policies.names())
    assert {"fixed", "threshold", "factor"} <= set(fastdllm.unmask_policies.names())
    assert {"llada", "dream"} <= set(fastdllm.model_adapters.names())


def test_ls_shows_config_fields_with_defaults(capsys):
    code, out, _ = run_cli(["ls"], capsys)
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert "threshold: float = 0.9" in lines
    assert "factor: float = 1.0" in lines
    for registry in (fastdllm.cache_policies, fastdllm.unmask_policies):
        for name, cls in registry:
            for field, kind, default in describe_fields(cls.Config):
                assert f"{field}: {kind} = {default!r}" in lines, (name, field)
    # each policy's fields sit under its own entry, before the next entry
    section = sections(out)["unmask policies"].splitlines()
    start = next(i for i, line in enumerate(section) if re.match(r"^  threshold\s", line))
    block = []
    for line in section[start + 1:]:
        if re.match(r"^  \S", line):
            break
        block.append(line.strip())
    assert "threshold: float = 0.9" in block


def test_ls_shows_model_reference_configs(capsys):
    _, out, _ = run_cli(["ls"], capsys)
    flat = " ".join(out.split())
    for name, cls in fastdllm.model_adapters:
        for key, value in list(cls.reference_config().items())[:4]:
            assert f"{key}={value!r}" in flat, (name, key)
    assert "d_model=4096" in flat and "hidden_size=3584" in flat


def test_ls_console_script_subprocess():
    exe = shutil.which("fastdllm")
    cmd = [exe, "ls"] if exe else [sys.executable, "-m", "fastdllm.cli", "ls"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = entry_names(proc.stdout)
    # the built-in names (other test modules register extra policies in this process, not in the subprocess)
    for name in ("none", "prefix", "dual", "refresh-interval", "fixed", "threshold", "factor", "llada", "dream"):
        assert name in names
    assert "threshold: float = 0.9" in proc.stdout


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"fastdllm {fastdllm.__version__}"


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run_cli([], capsys)
    assert code == 2
    assert "usage" in err.lower()


# ---- generate ------------------------------------------------------------------------------------------


def test_generate_default_model_is_the_shipped_tiny_model(capsys, tiny_models):
    code, out, err = run_cli(["generate", "What is 2 plus 3?", *SHORT], capsys)
    assert code == 0, err
    assert tiny_model_path() == LLADA_DIR
    expected = library_result(tiny_models[LLADA_DIR], "What is 2 plus 3?", cache="dual", unmask="threshold",
                              gen_length=16, block_length=8)
    assert out.strip() == expected.texts[0].strip()
    assert out.strip(), "no text printed"
    stats = stats_line(err)
    assert int(stats.group(1)) == expected.nfe
    assert int(stats.group(2)) == expected.refresh_forwards
    assert float(stats.group(3)) == pytest.approx(expected.summary()["tpf_canvas"], abs=0.006)
    assert out.count("\n") == 1 and "forwards" not in out  # the stats go to stderr only


@pytest.mark.parametrize("folder", [LLADA_DIR, DREAM_DIR], ids=["tiny-llada", "tiny-dream"])
def test_generate_model_folder_prefix_factor(folder, capsys, tiny_models):
    prompt = "What is 2 plus 3?"
    code, out, err = run_cli(["generate", "--model", str(folder), "--cache", "prefix", "--unmask", "factor",
                              "--unmask-opt", "factor=1.5", "--device", "cpu", *SHORT, prompt], capsys)
    assert code == 0, err
    model = tiny_models[folder]
    want = library_result(model, prompt, cache="prefix", unmask={"name": "factor", "factor": 1.5},
                          gen_length=16, block_length=8)
    default_factor = library_result(model, prompt, cache="prefix", unmask="factor", gen_length=16, block_length=8)
    assert out.strip() == want.texts[0].strip()
    stats = stats_line(err)
    assert int(stats.group(1)) == want.nfe
    # factor=1.5 reached the policy: it takes fewer forwards than the default factor=1.0 on this prompt
    assert want.nfe < default_factor.nfe
    assert int(stats.group(1)) != default_factor.nfe
    # prefix cache: one refresh per block (16 / 8 = 2 blocks)
    assert int(stats.group(2)) == 2


def test_generate_several_prompts_and_raw(capsys):
    code, out, err = run_cli(["generate", "What is 2 plus 3?", "Mia has 2 apples.", "--raw", *SHORT], capsys)
    assert code == 0, err
    assert out.startswith("> What is 2 plus 3?\n")
    assert "\n> Mia has 2 apples.\n" in out
    stats_line(err)


def test_generate_answers_an_arithmetic_problem(capsys):
    problem = get_task("arithmetic").generate("test", 3, seed=5)[0]
    assert default_decode_options(tiny_model_path())["gen_length"] == 64
    code, out, err = run_cli(["generate", problem.prompt], capsys)  # default gen length (64)
    assert code == 0, err
    assert "The answer is" in out
    stats_line(err)


# ---- bad input -----------------------------------------------------------------------------------------


def test_unknown_cache_suggests_close_name(capsys):
    code, out, err = run_cli(["generate", "hi", "--cache", "dula", *SHORT], capsys)
    assert code == 2
    assert out == ""
    assert "fastdllm: error:" in err
    assert "'dula'" in err
    assert "Did you mean 'dual'" in err


def test_unknown_unmask_name(capsys):
    code, _, err = run_cli(["generate", "hi", "--unmask", "treshold", *SHORT], capsys)
    assert code == 2
    assert "'treshold'" in err and "'threshold'" in err


def test_gen_length_zero(capsys):
    code, out, err = run_cli(["generate", "hi", "--gen-length", "0", "--block-length", "8"], capsys)
    assert code == 2
    assert out == ""
    assert "gen_length" in err and "fastdllm: error:" in err


def test_block_length_must_divide_gen_length(capsys):
    code, out, err = run_cli(["generate", "hi", "--gen-length", "64", "--block-length", "5"], capsys)
    assert code == 2
    assert out == ""
    assert "block_length=5" in err and "does not divide" in err and "gen_length=64" in err


def test_missing_model_folder(capsys, tmp_path):
    missing = tmp_path / "no-such-model"
    code, out, err = run_cli(["generate", "hi", "--model", str(missing), *SHORT], capsys)
    assert code == 2
    assert out == ""
    assert str(missing) in err and "does not exist" in err


def test_bad_unmask_opt_names_the_option(capsys):
    code, out, err = run_cli(["generate", "hi", "--unmask", "factor", "--unmask-opt", "factor", *SHORT], capsys)
    assert code != 0
    assert out == ""
    assert "'factor'" in err and "KEY=VALUE" in err


@pytest.mark.parametrize("flag", ["--unmask-opt", "--cache-opt"])
def test_bad_policy_opt_exits_2(flag, capsys):
    code, _, err = run_cli(["generate", "hi", flag, "factor", *SHORT], capsys)
    assert code == 2
    assert "fastdllm: error:" in err


def test_json_unmask_spec(capsys, tiny_models):
    code, out, err = run_cli(["generate", "What is 2 plus 3?", "--cache", "prefix", "--unmask",
                              '{"name": "factor", "factor": 1.5}', *SHORT], capsys)
    assert code == 0, err
    assert int(stats_line(err).group(1)) == library_result(
        tiny_models[LLADA_DIR], "What is 2 plus 3?", cache="prefix", unmask={"name": "factor", "factor": 1.5},
        gen_length=16, block_length=8).nfe


def test_policy_options_reach_the_validated_config(capsys):
    # fixed with steps=2 over two 8-token blocks: one forward per block, 8 tokens each
    code, _, err = run_cli(["generate", "What is 2 plus 3?", "--cache", "none", "--unmask", "fixed",
                            "--unmask-opt", "steps=2", *SHORT], capsys)
    assert code == 0, err
    stats = stats_line(err)
    assert int(stats.group(1)) == 2
    assert float(stats.group(3)) == pytest.approx(8.0)
    # an out-of-range value is rejected by the policy's config, as a usage error
    code, out, err = run_cli(["generate", "What is 2 plus 3?", "--unmask-opt", "threshold=1.5", *SHORT], capsys)
    assert code == 2
    assert out == ""
    assert "threshold" in err and "fastdllm: error:" in err
