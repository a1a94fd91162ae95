"""The four policies beyond the paper are registered, listed by `fastdllm ls`, and usable by name."""

from __future__ import annotations

import re

import pytest

import fastdllm
from fastdllm.cli import main

NEW = {"cache policies": ["drift", "prompt-reuse"], "unmask policies": ["entropy-bounded", "kl-stable"]}


def test_registered_and_listed(capsys):
    assert main(["ls"]) in (0, None)
    out = capsys.readouterr().out
    listed = {m.group(1) for m in re.finditer(r"^  (\S+)", out, re.M)}
    for names in NEW.values():
        assert set(names) <= listed
    assert set(NEW["cache policies"]) <= set(fastdllm.cache_policies.names())
    assert set(NEW["unmask policies"]) <= set(fastdllm.unmask_policies.names())


@pytest.mark.parametrize("spec", [{"name": "drift", "tolerance": -1}, {"name": "entropy-bounded", "gamma": -0.5},
                                  {"name": "kl-stable", "history": 0}, {"name": "prompt-reuse", "tolerance": 1}])
def test_bad_fields_name_the_field(spec):
    key = "cache" if spec["name"] in NEW["cache policies"] else "unmask"
    bad = next(k for k in spec if k != "name")
    with pytest.raises(fastdllm.ConfigError, match=bad):  # the error names the field
        fastdllm.core.config.decode_config(**{key: spec})
