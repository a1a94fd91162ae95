"""The KV store's contract: ``cache="none"`` never allocates a store, ``NoStore`` refuses a window that
would need one, and ``refresh-interval`` reuses the prefix or dual plan it names between refreshes."""

from __future__ import annotations

import pytest
import torch

import fastdllm
from conftest import RecordingModel, random_prompts, tiny_llada
from fastdllm.core.kv_store import KVStore, NoStore

pytestmark = pytest.mark.usefixtures("single_thread")


class NoStoreAllowed(RecordingModel):
    def new_kv_store(self, batch, length):
        raise AssertionError("cache='none' allocated a KV store")


def test_no_cache_allocates_no_store():
    model = NoStoreAllowed(tiny_llada(), forbid_mask=True)
    result = fastdllm.generate(model, random_prompts(2), gen_length=8, block_length=4, cache="none")
    assert result.refresh_forwards == result.nfe > 0


@pytest.mark.parametrize("start", [1, 5])
def test_nostore_refuses_a_partial_window(start):
    keys = torch.zeros(1, 2, 3, 4)  # [B, H_kv, n, D]
    with pytest.raises(RuntimeError, match="full-canvas forward"):
        NoStore().update(0, start, torch.arange(start, start + 3), keys, keys)
    k, v = NoStore().update(0, 0, torch.arange(3), keys, keys + 1)
    assert k is keys and torch.equal(v, keys + 1)


def test_kv_store_writes_only_the_given_positions():
    store = KVStore(2, 1, 2, 6, 4, torch.float32, "cpu")  # [layers, B, H_kv, L, D]
    store.keys.zero_()
    store.values.zero_()
    fresh = torch.ones(1, 2, 2, 4)  # [B, H_kv, n, D]
    k, v = store.update(1, 3, torch.tensor([3, 4]), fresh, 2 * fresh)
    assert k.shape == (1, 2, 6, 4) and (k[:, :, 3:5] == 1).all() and (v[:, :, 3:5] == 2).all()
    assert (k[:, :, :3] == 0).all() and (k[:, :, 5:] == 0).all() and (store.keys[0] == 0).all()


@pytest.mark.parametrize("reuse", ["prefix", "dual"])
def test_refresh_interval_reuses_the_named_plan(reuse):
    plans = []
    fastdllm.generate(RecordingModel(tiny_llada(), forbid_mask=True), random_prompts(2), gen_length=8, block_length=4,
                      cache={"name": "refresh-interval", "interval": 2, "reuse": reuse}, unmask="fixed",
                      callbacks=[lambda e: plans.append((e.step.index, e.step.block_end, e.plan))])
    L = 6 + 8
    for index, block_end, plan in plans:
        assert plan.refresh == (index % 2 == 0)
        if not plan.refresh:
            assert plan.end == (L if reuse == "prefix" else block_end)


def test_policy_defaults():
    """The documented defaults (docs and `fastdllm ls` show them): changing one changes every run that relies on it."""
    assert fastdllm.cache_policies.get("refresh-interval")().spec() == {"name": "refresh-interval", "interval": 4,
                                                                         "reuse": "dual"}
    assert fastdllm.unmask_policies.get("threshold")().config.threshold == 0.9
    assert fastdllm.unmask_policies.get("factor")().config.factor == 1.0
    assert fastdllm.unmask_policies.get("fixed")().config.steps is None
    for name in ("threshold", "factor", "fixed"):
        assert fastdllm.unmask_policies.get(name)().config.confidence == "prob"
    with pytest.raises(ValueError, match="interval"):
        fastdllm.cache_policies.get("refresh-interval")(interval=0)
    assert fastdllm.cache_policies.get("refresh-interval")(interval=1).config.interval == 1
