"""experiments/prefix_forwards.py's bookkeeping, on the CPU: the windows a prefix-cache decode runs (with and
without a logit shift) match the plans the decoder makes, and kernel names sort into the kinds its profile
table reports (the README's prefix-cache breakdown rests on both)."""

from __future__ import annotations

import torch
from checkpoint_helpers import experiment_script

import fastdllm


def test_windows_are_the_prefix_cache_plans():
    script = experiment_script("prefix_forwards")
    for family in ("llada", "dream"):
        cls = fastdllm.model_adapters.get(family)
        model = cls(cls.tiny_config()).eval()
        decoder = fastdllm.DiffusionDecoder(model, cache="prefix", unmask={"name": "fixed", "steps": 8},
                                            gen_length=16, block_length=4)
        plans = []
        decoder.generate(torch.randint(3, 60, (1, 8)), callbacks=[lambda e: plans.append((e.step.block, e.plan))])
        reused = {block: (plan.start, plan.end) for block, plan in plans if not plan.refresh}  # a block's cached steps
        want = {block: (start, end) for block, start, end, _ in script.windows(model, 8, 16, 4)}
        assert reused == want, family
        assert [first for *_, first in script.windows(model, 8, 16, 4)] == [8, 12, 16, 20]  # logits: the block


def test_kernel_kinds():
    kind_of = experiment_script("prefix_forwards").kind_of
    assert kind_of("nvjet_sm90_tst_192x128_64x5_1x2_h_bz_coopB_TNT") == "gemm"
    assert kind_of("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>") == "gemm"
    assert kind_of("_skinny_kernel") == "gemm"
    assert kind_of("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7") == "attention"
    assert kind_of("_split_kv_kernel") == "attention"  # split-KV, one launch
    assert kind_of("_kv_write_kernel") == "kv_write"
    assert kind_of("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0") == "compiled_elementwise"
    assert kind_of("_chunk_kernel") == "other"  # the proposal is not part of a forward
