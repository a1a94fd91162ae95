"""One registry for everything nameable: base-class checks at registration, did-you-mean, re-registration of
the same class (a notebook cell run twice), and plugins from the CLI (``--plugin``) and entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastdllm
from fastdllm.core.config import decode_config
from fastdllm.core.registry import RegistrationError, Registry, UnknownNameError
from fastdllm.tasks import ArithmeticTask, Task, get_task, tasks

REPO = Path(__file__).resolve().parents[2]


class WrongConfigBase(fastdllm.UnmaskPolicy):
    class Config(fastdllm.PolicyConfig):  # should derive from UnmaskPolicy.Config (it carries `confidence`)
        tau: float = 0.5

    def select(self, proposal, step):
        return proposal.confidence >= self.config.tau


def test_a_config_with_the_wrong_base_is_refused_at_registration():
    with pytest.raises(RegistrationError, match=r"WrongConfigBase.Config derives from PolicyConfig, not from "
                                                r"UnmaskPolicy.Config; write `class Config\(UnmaskPolicy.Config\)"):
        fastdllm.unmask_policies.register("test-wrong-config")(WrongConfigBase)
    assert "test-wrong-config" not in fastdllm.unmask_policies


def test_a_class_of_the_wrong_kind_is_refused():
    with pytest.raises(RegistrationError, match="does not subclass CachePolicy"):
        fastdllm.cache_policies.register("test-not-a-cache")(fastdllm.samplers.ThresholdUnmask)
    with pytest.raises(RegistrationError, match="does not subclass Task"):
        tasks.register("test-not-a-task")(dict)
    with pytest.raises(RegistrationError, match="does not subclass DiffusionLM"):
        fastdllm.model_adapters.register("test-not-a-model")(dict)


SOURCE = '''
import fastdllm

@fastdllm.unmask_policies.register("test-rerun")
class Rerun(fastdllm.UnmaskPolicy):
    version = VERSION

    def select(self, proposal, step):
        return proposal.confidence > 0
'''


def run_cell(version: int, module: str = "notebook_cell") -> type:
    namespace = {"__name__": module, "VERSION": version}
    exec(compile(SOURCE, "<cell>", "exec"), namespace)
    return namespace["Rerun"]


def test_re_registering_the_same_class_is_allowed_and_another_class_is_refused():
    first, second = run_cell(1), run_cell(2)  # the cell run twice: the same qualified name
    assert first is not second and fastdllm.unmask_policies.get("test-rerun") is second
    with pytest.raises(RegistrationError, match="already registered to notebook_cell.Rerun"):
        run_cell(3, module="another_module")
    assert fastdllm.unmask_policies.get("test-rerun").version == 2


def test_unknown_names_say_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'dual'"):
        fastdllm.cache_policies.get("duel")
    with pytest.raises(UnknownNameError, match="Did you mean 'llada'"):
        fastdllm.model_adapters.get("lladaa")
    with pytest.raises(KeyError, match="Did you mean 'prob'"):
        fastdllm.confidence_measures.get("porb")
    with pytest.raises(KeyError, match="Did you mean 'threshold'"):
        decode_config(unmask="treshold")


def test_tasks_use_the_registry():
    @tasks.register("test-arith-copy")
    class Copy(ArithmeticTask):
        pass

    try:
        assert isinstance(get_task("test-arith-copy"), Copy) and "test-arith-copy" in fastdllm.tasks.TASKS
    finally:
        assert tasks.unregister("test-arith-copy") is Copy  # other tests list the built-in tasks exactly
    assert "test-arith-copy" not in fastdllm.tasks.TASKS
    assert issubclass(tasks.get("arithmetic"), Task)
    registry = Registry("thing", base=Task)
    with pytest.raises(UnknownNameError, match="unknown thing 'x'"):
        registry.get("x")


# ---- plugins ------------------------------------------------------------------------------------------------

PLUGIN = '''
"""A throw-away plugin: an unmask policy that commits every masked position with confidence >= 0.5."""
import fastdllm
from pydantic import Field


@fastdllm.unmask_policies.register("{name}")
class Half(fastdllm.UnmaskPolicy):
    class Config(fastdllm.UnmaskPolicy.Config):
        tau: float = Field(0.5, gt=0)

    def select(self, proposal, step):
        return proposal.confidence >= self.config.tau
'''


def cli(args: list[str], pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, REPO])), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fastdllm.cli", *args], capture_output=True, text=True,
                          timeout=240, env=env, cwd=REPO)


PROMPT = ["What is 2 + 3?", "--gen-length", "16", "--block-length", "8"]


def test_a_plugin_module_works_from_the_cli(tmp_path):
    (tmp_path / "fdl_test_plugin.py").write_text(PLUGIN.format(name="test-plugin-half"))
    missing = cli(["generate", *PROMPT, "--unmask", "test-plugin-half"], [tmp_path])
    assert missing.returncode == 2 and "unknown unmask policy 'test-plugin-half'" in missing.stderr
    proc = cli(["--plugin", "fdl_test_plugin", "generate", *PROMPT, "--unmask", "test-plugin-half",
                "--unmask-opt", "tau=0.6"], [tmp_path])
    assert proc.returncode == 0, proc.stderr
    assert "forwards" in proc.stderr and proc.stdout.strip()
    bad = cli(["--plugin", "no_such_plugin_module", "ls"], [tmp_path])
    assert bad.returncode == 2 and "plugin module 'no_such_plugin_module' cannot be imported" in bad.stderr


def test_an_installed_entry_point_is_loaded(tmp_path):
    """An installed distribution (a dist-info folder on the path, as pip writes with --target) declaring the
    entry point group fastdllm.plugins: its policy works by name, with no --plugin option."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fdl_ep_plugin.py").write_text(PLUGIN.format(name="test-entry-point-half"))
    info = site / "fdl_ep_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fdl-ep-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fastdllm.plugins]\nhalf = fdl_ep_plugin\n")
    proc = cli(["generate", *PROMPT, "--unmask", "test-entry-point-half"], [site])
    assert proc.returncode == 0, proc.stderr
    code = textwrap.dedent("""
        import fastdllm
        assert "test-entry-point-half" not in fastdllm.unmask_policies  # nothing loads at import
        policy = fastdllm.unmask_policies.get("test-entry-point-half")  # an unknown name loads the plugins
        print(policy.__module__)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [site, REPO]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "fdl_ep_plugin", out.stderr
