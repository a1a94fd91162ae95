"""The decoder's checks on a cache policy's plans (before each forward): the first forward of a decode
must refresh the whole canvas (the KV store starts uninitialised), a policy without a store must always
recompute the whole canvas, and every plan must cover the positions the block's logits come from."""

from __future__ import annotations

import pytest

import fastdllm
from conftest import random_prompts, tiny_llada

pytestmark = pytest.mark.usefixtures("single_thread")


class NeverRefreshes(fastdllm.CachePolicy):
    """Recomputes only the current block, reading everything else from a store it never fills."""

    def plan(self, step):
        return fastdllm.Plan(step.block_start - step.layout.logit_shift, step.block_end)


class RefreshesFromTheSecondBlock(fastdllm.CachePolicy):
    """Skips the refresh at the very first forward only (the store is still empty then)."""

    def plan(self, step):
        if step.block == 0 and step.index == 0:
            return fastdllm.Plan(step.block_start, step.block_end)
        return fastdllm.Plan.full(step)


class NoStoreButPartial(NeverRefreshes):
    uses_store = False


class MissesTheBlock(fastdllm.CachePolicy):
    """Refreshes first, then recomputes a window that ends one position before the block does."""

    def plan(self, step):
        if step.index == 0:
            return fastdllm.Plan.full(step)
        return fastdllm.Plan(step.block_start, step.block_end - 1)


def decode(cache):
    return fastdllm.generate(tiny_llada(), random_prompts(2, [4, 6]), gen_length=8, block_length=4, cache=cache,
                             unmask="fixed")


@pytest.mark.parametrize("policy", [NeverRefreshes, RefreshesFromTheSecondBlock])
def test_the_first_forward_must_be_a_refresh(policy):
    with pytest.raises(RuntimeError, match="the first forward must be a refresh"):
        decode(policy())


def test_a_policy_without_a_store_must_recompute_everything():
    with pytest.raises(RuntimeError, match="uses_store = False must recompute the whole canvas"):
        decode(NoStoreButPartial())


def test_a_plan_must_cover_the_block():
    with pytest.raises(RuntimeError, match="does not cover positions"):
        decode(MissesTheBlock())


def test_refreshing_later_blocks_only_at_their_start_is_fine():
    """The guard is about the first forward only: the built-in dual cache (refresh at each block's first
    step) decodes, and a refresh-every-step policy decodes the same tokens as no cache."""
    assert decode("dual").nfe > 0
    assert decode({"name": "refresh-interval", "interval": 1}).generated.tolist() == decode("none").generated.tolist()
