"""RunConfig: YAML + dotted overrides, stored decode defaults, and EVERY problem reported at once."""

from __future__ import annotations

import json

import pytest
import yaml

from fastdllm.runs import ConfigProblems, RunConfig, dump_yaml, load_run_config
from fastdllm.runs.loading import apply_override


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_every_problem_is_listed_with_did_you_mean(tmp_path):
    path = write(tmp_path, """
model: tiny-lada
decode:
  cache: duel
  unmask: {name: threshold, treshold: 0.8}
  gen_lenght: 32
task: {name: arithmetc, limt: 5, batch_size: 0}
trackng: {}
""")
    with pytest.raises(ConfigProblems) as info:
        load_run_config(path)
    problems = info.value.problems
    assert len(problems) == 8, problems
    text = "\n".join(problems)
    for where, hint in [("model:", "'tiny-llada'"), ("decode.cache:", "'dual'"), ("decode.unmask:", "'threshold'"),
                        ("decode.gen_lenght:", "'gen_length'"), ("task.name:", "'arithmetic'"),
                        ("task.limt:", "'limit'"), ("trackng:", "'tracking'")]:
        line = next((p for p in problems if p.startswith(where)), None)
        assert line is not None, (where, text)
        assert f"did you mean {hint}" in line.lower(), line
    assert any(p.startswith("task.batch_size:") and "greater than or equal to 1" in p for p in problems)
    assert str(path) in str(info.value) and "8 problems" in str(info.value)


def test_dotted_overrides_reach_the_policy_and_the_task(tmp_path):
    path = write(tmp_path, "decode: {cache: prefix, unmask: {name: threshold, threshold: 0.9}}\ntask: {limit: 3}\n")
    config = load_run_config(path, ["decode.unmask.threshold=0.8", "task.limit=7", "--tracking.tags=[a, b]"])
    assert config.decode.unmask["threshold"] == 0.8
    assert config.decode.cache == {"name": "prefix"}
    assert config.task.limit == 7
    assert config.tracking.tags == ["a", "b"]


def test_override_on_a_policy_given_by_name_or_left_default():
    assert load_run_config(None, ["decode.unmask=factor", "decode.unmask.factor=2"]).decode.unmask["factor"] == 2.0
    assert load_run_config(None, ["decode.unmask.threshold=0.7"]).decode.unmask == {
        "name": "threshold", "confidence": "prob", "threshold": 0.7}
    with pytest.raises(ConfigProblems, match=r"decode.unmask: unknown field 'threshold' of unmask policy 'factor'"):
        load_run_config(None, ["decode.unmask=factor", "decode.unmask.threshold=0.7"])


def test_stored_decode_settings_fill_unset_fields_explicit_wins():
    # the shipped models store gen_length 64, block_length 8 (fastdllm.json); DecodeConfig's defaults are 128/32
    assert (load_run_config(None).decode.gen_length, load_run_config(None).decode.block_length) == (64, 8)
    config = load_run_config(None, ["model=tiny-dream", "decode.block_length=16"])
    assert (config.decode.gen_length, config.decode.block_length) == (64, 16)
    hub = load_run_config(None, ["model=GSAI-ML/LLaDA-8B-Instruct"])  # nothing stored locally: the defaults
    assert (hub.decode.gen_length, hub.decode.block_length) == (128, 32)


def test_resolved_yaml_round_trips():
    config = load_run_config(None, ["decode.unmask=factor", "task.limit=9", "tracking.tags=[x]"])
    text = dump_yaml(config)
    assert RunConfig.model_validate(yaml.safe_load(text)) == config
    assert yaml.safe_load(text)["decode"]["unmask"] == {"name": "factor", "confidence": "prob", "factor": 1.0}


@pytest.mark.parametrize("value, parsed", [("0.8", 0.8), ("1e-3", 0.001), ("true", True), ("none", "none"),
                                           ("null", None), ("[1, 2]", [1, 2]), ("dual", "dual"), ('"7"', "7")])
def test_override_values_are_typed(value, parsed):
    data: dict = {}
    apply_override(data, f"a.b={value}")
    assert data == {"a": {"b": parsed}}


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigProblems, match="not KEY=VALUE"):
        load_run_config(None, ["decode.unmask"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigProblems, match="top level must be a mapping"):
        load_run_config(write(tmp_path, "- a\n- b\n"))


def test_task_problems_missing_file_and_malformed_jsonl_line(tmp_path):
    with pytest.raises(ConfigProblems, match=r"task.name: JSONL task file not found: .*nope.jsonl"):
        load_run_config(None, [f"task.name={tmp_path / 'nope.jsonl'}"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n{not json\n")
    with pytest.raises(ConfigProblems, match=r"bad.jsonl:2: invalid JSON"):
        load_run_config(None, [f"task.name={bad}"])
    with pytest.raises(ConfigProblems, match="extract='exact' applies to .jsonl tasks only"):
        load_run_config(None, ["task.extract=exact"])


def test_model_references(tmp_path):
    assert load_run_config(None, ["model=tiny-dream"]).model_path().name == "tiny-dream"
    with pytest.raises(ConfigProblems, match=r"model .*does not exist"):
        load_run_config(None, [f"model={tmp_path / 'missing'}"])
    with pytest.raises(ConfigProblems, match=r"device 'gpu' is not cpu, cuda"):
        load_run_config(None, ["device=gpu"])


def test_plugins_load_before_validation(tmp_path, monkeypatch):
    (tmp_path / "my_policy_plugin.py").write_text(
        "from fastdllm.core.policy import UnmaskPolicy, at_least_one, unmask_policies\n"
        "@unmask_policies.register('plugin-greedy')\n"
        "class PluginGreedy(UnmaskPolicy):\n"
        "    '''Commits the single most confident position.'''\n"
        "    class Config(UnmaskPolicy.Config):\n        pass\n"
        "    def select(self, proposal, step):\n"
        "        return at_least_one(proposal.confidence > 2.0, proposal)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_run_config(None, ["plugins=[my_policy_plugin]", "decode.unmask=plugin-greedy"])
    assert config.decode.unmask["name"] == "plugin-greedy"
    with pytest.raises(ConfigProblems, match="plugins: cannot import"):
        load_run_config(None, ["plugins=[no_such_plugin_module]"])


def test_lm_eval_tasks_validate_and_build_lm_eval_arguments(tmp_path):
    from fastdllm.runs.lm_eval_task import lm_eval_argv

    config = load_run_config(None, ["task.name=lm-eval:gsm8k,minerva_math", "task.num_fewshot=5", "task.limit=8",
                                    "decode.gen_length=256", "decode.block_length=32", "decode.unmask.threshold=0.9"])
    assert config.task.lm_eval_tasks == ["gsm8k", "minerva_math"]
    argv = lm_eval_argv(config, tmp_path / "out")
    assert "--log_samples" in argv
    args = {a: argv[i + 1] for i, a in enumerate(argv) if a.startswith("--") and a != "--log_samples"}
    assert args["--model"] == "fastdllm" and args["--tasks"] == "gsm8k,minerva_math"
    assert args["--num_fewshot"] == "5" and args["--limit"] == "8"
    model_args = dict(item.split("=", 1) for item in args["--model_args"].split(","))
    assert model_args["cache"] == "dual" and model_args["unmask"] == "threshold"
    assert model_args["threshold"] == "0.9" and model_args["gen_length"] == "256" and model_args["block_length"] == "32"
    assert model_args["pretrained"].endswith("tiny-llada") and "stop_at_eos" not in model_args
    with pytest.raises(ConfigProblems, match="names no lm-eval task"):
        load_run_config(None, ["task.name=lm-eval:"])
    with pytest.raises(ConfigProblems, match="decode greedily"):
        load_run_config(None, ["task.name=lm-eval:gsm8k", "decode.temperature=0.5"])
    with pytest.raises(ConfigProblems, match="num_fewshot and lm_eval_args apply to lm-eval tasks only"):
        load_run_config(None, ["task.num_fewshot=3"])
